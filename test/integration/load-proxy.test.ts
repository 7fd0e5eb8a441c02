// Load through the real CLI process: SWITCHYARD_LOAD_CLIENTS (default 500)
// connections held for SWITCHYARD_LOAD_SECONDS (default 20; 60 for the
// reliability note) with a mixed workload: mirrored inserts, updates and
// deletes on a mapped table, switched and plain reads, transactions. In the
// middle of the run (PHASES) the read switch flips to new and back and the
// kill switch goes on and off. Zero client errors, proxy RSS sampled and
// bounded, every session closed afterwards, every acknowledged write stored,
// and `switchyard verify` finds nothing missing in new except rows written
// while the kill switch was on, which `verify --repair` then fixes.
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freshDatabase, type TestDatabase } from '../support/db.ts';
import { type ProxyProcess, startProxyProcess } from '../support/proxy.ts';

const CLIENTS = Number(process.env.SWITCHYARD_LOAD_CLIENTS ?? 500);
const SECONDS = Number(process.env.SWITCHYARD_LOAD_SECONDS ?? 20);
/** Ceiling for the proxy's resident memory while it holds the load. */
const RSS_LIMIT_MB = 512;

const MAPPING = {
  name: 'events-v2',
  old: 'events',
  new: 'events_v2',
  key: ['id'],
  up: {
    id: 'id',
    client: 'client',
    seq: 'seq',
    payload: 'payload',
    payload_len: 'coalesce(length(payload), 0)',
  },
  down: { id: 'id', client: 'client', seq: 'seq', payload: 'payload' },
};

/** The proxy config for a set of switches. */
function config(s: { reads?: 'old' | 'new'; killSwitch?: boolean } = {}) {
  return {
    limits: { maxClientConnections: 1000 },
    killSwitch: s.killSwitch ?? false,
    mappings: [{ ...MAPPING, dualWrite: true, reads: s.reads ?? 'old' }],
  };
}

let db: TestDatabase;
let proxy: ProxyProcess;

beforeAll(async () => {
  db = await freshDatabase('load');
  await db.query(`
    CREATE TABLE accounts (id int PRIMARY KEY, balance bigint NOT NULL DEFAULT 0, ops int NOT NULL DEFAULT 0);
    CREATE TABLE events (id bigserial PRIMARY KEY, client int NOT NULL, seq int NOT NULL, payload text);
    CREATE INDEX ON events (client);
    CREATE TABLE events_v2 (id bigint PRIMARY KEY, client int NOT NULL, seq int NOT NULL, payload text,
                            payload_len int NOT NULL);
    CREATE INDEX ON events_v2 (client);
    INSERT INTO accounts (id) SELECT g FROM generate_series(0, ${CLIENTS - 1}) g;
  `);
  proxy = await startProxyProcess(db, config());
});

afterAll(async () => {
  await proxy?.stop();
  await db?.drop();
});

async function scrape(p: ProxyProcess): Promise<Map<string, number>> {
  const text = await (await fetch(`http://127.0.0.1:${p.adminPort}/metrics`)).text();
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    out.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return out;
}

/** CPU seconds the process has used (user + system). */
function cpuSeconds(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(f[11]) + Number(f[12])) / 100;
}

function rssMb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Math.round(Number(m[1]) / 1024) : 0;
}

/** Per reload: ms from the file write to the proxy's own "config reloaded" log line. */
const proxyReloadMs: number[] = [];

/** Rewrites the config file and waits until the proxy runs the new version. */
async function reload(p: ProxyProcess, extra: Record<string, unknown>): Promise<void> {
  const before = (await scrape(p)).get('switchyard_config_version') ?? 0;
  const written = Date.now();
  p.writeConfig(extra);
  // Generous: the reload compiles the rules against the catalog of a server under full load.
  const deadline = Date.now() + 60_000;
  while (((await scrape(p)).get('switchyard_config_version') ?? 0) <= before) {
    if (Date.now() > deadline) throw new Error('reload not applied within 60 s');
    await new Promise((r) => setTimeout(r, 50));
  }
  const logged = p
    .output()
    .split('\n')
    .filter((l) => l.includes('"config reloaded'))
    .map((l) => (JSON.parse(l) as { time: number }).time)
    .filter((t) => t >= written);
  if (logged.length > 0) proxyReloadMs.push(logged[0] - written);
}

/**
 * from/to: just before the kill switch was asked on, just after it was seen off
 * again (writes overlapping this may be unmirrored). on/off: when it was seen
 * on and when it was asked off (writes wholly inside this must be unmirrored).
 */
const killWindow = { from: Number.POSITIVE_INFINITY, on: Number.POSITIVE_INFINITY, off: 0, to: 0 };

/** Events at a fraction of the run, while every client keeps working. */
interface Phase {
  at: number;
  name: string;
  run(p: ProxyProcess): Promise<void>;
}

const PHASES: Phase[] = [
  { at: 0.2, name: 'read switch to new', run: (p) => reload(p, config({ reads: 'new' })) },
  { at: 0.4, name: 'read switch back to old', run: (p) => reload(p, config({ reads: 'old' })) },
  {
    at: 0.55,
    name: 'kill switch on',
    async run(p) {
      killWindow.from = Date.now();
      await reload(p, config({ killSwitch: true }));
      killWindow.on = Date.now();
    },
  },
  {
    at: 0.7,
    name: 'kill switch off',
    async run(p) {
      // Hold the kill switch for at least two seconds of traffic, however late it came on.
      await new Promise((r) => setTimeout(r, Math.max(0, killWindow.on + 2000 - Date.now())));
      killWindow.off = Date.now();
      await reload(p, config({ killSwitch: false }));
      killWindow.to = Date.now();
    },
  },
];

interface ClientState {
  id: number;
  client: pg.Client;
  inserts: number;
  deletes: number;
  txns: number;
  ops: number;
  /** Ids of this client's rows still in events. */
  live: number[];
}

/** A write to the mapped table and when it ran: drift is allowed only for kill-switch-window writes. */
interface MappedWrite {
  id: number;
  start: number;
  end: number;
}

async function oneOp(s: ClientState, writes: MappedWrite[]): Promise<void> {
  const r = Math.random();
  const c = s.client;
  const start = Date.now();
  if (r < 0.25) {
    await c.query('SELECT balance, ops FROM accounts WHERE id = $1', [s.id]);
  } else if (r < 0.4) {
    // A read of the mapped table: served by new while the read switch says so.
    const got = await c.query({
      name: 'recent-events',
      text: 'SELECT id, client, seq, payload FROM events WHERE client = $1 ORDER BY id DESC LIMIT 5',
      values: [s.id],
    });
    for (const row of got.rows)
      if (row.client !== s.id) throw new Error(`read of client ${s.id} returned a row of ${row.client}`);
  } else if (r < 0.65) {
    const ins = await c.query<{ id: string }>(
      'INSERT INTO events (client, seq, payload) VALUES ($1, $2, $3) RETURNING id',
      [s.id, s.inserts + 1, 'x'.repeat(Math.floor(Math.random() * 200))],
    );
    const id = Number(ins.rows[0].id);
    s.live.push(id);
    writes.push({ id, start, end: Date.now() });
    s.inserts++;
  } else if (r < 0.75 && s.live.length > 0) {
    const id = s.live[Math.floor(Math.random() * s.live.length)];
    const upd = await c.query("UPDATE events SET payload = coalesce(payload, '') || 'u' WHERE id = $1", [id]);
    if (upd.rowCount !== 1) throw new Error(`UPDATE of own row ${id} reported ${upd.rowCount} rows`);
    writes.push({ id, start, end: Date.now() });
  } else if (r < 0.8 && s.live.length > 0) {
    const id = s.live.splice(Math.floor(Math.random() * s.live.length), 1)[0];
    const del = await c.query('DELETE FROM events WHERE id = $1', [id]);
    if (del.rowCount !== 1) throw new Error(`DELETE of own row ${id} reported ${del.rowCount} rows`);
    writes.push({ id, start, end: Date.now() });
    s.deletes++;
  } else {
    await c.query('BEGIN');
    await c.query('UPDATE accounts SET balance = balance + $2, ops = ops + 1 WHERE id = $1', [s.id, 10]);
    const ins = await c.query<{ id: string }>(
      'INSERT INTO events (client, seq, payload) VALUES ($1, $2, $3) RETURNING id',
      [s.id, s.inserts + 1, 'txn'],
    );
    await c.query('COMMIT');
    const id = Number(ins.rows[0].id);
    s.live.push(id);
    writes.push({ id, start, end: Date.now() });
    s.inserts++;
    s.txns++;
  }
  s.ops++;
}

/** `switchyard verify` on the proxy's own config file; the drifted keys from its JSON-lines report. */
function verify(
  p: ProxyProcess,
  repair: boolean,
): Promise<{ code: number; drift: number[]; output: string }> {
  const out = path.join(os.tmpdir(), `sy-verify-${process.pid}-${Date.now()}-${repair ? 'r' : 'c'}.jsonl`);
  const bin = path.resolve(import.meta.dirname, '../../bin/switchyard.js');
  const args = [bin, 'verify', '--config', p.configPath, '--mapping', MAPPING.name, '--out', out];
  if (repair) args.push('--repair');
  return new Promise((resolve) => {
    execFile(process.execPath, args, { timeout: 60_000 }, (err, stdout, stderr) => {
      const code = err ? (err as { code?: number | string }).code : 0;
      let drift: number[] = [];
      try {
        drift = readFileSync(out, 'utf8')
          .split('\n')
          .filter(Boolean)
          .map((l) => keyId((JSON.parse(l) as { key: unknown }).key));
      } catch {
        // no report file: nothing drifted
      }
      resolve({ code: typeof code === 'number' ? code : 2, drift, output: `${stdout}${stderr}` });
    });
  });
}

function keyId(key: unknown): number {
  if (Array.isArray(key)) return Number(key[0]);
  if (key && typeof key === 'object') return Number(Object.values(key)[0]);
  return Number(key);
}

describe('load through the proxy', () => {
  it(
    `holds ${CLIENTS} connections for ${SECONDS} s of mixed traffic and switch flips: no error, bounded memory, nothing lost`,
    async () => {
      const errors: string[] = [];
      const writes: MappedWrite[] = [];
      /** Operations completed in each second of the run: a stall shows as a gap. */
      const timeline: number[] = [];
      const pid = proxy.child.pid!;
      const rss: { t: number; mb: number; connections: number }[] = [];
      const baselineMb = rssMb(pid);

      // Connect in waves so the run measures traffic, not a connection storm.
      const states: ClientState[] = [];
      const connectStart = Date.now();
      for (let i = 0; i < CLIENTS; i += 50) {
        const wave = Array.from({ length: Math.min(50, CLIENTS - i) }, async (_, k) => {
          const client = new pg.Client({ connectionString: proxy.url(), application_name: 'load' });
          client.on('error', (e) => errors.push(`client ${i + k} connection: ${e.message}`));
          await client.connect();
          states.push({ id: i + k, client, inserts: 0, deletes: 0, txns: 0, ops: 0, live: [] });
        });
        await Promise.all(wave);
      }
      const connectMs = Date.now() - connectStart;
      expect((await scrape(proxy)).get('switchyard_client_connections')).toBe(CLIENTS);

      const t0 = Date.now();
      const end = t0 + SECONDS * 1000;
      const cpu0 = cpuSeconds(pid);
      const ownCpu0 = process.cpuUsage();
      const sampler = setInterval(() => {
        scrape(proxy).then(
          (m) =>
            rss.push({
              t: Math.round((Date.now() - t0) / 1000),
              mb: rssMb(pid),
              connections: m.get('switchyard_client_connections') ?? -1,
            }),
          () => {},
        );
      }, 1000);
      const phaseResults: { name: string; at: number; ms: number; error?: string }[] = [];
      let phasesDone = false;
      const phases = (async () => {
        for (const ph of [...PHASES].sort((a, b) => a.at - b.at)) {
          const at = t0 + ph.at * SECONDS * 1000;
          await new Promise((r) => setTimeout(r, Math.max(0, at - Date.now())));
          const s = Date.now();
          try {
            await ph.run(proxy);
            phaseResults.push({ name: ph.name, at: ph.at, ms: Date.now() - s });
          } catch (e) {
            phaseResults.push({ name: ph.name, at: ph.at, ms: Date.now() - s, error: (e as Error).message });
          }
        }
        // A second of traffic after the last switch, before the clients stop.
        await new Promise((r) => setTimeout(r, 1000));
        phasesDone = true;
      })();
      await Promise.all(
        states.map(async (s) => {
          // The run lasts SECONDS, or longer if a phase came late: every switch happens under traffic.
          while (Date.now() < end || !phasesDone) {
            try {
              await oneOp(s, writes);
              const sec = Math.floor((Date.now() - t0) / 1000);
              timeline[sec] = (timeline[sec] ?? 0) + 1;
            } catch (e) {
              errors.push(`client ${s.id}: ${(e as Error).message}`);
            }
            // Think time, so the run is a crowd of clients rather than a benchmark.
            await new Promise((r) => setTimeout(r, 5 + Math.random() * 45));
          }
        }),
      );
      const loadMs = Date.now() - t0;
      const proxyCpuSeconds = Math.round((cpuSeconds(pid) - cpu0) * 10) / 10;
      const own = process.cpuUsage(ownCpu0);
      const clientCpuSeconds = Math.round((own.user + own.system) / 1e5) / 10;
      await phases;
      clearInterval(sampler);
      await Promise.all(states.map((s) => s.client.end()));

      const totalOps = states.reduce((a, s) => a + s.ops, 0);
      const gaugeZero = await (async () => {
        const deadline = Date.now() + 10_000;
        while (Date.now() < deadline) {
          if ((await scrape(proxy)).get('switchyard_client_connections') === 0) return true;
          await new Promise((r) => setTimeout(r, 100));
        }
        return false;
      })();

      // Nothing lost: every acknowledged insert, delete and transaction is in old.
      const stored = await db.query<{ client: number; n: number }>(
        'SELECT client, count(*)::int AS n FROM events GROUP BY client',
      );
      const accounts = await db.query<{ id: number; ops: number; balance: string }>(
        'SELECT id, ops, balance FROM accounts',
      );
      const byClient = new Map(stored.rows.map((r) => [r.client, r.n]));
      const acct = new Map(accounts.rows.map((r) => [r.id, r]));
      const lost: string[] = [];
      for (const s of states) {
        const n = byClient.get(s.id) ?? 0;
        if (n !== s.inserts - s.deletes)
          lost.push(`client ${s.id}: ${s.inserts} inserts, ${s.deletes} deletes acknowledged; ${n} rows`);
        const a = acct.get(s.id)!;
        if (a.ops !== s.txns || Number(a.balance) !== s.txns * 10)
          lost.push(`client ${s.id}: ${s.txns} transactions acknowledged, ops=${a.ops} balance=${a.balance}`);
      }

      // Drift: new may miss only what was written while the kill switch was on.
      const check = await verify(proxy, false);
      const inWindow = new Set(
        writes.filter((w) => w.end >= killWindow.from && w.start <= killWindow.to).map((w) => w.id),
      );
      const unexplainedDrift = check.drift.filter((id) => !inWindow.has(id));
      // Rows written only while the kill switch was surely on, and still in old, were never mirrored.
      const byId = new Map<number, MappedWrite[]>();
      for (const w of writes) byId.set(w.id, [...(byId.get(w.id) ?? []), w]);
      const liveIds = new Set(states.flatMap((st) => st.live));
      const mustDrift = [...byId]
        .filter(
          ([id, ws]) =>
            liveIds.has(id) && ws.every((w) => w.start >= killWindow.on && w.end <= killWindow.off),
        )
        .map(([id]) => id);
      const driftSet = new Set(check.drift);
      const mirroredDespiteKill = mustDrift.filter((id) => !driftSet.has(id));
      const repair = await verify(proxy, true);
      const after = await verify(proxy, false);

      const peakMb = Math.max(baselineMb, ...rss.map((r) => r.mb));
      console.log(
        JSON.stringify({
          clients: CLIENTS,
          seconds: SECONDS,
          connectMs,
          loadMs,
          totalOps,
          opsPerSecond: Math.round(totalOps / (loadMs / 1000)),
          proxyCpuSeconds,
          clientCpuSeconds,
          proxyReloadMs,
          inserts: states.reduce((a, s) => a + s.inserts, 0),
          deletes: states.reduce((a, s) => a + s.deletes, 0),
          transactions: states.reduce((a, s) => a + s.txns, 0),
          mappedWrites: writes.length,
          errors: errors.length,
          lost: lost.length,
          phases: phaseResults,
          killSwitchWindowMs: killWindow.to - killWindow.from,
          writesInKillWindow: inWindow.size,
          driftFound: check.drift.length,
          driftOutsideKillWindow: unexplainedDrift.length,
          writtenOnlyWhileKilled: mustDrift.length,
          opsPerSecondTimeline: Array.from(timeline, (v) => v ?? 0).join(' '),
          repairExit: repair.code,
          driftAfterRepair: after.drift.length,
          rssBaselineMb: baselineMb,
          rssPeakMb: peakMb,
          rss: rss.map((r) => `${r.t}s:${r.mb}MB/${r.connections}`).join(' '),
        }),
      );

      expect(errors.slice(0, 10)).toEqual([]);
      expect(phaseResults.filter((p) => p.error)).toEqual([]);
      expect(lost.slice(0, 10)).toEqual([]);
      expect(check.code, check.output).toBe(check.drift.length > 0 ? 1 : 0);
      expect(unexplainedDrift.slice(0, 10)).toEqual([]);
      expect(mirroredDespiteKill.slice(0, 10)).toEqual([]);
      // The kill switch check is not vacuous: writes happened while it was on, and were not mirrored.
      expect(inWindow.size).toBeGreaterThan(0);
      expect(check.drift.length).toBeGreaterThan(0);
      expect(repair.code, repair.output).toBe(0);
      expect(after.code, after.output).toBe(0);
      expect(after.drift).toEqual([]);
      expect(gaugeZero).toBe(true);
      expect(peakMb).toBeLessThan(RSS_LIMIT_MB);
      // Every sample taken under load saw all the clients connected.
      expect(rss.filter((r) => r.t < SECONDS && r.connections !== CLIENTS).map((r) => r.t)).toEqual([]);
      expect(proxy.child.exitCode).toBeNull();
    },
    (SECONDS + 200) * 1000,
  );
});

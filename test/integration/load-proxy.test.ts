// Load through the real CLI process: SWITCHYARD_LOAD_CLIENTS (default 500)
// connections held for SWITCHYARD_LOAD_SECONDS (default 20; 60 for the
// reliability note) with a mixed read/write workload, and timed events in the
// middle of the run (PHASES). Zero client errors, proxy RSS sampled and
// bounded, every session closed afterwards, every acknowledged write stored.
import { readFileSync } from 'node:fs';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freshDatabase, type TestDatabase } from '../support/db.ts';
import { type ProxyProcess, startProxyProcess } from '../support/proxy.ts';

const CLIENTS = Number(process.env.SWITCHYARD_LOAD_CLIENTS ?? 500);
const SECONDS = Number(process.env.SWITCHYARD_LOAD_SECONDS ?? 20);
/** Ceiling for the proxy's resident memory while it holds the load. */
const RSS_LIMIT_MB = 512;

const CONFIG = { limits: { maxClientConnections: 1000 } };

let db: TestDatabase;
let proxy: ProxyProcess;

beforeAll(async () => {
  db = await freshDatabase('load');
  await db.query(`
    CREATE TABLE accounts (id int PRIMARY KEY, balance bigint NOT NULL DEFAULT 0, ops int NOT NULL DEFAULT 0);
    CREATE TABLE events (id bigserial PRIMARY KEY, client int NOT NULL, seq int NOT NULL, payload text);
    CREATE INDEX ON events (client);
    INSERT INTO accounts (id) SELECT g FROM generate_series(0, ${CLIENTS - 1}) g;
  `);
  proxy = await startProxyProcess(db, CONFIG);
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

function rssMb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Math.round(Number(m[1]) / 1024) : 0;
}

interface ClientState {
  id: number;
  client: pg.Client;
  inserts: number;
  txns: number;
  ops: number;
}

/**
 * Events at a fraction of the run, while every client keeps working. The
 * mapping switches (dual-write, read switch, kill switch) join this list.
 */
interface Phase {
  at: number;
  name: string;
  run(p: ProxyProcess, config: Record<string, unknown>): Promise<void>;
}

const PHASES: Phase[] = [
  {
    at: 0.5,
    name: 'config reload under load',
    async run(p, config) {
      const before = (await scrape(p)).get('switchyard_config_version') ?? 0;
      p.writeConfig({ ...config, limits: { maxClientConnections: 900 } });
      const deadline = Date.now() + 10_000;
      while (((await scrape(p)).get('switchyard_config_version') ?? 0) <= before) {
        if (Date.now() > deadline) throw new Error('config reload under load not applied');
        await new Promise((r) => setTimeout(r, 100));
      }
    },
  },
];

async function oneOp(s: ClientState): Promise<void> {
  const r = Math.random();
  const c = s.client;
  if (r < 0.35) {
    await c.query('SELECT balance, ops FROM accounts WHERE id = $1', [s.id]);
  } else if (r < 0.45) {
    await c.query({
      name: 'recent-events',
      text: 'SELECT seq, payload FROM events WHERE client = $1 ORDER BY id DESC LIMIT 5',
      values: [s.id],
    });
  } else if (r < 0.75) {
    await c.query('INSERT INTO events (client, seq, payload) VALUES ($1, $2, $3)', [
      s.id,
      s.inserts + 1,
      'x'.repeat(Math.floor(Math.random() * 200)),
    ]);
    s.inserts++;
  } else {
    await c.query('BEGIN');
    await c.query('UPDATE accounts SET balance = balance + $2, ops = ops + 1 WHERE id = $1', [s.id, 10]);
    await c.query('INSERT INTO events (client, seq, payload) VALUES ($1, $2, $3)', [
      s.id,
      s.inserts + 1,
      'txn',
    ]);
    await c.query('COMMIT');
    s.inserts++;
    s.txns++;
  }
  s.ops++;
}

describe('load through the proxy', () => {
  it(
    `holds ${CLIENTS} connections for ${SECONDS} s of mixed traffic with no error, bounded memory and nothing lost`,
    async () => {
      const config = CONFIG;
      const errors: string[] = [];
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
          states.push({ id: i + k, client, inserts: 0, txns: 0, ops: 0 });
        });
        await Promise.all(wave);
      }
      const connectMs = Date.now() - connectStart;
      expect((await scrape(proxy)).get('switchyard_client_connections')).toBe(CLIENTS);

      const t0 = Date.now();
      const end = t0 + SECONDS * 1000;
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
      const phases = (async () => {
        for (const ph of [...PHASES].sort((a, b) => a.at - b.at)) {
          const at = t0 + ph.at * SECONDS * 1000;
          await new Promise((r) => setTimeout(r, Math.max(0, at - Date.now())));
          const s = Date.now();
          try {
            await ph.run(proxy, config);
            phaseResults.push({ name: ph.name, at: ph.at, ms: Date.now() - s });
          } catch (e) {
            phaseResults.push({ name: ph.name, at: ph.at, ms: Date.now() - s, error: (e as Error).message });
          }
        }
      })();
      await Promise.all(
        states.map(async (s) => {
          while (Date.now() < end) {
            try {
              await oneOp(s);
            } catch (e) {
              errors.push(`client ${s.id}: ${(e as Error).message}`);
            }
            // Think time, so the run is a crowd of clients rather than a benchmark.
            await new Promise((r) => setTimeout(r, 5 + Math.random() * 45));
          }
        }),
      );
      const loadMs = Date.now() - t0;
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

      // Nothing lost: every acknowledged insert and transaction is stored.
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
        if ((byClient.get(s.id) ?? 0) !== s.inserts)
          lost.push(`client ${s.id}: ${s.inserts} inserts acknowledged, ${byClient.get(s.id) ?? 0} stored`);
        const a = acct.get(s.id)!;
        if (a.ops !== s.txns || Number(a.balance) !== s.txns * 10)
          lost.push(`client ${s.id}: ${s.txns} transactions acknowledged, ops=${a.ops} balance=${a.balance}`);
      }

      const peakMb = Math.max(baselineMb, ...rss.map((r) => r.mb));
      console.log(
        JSON.stringify({
          clients: CLIENTS,
          seconds: SECONDS,
          connectMs,
          loadMs,
          totalOps,
          opsPerSecond: Math.round(totalOps / (loadMs / 1000)),
          inserts: states.reduce((a, s) => a + s.inserts, 0),
          transactions: states.reduce((a, s) => a + s.txns, 0),
          errors: errors.length,
          lost: lost.length,
          phases: phaseResults,
          rssBaselineMb: baselineMb,
          rssPeakMb: peakMb,
          rss: rss.map((r) => `${r.t}s:${r.mb}MB/${r.connections}`).join(' '),
        }),
      );

      expect(errors.slice(0, 10)).toEqual([]);
      expect(phaseResults.filter((p) => p.error)).toEqual([]);
      expect(lost.slice(0, 10)).toEqual([]);
      expect(gaugeZero).toBe(true);
      expect(peakMb).toBeLessThan(RSS_LIMIT_MB);
      // Every sample taken under load saw all the clients connected.
      expect(rss.filter((r) => r.t < SECONDS && r.connections !== CLIENTS).map((r) => r.t)).toEqual([]);
      expect(proxy.child.exitCode).toBeNull();
    },
    (SECONDS + 150) * 1000,
  );
});

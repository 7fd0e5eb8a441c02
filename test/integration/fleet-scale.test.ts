// Twenty sidecar processes on one Postgres, a client writing through each:
// the kill switch and a read flip made with `switchyard switch` reach all of
// them within a second; control connections killed during a flip converge
// after reconnecting; afterwards the only drift is the writes made under the
// kill switch, and verify reports exactly those.
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { awaitApplied } from '../../src/fleet/await-applied.ts';
import { freshDatabase, type TestDatabase } from '../support/db.ts';
import { controlBackends, eventually, fleetConfig, runCli } from '../support/fleet.ts';
import { createItems, ITEMS } from '../support/items.ts';
import { mappingConfig } from '../support/lifecycle.ts';
import { type ProxyProcess, startProxyProcess } from '../support/proxy.ts';

const N = 20;
const PROBE = 1_000_000;

let db: TestDatabase;
const procs: ProxyProcess[] = [];
const writers: Writer[] = [];

interface Write {
  id: number;
  sent: number;
  done: number;
}

class Writer {
  readonly writes: Write[] = [];
  private stopped = false;
  private loop?: Promise<void>;
  constructor(
    private readonly client: pg.Client,
    private readonly base: number,
  ) {}
  start() {
    this.loop = (async () => {
      for (let i = 0; !this.stopped; i++) {
        const id = this.base + i;
        const sent = Date.now();
        await this.client.query({
          name: 'ins',
          text: 'INSERT INTO items (id, v) VALUES ($1, $2)',
          values: [id, 'w'],
        });
        this.writes.push({ id, sent, done: Date.now() });
        // Paced, not flat out: twenty writers must not starve the two cores the sidecars share.
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
  }
  async stop() {
    this.stopped = true;
    await this.loop;
  }
  async close() {
    await this.stop().catch(() => {});
    await this.client.end().catch(() => {});
  }
  completedAfter(t: number) {
    return this.writes.filter((w) => w.sent > t).length;
  }
}

const config = () => ({
  ...mappingConfig([ITEMS]),
  ...fleetConfig({ heartbeatMs: 1000, staleAfterMs: 15_000 }),
});

beforeAll(async () => {
  db = await freshDatabase('fleet20');
  await createItems(db);
  await db.query(
    `INSERT INTO items VALUES (${PROBE}, 'from old'); INSERT INTO items_v2 VALUES (${PROBE}, 'from new')`,
  );
  for (let i = 0; i < N; i += 5) {
    const batch = await Promise.all(
      Array.from({ length: Math.min(5, N - i) }, (_, j) =>
        startProxyProcess(db, config(), { POD_NAME: `pod-${String(i + j).padStart(2, '0')}` }),
      ),
    );
    procs.push(...batch);
  }
  for (const [i, p] of procs.entries()) {
    const c = new pg.Client({ connectionString: p.url() });
    c.on('error', () => {});
    await c.connect();
    const w = new Writer(c, (i + 1) * 10_000);
    writers.push(w);
    w.start();
  }
}, 300_000);

afterAll(async () => {
  await Promise.all(writers.map((w) => w.close()));
  await Promise.all(procs.map((p) => p.stop()));
  await db?.drop();
}, 120_000);

interface SwitchJson {
  version: number;
  applied: Array<{ name: string; delayMs: number }>;
  pending: Array<{ name: string }>;
}

async function flip(args: string[], wait = 10): Promise<SwitchJson> {
  const r = await runCli([
    'switch',
    '--config',
    procs[0].configPath,
    ...args,
    '--json',
    '--wait',
    String(wait),
  ]);
  expect(r.stderr).toBe('');
  return JSON.parse(r.stdout) as SwitchJson;
}

function distribution(what: string, r: { applied: Array<{ delayMs: number | null }> }): number[] {
  const d = r.applied.map((a) => a.delayMs ?? Number.NaN).sort((x, y) => x - y);
  const q = (p: number) => d[Math.min(d.length - 1, Math.floor(p * d.length))];
  console.log(
    `${what}: ${d.length} sidecars applied; ms min ${d[0]} p50 ${q(0.5)} p90 ${q(0.9)} max ${d.at(-1)}`,
  );
  return d;
}

async function progress(since: number, n = 3) {
  await eventually(
    async () => Math.min(...writers.map((w) => w.completedAfter(since))),
    (m) => m >= n,
    `${n} writes through every sidecar`,
    60_000,
  );
}

async function readProbe(p: ProxyProcess): Promise<string> {
  const c = new pg.Client({ connectionString: p.url() });
  await c.connect();
  try {
    return (await c.query('SELECT v FROM items WHERE id = $1', [PROBE])).rows[0].v;
  } finally {
    await c.end();
  }
}

describe(`${N} sidecars`, () => {
  let onSent = 0;
  let onDone = 0;
  let offSent = 0;
  let offDone = 0;

  it('all report to the fleet', async () => {
    const r = await eventually(
      () => runCli(['status', '--fleet', '--config', procs[0].configPath, '--json']),
      (x) =>
        (JSON.parse(x.stdout || '{}').sidecars ?? []).filter((s: { stale: boolean }) => !s.stale).length ===
        N,
      `${N} heartbeats`,
      60_000,
    );
    expect(JSON.parse(r.stdout).sidecars).toHaveLength(N);
    await progress(0);
  });

  it('the kill switch reaches all of them within a second, while they take writes', async () => {
    onSent = Date.now();
    const on = await flip(['--kill-switch', 'on', '--reason', 'drill']);
    onDone = Date.now();
    expect(on.pending).toEqual([]);
    expect(on.applied).toHaveLength(N);
    expect(distribution('kill switch on', on).at(-1)).toBeLessThan(1000);
    await progress(onDone);

    offSent = Date.now();
    const off = await flip(['--kill-switch', 'off', '--reason', 'drill over']);
    offDone = Date.now();
    expect(off.pending).toEqual([]);
    expect(distribution('kill switch off', off).at(-1)).toBeLessThan(1000);
    await progress(offDone);
  });

  it('a read flip reaches all of them within a second', async () => {
    const r = await flip(['--mapping', 'items', '--reads', 'new']);
    expect(r.pending).toEqual([]);
    expect(distribution('reads new', r).at(-1)).toBeLessThan(1000);
    for (const p of procs) expect(await readProbe(p)).toBe('from new');
  });

  it('control connections killed during a flip converge after reconnecting', async () => {
    const victims = (await controlBackends(db, db.name)).slice(0, 5);
    expect(victims).toHaveLength(5);
    // Killed in the transaction that makes the change: they are gone when its
    // notification goes out, so only the re-read on reconnect brings it to them.
    await db.query('BEGIN');
    await db.query('SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) AS pid', [victims]);
    const ins = await db.query(
      `INSERT INTO switchyard.switch_changes (mapping, setting, value, changed_by, reason)
       VALUES ('items', 'reads', 'old', 'test', 'during kills') RETURNING version, changed_at`,
    );
    await db.query('COMMIT');
    const change = { version: Number(ins.rows[0].version), at: ins.rows[0].changed_at as Date };
    const r = await awaitApplied(db.direct, change, { timeoutMs: 30_000, staleAfterMs: 15_000 });
    expect(r.pending).toEqual([]);
    expect(r.applied).toHaveLength(N);
    distribution('reads old, 5 control connections killed as it was made', r);
    const now = await controlBackends(db, db.name);
    expect(now).toHaveLength(N);
    expect(now.filter((pid) => victims.includes(pid))).toEqual([]);
    for (const p of procs) expect(await readProbe(p)).toBe('from old');
  });

  it('the drift is exactly the writes made under the kill switch, and verify reports them', async () => {
    await Promise.all(writers.map((w) => w.stop()));
    await db.query(`DELETE FROM items WHERE id = ${PROBE}; DELETE FROM items_v2 WHERE id = ${PROBE}`);
    const missing = new Set(
      (
        await db.query('SELECT o.id FROM items o LEFT JOIN items_v2 n USING (id) WHERE n.id IS NULL')
      ).rows.map((r) => r.id as number),
    );
    const all = writers.flatMap((w) => w.writes);
    // Sent after every sidecar applied "on" and done before "off" was asked: under the kill switch.
    // Timestamps are milliseconds: a write done in the millisecond "off" was asked in was
    // recorded before it (the ask waits for the writes to be seen), and "off" is recorded
    // later still, so it counts as under; likewise "done" against "on".
    const under = all.filter((w) => w.sent > onDone && w.done <= offSent);
    // Done before "on" was asked, or sent after every sidecar applied "off": mirrored.
    const mirrored = all.filter((w) => w.done <= onSent || w.sent > offDone);
    expect(under.length).toBeGreaterThanOrEqual(3 * N);
    expect(under.filter((w) => !missing.has(w.id))).toEqual([]);
    expect(mirrored.filter((w) => missing.has(w.id))).toEqual([]);
    const extra = await db.query(
      'SELECT count(*)::int AS n FROM items_v2 n LEFT JOIN items o USING (id) WHERE o.id IS NULL',
    );
    expect(extra.rows[0].n).toBe(0);

    const v = await runCli(['verify', '--config', procs[0].configPath, '--mapping', 'items']);
    expect(v.code).toBe(1);
    expect(v.stdout).toContain(`drift: ${missing.size} rows (missing ${missing.size}, extra 0, different 0)`);
  });
});

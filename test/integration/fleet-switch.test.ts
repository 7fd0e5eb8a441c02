// One switch for the whole fleet: two sidecar processes follow the control
// table; `switchyard switch` flips reads and the kill switch, waits until both
// apply, and clients through each see it, prepared statements included.
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freshDatabase, type TestDatabase } from '../support/db.ts';
import { clientThrough, eventually, fleetConfig, getJson, runCli } from '../support/fleet.ts';
import { createItems, ITEMS } from '../support/items.ts';
import { mappingConfig } from '../support/lifecycle.ts';
import { type ProxyProcess, startProxyProcess } from '../support/proxy.ts';

let db: TestDatabase;
const procs: ProxyProcess[] = [];
const clients: pg.Client[] = [];

const config = () => ({ ...mappingConfig([ITEMS]), ...fleetConfig() });

beforeAll(async () => {
  db = await freshDatabase('fleet');
  await createItems(db);
  // Two copies that differ on purpose: the value read tells which table served it.
  await db.query(`INSERT INTO items VALUES (100, 'from old'); INSERT INTO items_v2 VALUES (100, 'from new')`);
  for (const pod of ['app-a', 'app-b']) procs.push(await startProxyProcess(db, config(), { POD_NAME: pod }));
});

afterAll(async () => {
  await Promise.all(clients.map((c) => c.end().catch(() => {})));
  await Promise.all(procs.map((p) => p.stop()));
  await db?.drop();
});

async function connect(p: ProxyProcess): Promise<pg.Client> {
  const c = await clientThrough(p.url());
  clients.push(c);
  return c;
}

const READ = { name: 'sel', text: 'SELECT v FROM items WHERE id = $1', values: [100] };
const read = async (c: pg.Client) => (await c.query(READ)).rows[0]?.v as string;

interface SwitchJson {
  version: number;
  applied: Array<{ name: string; delayMs: number }>;
  pending: unknown[];
  convergedMs: number;
}

async function flip(args: string[]): Promise<SwitchJson> {
  const r = await runCli(['switch', '--config', procs[0].configPath, ...args, '--json', '--wait', '10']);
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  return JSON.parse(r.stdout) as SwitchJson;
}

describe('switchyard switch across two sidecars', () => {
  it('both sidecars have joined the fleet', async () => {
    const r = await eventually(
      () => runCli(['status', '--fleet', '--config', procs[0].configPath, '--json']),
      (x) => (JSON.parse(x.stdout || '{}').sidecars ?? []).length === 2,
      'two heartbeats',
    );
    const names = JSON.parse(r.stdout).sidecars.map((s: { name: string }) => s.name);
    expect(names.sort()).toEqual(['app-a', 'app-b']);
  });

  it('flips reads on both within a second, and a statement prepared before the flip is re-planned', async () => {
    const [a, b] = [await connect(procs[0]), await connect(procs[1])];
    expect([await read(a), await read(b)]).toEqual(['from old', 'from old']);

    const r = await runCli([
      'switch',
      '--config',
      procs[0].configPath,
      '--mapping',
      'items',
      '--reads',
      'new',
      '--reason',
      'read flip',
      '--by',
      'alice',
    ]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const [head, summary] = r.stdout.split('\n');
    expect(head).toMatch(/^version \d+: mapping items reads new$/);
    expect(summary).toMatch(/^applied by all 2 live sidecars in \d\.\d{3}s$/);
    expect(r.stdout).toMatch(/applied {2}app-a {2}app-a-[0-9a-f]+ {2}after \d\.\d{3}s/);
    expect(r.stdout).toMatch(/applied {2}app-b {2}app-b-[0-9a-f]+ {2}after \d\.\d{3}s/);
    const seconds = Number(/in (\d\.\d{3})s/.exec(summary)?.[1]);
    expect(seconds).toBeLessThan(1);

    // The CLI returned once both reported: the same prepared statements now read new.
    expect([await read(a), await read(b)]).toEqual(['from new', 'from new']);

    const history = await db.query(
      `SELECT setting, value, changed_by, reason FROM switchyard.switch_changes ORDER BY version DESC LIMIT 1`,
    );
    expect(history.rows[0]).toEqual({
      setting: 'reads',
      value: 'new',
      changed_by: 'alice',
      reason: 'read flip',
    });

    const s = await getJson(`http://127.0.0.1:${procs[1].adminPort}/status`);
    const layers = (s.body.switches as { mappings: Array<{ reads: { source: string; file: string } }> })
      .mappings[0].reads;
    expect(layers).toMatchObject({ file: 'old', effective: 'new', source: 'control' });
    expect(s.body.fleet).toMatchObject({ enabled: true, connected: true, name: 'app-b' });
  });

  it('the kill switch stops mirroring through both sidecars, and lifting it resumes', async () => {
    const [a, b] = [await connect(procs[0]), await connect(procs[1])];
    const ins = (c: pg.Client, id: number) =>
      c.query({ name: 'ins', text: 'INSERT INTO items (id, v) VALUES ($1, $2)', values: [id, `v${id}`] });
    await ins(a, 1);
    await ins(b, 2);

    const on = await flip(['--kill-switch', 'on', '--reason', 'incident 42']);
    expect(on.applied.map((x) => x.name).sort()).toEqual(['app-a', 'app-b']);
    expect(on.convergedMs).toBeLessThan(1000);
    await ins(a, 3);
    await ins(b, 4);

    const off = await flip(['--kill-switch', 'off', '--reason', 'resolved']);
    expect(off.version).toBeGreaterThan(on.version);
    await ins(a, 5);
    await ins(b, 6);

    const inNew = await db.query('SELECT id FROM items_v2 WHERE id < 100 ORDER BY id');
    expect(inNew.rows.map((r) => r.id)).toEqual([1, 2, 5, 6]);
    const inOld = await db.query('SELECT id FROM items WHERE id < 100 ORDER BY id');
    expect(inOld.rows.map((r) => r.id)).toEqual([1, 2, 3, 4, 5, 6]);
  });

  it('propagates every flip to both sidecars in under a second', async () => {
    const delays: number[] = [];
    for (let i = 0; i < 10; i++) {
      const r = await flip([
        '--mapping',
        'items',
        '--reads',
        i % 2 === 0 ? 'old' : 'new',
        '--reason',
        `flip ${i}`,
      ]);
      expect(r.pending).toEqual([]);
      delays.push(...r.applied.map((x) => x.delayMs));
    }
    delays.sort((x, y) => x - y);
    const q = (p: number) => delays[Math.min(delays.length - 1, Math.floor(p * delays.length))];
    console.log(
      `fleet propagation over ${delays.length} sidecar applies: min ${delays[0]} ms, p50 ${q(0.5)} ms, p90 ${q(0.9)} ms, max ${delays.at(-1)} ms`,
    );
    expect(delays.at(-1)).toBeLessThan(1000);
  });

  it('a sidecar started after a flip starts with the current state', async () => {
    const late = await startProxyProcess(db, config(), { POD_NAME: 'app-late' });
    procs.push(late);
    const s = await getJson(`http://127.0.0.1:${late.adminPort}/status`);
    const top = await db.query('SELECT max(version)::int AS v FROM switchyard.switch_changes');
    expect((s.body.fleet as { appliedVersion: number }).appliedVersion).toBe(top.rows[0].v);
    const c = await connect(late);
    // The last flip of the loop above (i = 9) set reads new.
    expect(await read(c)).toBe('from new');
  });
});

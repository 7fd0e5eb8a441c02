// The metrics an SRE watches during a migration: latency by route and
// mapping, mirror failures, switch gauges that follow every flip, and the
// plan cache. Read from the registry of the in-process proxy.
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { registry } from '../../src/metrics.ts';
import { freshDatabase, type TestDatabase } from '../support/db.ts';
import { applyConfig, mappingConfig } from '../support/lifecycle.ts';
import type { MappingDefinition } from '../support/mapping-cases.ts';
import { startProxy, type TestProxy } from '../support/proxy.ts';

let db: TestDatabase;
let proxy: TestProxy;
let client: pg.Client;

const tickets: MappingDefinition = {
  name: 'tickets-v2',
  old: 'tickets',
  new: 'tickets_v2',
  key: ['id'],
  up: { id: 'id', title: 'title' },
  down: { id: 'id', title: 'title' },
};

beforeAll(async () => {
  db = await freshDatabase('mm');
  // The new table refuses a title the old one accepts: a mirror that fails.
  await db.query(`
    CREATE TABLE tickets (id int PRIMARY KEY, title text NOT NULL);
    CREATE TABLE tickets_v2 (id int PRIMARY KEY, title text NOT NULL CHECK (title <> 'forbidden'));
    CREATE TABLE unrelated (x int);`);
  proxy = await startProxy(db, mappingConfig([tickets]));
  client = new pg.Client({ connectionString: proxy.url() });
  await client.connect();
});

afterAll(async () => {
  await client?.end();
  await proxy?.close();
  await db?.drop();
});

async function value(name: string, labels: Record<string, string> = {}, suffix = ''): Promise<number> {
  const metric = registry.getSingleMetric(name);
  if (!metric) throw new Error(`no metric ${name}`);
  const data = await metric.get();
  return data.values
    .filter(
      (v) =>
        (suffix === '' || (v as { metricName?: string }).metricName === `${name}${suffix}`) &&
        Object.entries(labels).every(([k, want]) => String(v.labels[k]) === want),
    )
    .reduce((s, v) => s + v.value, 0);
}

const latencyCount = (route: string, mapping: string) =>
  value('switchyard_statement_duration_seconds', { route, mapping }, '_count');

describe('statement latency by route and mapping', () => {
  it('observes mirrored_write, read_old, read_new and passthrough', async () => {
    const before = {
      write: await latencyCount('mirrored_write', tickets.name),
      old: await latencyCount('read_old', tickets.name),
      neu: await latencyCount('read_new', tickets.name),
      pass: await latencyCount('passthrough', ''),
    };
    await client.query("INSERT INTO tickets VALUES (1, 'a')");
    await client.query('UPDATE tickets SET title = $1 WHERE id = $2', ['b', 1]);
    await client.query('SELECT * FROM tickets');
    await applyConfig(proxy, db, mappingConfig([tickets], { reads: 'new' }));
    await client.query('SELECT title FROM tickets WHERE id = $1', [1]);
    await client.query('SELECT count(*) FROM unrelated');
    expect(await latencyCount('mirrored_write', tickets.name)).toBe(before.write + 2);
    expect(await latencyCount('read_old', tickets.name)).toBe(before.old + 1);
    expect(await latencyCount('read_new', tickets.name)).toBe(before.neu + 1);
    expect(await latencyCount('passthrough', '')).toBeGreaterThan(before.pass);
    await applyConfig(proxy, db, mappingConfig([tickets]));
  });
});

describe('mirror failures', () => {
  it('a write the new table refuses fails whole, changes neither table and is counted', async () => {
    const before = await value('switchyard_mirror_failures_total', { mapping: tickets.name });
    const errs = await value('switchyard_statement_errors_total', {
      route: 'mirrored_write',
      mapping: tickets.name,
    });
    const err = await client.query("INSERT INTO tickets VALUES (2, 'forbidden')").catch((e) => e);
    expect(err.code).toBe('23514');
    const err2 = await client
      .query('UPDATE tickets SET title = $1 WHERE id = 1', ['forbidden'])
      .catch((e) => e);
    expect(err2.code).toBe('23514');
    expect(await value('switchyard_mirror_failures_total', { mapping: tickets.name })).toBe(before + 2);
    expect(
      await value('switchyard_statement_errors_total', { route: 'mirrored_write', mapping: tickets.name }),
    ).toBe(errs + 2);
    const r = await db.query(
      'SELECT (SELECT count(*) FROM tickets WHERE id = 2)::int AS o, (SELECT title FROM tickets WHERE id = 1) AS t',
    );
    expect(r.rows[0]).toEqual({ o: 0, t: 'b' });
  });
});

describe('switch gauges follow flips', () => {
  it('reads_new, dual_write and kill_switch', async () => {
    const g = async () => ({
      kill: await value('switchyard_kill_switch'),
      dual: await value('switchyard_mapping_dual_write', { mapping: tickets.name }),
      readsNew: await value('switchyard_mapping_reads_new', { mapping: tickets.name }),
    });
    expect(await g()).toEqual({ kill: 0, dual: 1, readsNew: 0 });
    await applyConfig(proxy, db, mappingConfig([tickets], { reads: 'new' }));
    expect(await g()).toEqual({ kill: 0, dual: 1, readsNew: 1 });
    proxy.runtime.store.setKillSwitchOverride(true);
    expect(await g()).toEqual({ kill: 1, dual: 0, readsNew: 1 });
    proxy.runtime.store.setKillSwitchOverride(null);
    await applyConfig(proxy, db, mappingConfig([tickets], { dualWrite: false }));
    expect(await g()).toEqual({ kill: 0, dual: 0, readsNew: 0 });
    await applyConfig(proxy, db, mappingConfig([tickets], { killSwitch: true }));
    expect(await g()).toEqual({ kill: 1, dual: 0, readsNew: 0 });
    await applyConfig(proxy, db, mappingConfig([tickets]));
    expect(await g()).toEqual({ kill: 0, dual: 1, readsNew: 0 });
  });

  it('dualWrite: false forwards writes unchanged', async () => {
    await applyConfig(proxy, db, mappingConfig([tickets], { dualWrite: false }));
    await client.query("INSERT INTO tickets VALUES (50, 'not mirrored')");
    await applyConfig(proxy, db, mappingConfig([tickets]));
    expect((await db.query('SELECT 1 FROM tickets_v2 WHERE id = 50')).rowCount).toBe(0);
    expect((await db.query('SELECT 1 FROM tickets WHERE id = 50')).rowCount).toBe(1);
  });
});

describe('plan cache', () => {
  it('a repeated statement is a hit; a new text is a miss', async () => {
    const hit = () => value('switchyard_plan_cache_total', { result: 'hit' });
    const miss = () => value('switchyard_plan_cache_total', { result: 'miss' });
    const sql = 'SELECT title FROM tickets WHERE id = $1 /* plan-cache probe */';
    const m0 = await miss();
    await client.query(sql, [1]);
    expect(await miss()).toBe(m0 + 1);
    const h0 = await hit();
    for (let i = 0; i < 5; i++) await client.query(sql, [1]);
    expect(await hit()).toBe(h0 + 5);
    // A statement naming no mapped table never reaches the planner.
    const [h1, m1] = [await hit(), await miss()];
    await client.query('SELECT count(*) FROM unrelated');
    expect([await hit(), await miss()]).toEqual([h1, m1]);
  });
});

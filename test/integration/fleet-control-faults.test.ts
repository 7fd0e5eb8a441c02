// The control connection under faults: a notification missed while the
// connection was gone is caught up on reconnect; a control table that cannot
// be read leaves the switches as they were, and says so in /readyz, /status
// and the metrics, until it can be read again.
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { parseConfigText } from '../../src/config/load.ts';
import { recordChanges } from '../../src/fleet/tables.ts';
import { freshDatabase, type TestDatabase } from '../support/db.ts';
import { controlBackends, eventually, fleetConfig, getJson, metric, startRelay } from '../support/fleet.ts';
import { createItems, ITEMS } from '../support/items.ts';
import { mappingConfig } from '../support/lifecycle.ts';
import { baseConfig, startProxy, type TestProxy } from '../support/proxy.ts';

let db: TestDatabase;
let proxy: TestProxy;
let relay: Awaited<ReturnType<typeof startRelay>>;
let client: pg.Client | undefined;

beforeAll(async () => {
  db = await freshDatabase('fleetf');
  await createItems(db);
  await db.query(`INSERT INTO items VALUES (100, 'from old'); INSERT INTO items_v2 VALUES (100, 'from new')`);
  relay = await startRelay(db);
  proxy = await startProxy(db, { ...config(), upstream: { url: relayUrl() } }, { admin: true });
  await eventually(
    async () => proxy.runtime.fleet?.state.connected,
    (c) => c === true,
    'control connection',
  );
});

afterAll(async () => {
  await client?.end().catch(() => {});
  await proxy?.close();
  await relay?.close();
  await db?.drop();
});

function relayUrl(): string {
  const u = new URL(db.url);
  u.port = String(relay.port);
  return u.toString();
}

function config() {
  return { ...mappingConfig([ITEMS]), ...fleetConfig() };
}

/** Through the proxy, on a kept connection (re-planned prepared statement); a fresh one after a cut. */
async function read(): Promise<string> {
  if (!client) {
    const c = new pg.Client({ connectionString: proxy.url() });
    c.on('error', () => {
      if (client === c) client = undefined;
    });
    await c.connect();
    client = c;
  }
  return (await client.query({ name: 'sel', text: 'SELECT v FROM items WHERE id = $1', values: [100] }))
    .rows[0].v;
}

const flip = (value: 'old' | 'new', reason: string) =>
  recordChanges(db.direct, [{ mapping: 'items', setting: 'reads', value, by: 'test', reason }]);

const applied = () => proxy.runtime.fleet?.state.appliedVersion ?? -1;

describe('control connection faults', () => {
  it('a change made while the control backend is being terminated is applied after the reconnect', async () => {
    const before = await controlBackends(db, db.name);
    expect(before).toHaveLength(1);
    await db.query('SELECT pg_terminate_backend($1)', [before[0]]);
    const change = await flip('new', 'during terminate');
    await eventually(
      async () => applied(),
      (v) => v >= change.version,
      'caught up',
    );
    expect(await read()).toBe('from new');
    const after = await eventually(
      () => controlBackends(db, db.name),
      (p) => p.length === 1 && p[0] !== before[0],
      'a new control backend',
    );
    expect(after[0]).not.toBe(before[0]);
  });

  it('a notification sent while the sidecar was cut off is caught up when the connection returns', async () => {
    relay.cut();
    await eventually(
      async () => proxy.runtime.fleet?.state.connected,
      (c) => c === false,
      'disconnected',
    );
    const change = await flip('old', 'while partitioned');
    // Nothing can reach the sidecar now: the notification went to no one.
    expect(applied()).toBeLessThan(change.version);
    relay.restore();
    await eventually(
      async () => applied(),
      (v) => v === change.version,
      'caught up on reconnect',
    );
    await eventually(read, (v) => v === 'from old', 'reads back to old');
  });

  it('an unreadable control table keeps the switches in force and says so until it is back', async () => {
    const change = await flip('new', 'before the outage');
    await eventually(
      async () => applied(),
      (v) => v === change.version,
      'applied',
    );
    const admin = proxy.adminUrl as string;
    expect(await metric(admin, 'switchyard_fleet_control_connected')).toBe(1);

    await db.query('ALTER SCHEMA switchyard RENAME TO switchyard_away');
    for (const pid of await controlBackends(db, db.name))
      await db.query('SELECT pg_terminate_backend($1)', [pid]);
    await eventually(
      async () => proxy.runtime.fleet?.state.error,
      (e) => /does not exist/.test(e ?? ''),
      'the missing table reported',
    );

    const ready = await getJson(`${admin}/readyz`);
    expect(ready.status).toBe(200);
    expect(ready.body.ready).toBe(true);
    expect(String((ready.body.detail as string[])[0])).toMatch(
      new RegExp(
        `^control table unreachable since .*does not exist.*holding switches at control version ${change.version}$`,
      ),
    );
    const status = await getJson(`${admin}/status`);
    expect(status.body.fleet).toMatchObject({
      enabled: true,
      connected: false,
      appliedVersion: change.version,
    });
    expect(await metric(admin, 'switchyard_fleet_control_connected')).toBe(0);
    expect(await metric(admin, 'switchyard_fleet_control_errors_total')).toBeGreaterThan(0);
    expect(await metric(admin, 'switchyard_fleet_version')).toBe(change.version);
    expect(await metric(admin, 'switchyard_fleet_mapping_version', 'mapping="items"')).toBe(change.version);

    // Neither the outage nor a reload of the file (which says reads: old) flips it back.
    const loaded = {
      config: parseConfigText(stringify(baseConfig(db, { ...config(), upstream: { url: relayUrl() } }))),
      hash: 'r',
    };
    await proxy.runtime.store.apply(loaded);
    expect(await read()).toBe('from new');
    expect(proxy.runtime.store.current.config.mappings[0].reads).toBe('new');
    // The sidecar keeps retrying; it never recreates the tables it lost.
    const errors = (await metric(admin, 'switchyard_fleet_control_errors_total')) ?? 0;
    await eventually(
      () => metric(admin, 'switchyard_fleet_control_errors_total'),
      (n) => (n ?? 0) > errors,
      'a retry',
    );
    const recreated = await db.query(`SELECT to_regnamespace('switchyard') IS NOT NULL AS back`);
    expect(recreated.rows[0].back).toBe(false);

    await db.query('ALTER SCHEMA switchyard_away RENAME TO switchyard');
    await eventually(
      () => metric(admin, 'switchyard_fleet_control_connected'),
      (v) => v === 1,
      'reconnected',
      30_000,
    );
    expect((await getJson(`${admin}/readyz`)).body).toEqual({ ready: true });
    expect(await read()).toBe('from new');
  });
});

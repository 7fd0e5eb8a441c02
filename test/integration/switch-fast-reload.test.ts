// A reload that only flips switches must not depend on the database: the
// kill switch is pulled when the database is in trouble. A reload that
// changes a mapping's definition still goes through the catalog check.
import pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { freshDatabase, type TestDatabase } from '../support/db.ts';
import { applyConfig, mappingConfig } from '../support/lifecycle.ts';
import type { MappingDefinition } from '../support/mapping-cases.ts';
import { startProxy, type TestProxy } from '../support/proxy.ts';

let db: TestDatabase;
let proxy: TestProxy;
let locker: pg.Client;

const items: MappingDefinition = {
  name: 'items',
  old: 'items',
  new: 'items_v2',
  key: ['id'],
  up: { id: 'id', v: 'v' },
  down: { id: 'id', v: 'v' },
};

beforeAll(async () => {
  db = await freshDatabase('sfr');
  await db.query(`
    CREATE TABLE items (id int PRIMARY KEY, v text);
    CREATE TABLE items_v2 (id int PRIMARY KEY, v text);`);
  proxy = await startProxy(db, mappingConfig([items]));
  locker = new pg.Client({ connectionString: db.url });
  await locker.connect();
});

afterAll(async () => {
  await locker?.end().catch(() => {});
  await proxy?.close();
  await db?.drop();
});

/** Resolves to 'done' or 'stuck' after the bound: a hang is a failure, not a slow pass. */
function within<T>(p: Promise<T>, ms: number): Promise<T | 'stuck'> {
  return Promise.race([p, new Promise<'stuck'>((r) => setTimeout(() => r('stuck'), ms))]);
}

it('switch flips apply while the new table is locked; a definition change waits for the catalog check', async () => {
  await locker.query('BEGIN');
  await locker.query('LOCK TABLE items_v2 IN ACCESS EXCLUSIVE MODE');
  const v1 = proxy.runtime.store.current.version;
  // Kill switch, reads, dualWrite: no catalog access.
  expect(await within(applyConfig(proxy, db, mappingConfig([items], { killSwitch: true })), 10_000)).toBe(
    v1 + 1,
  );
  expect(proxy.runtime.store.killSwitch).toBe(true);
  expect(await within(applyConfig(proxy, db, mappingConfig([items], { reads: 'new' })), 10_000)).toBe(v1 + 2);
  expect(proxy.runtime.store.current.config.mappings[0].reads).toBe('new');
  // A changed up expression must be checked against the catalog, which the lock holds up.
  const changed = applyConfig(proxy, db, mappingConfig([{ ...items, up: { id: 'id', v: 'upper(v)' } }]));
  expect(await within(changed, 1_500)).toBe('stuck');
  await locker.query('ROLLBACK');
  expect(await changed).toBe(v1 + 3);
});

it('a switch-only reload still refuses reads: new without a down for every old column', async () => {
  const noDown = { ...items, down: { id: 'id' } };
  await applyConfig(proxy, db, mappingConfig([noDown]));
  const before = proxy.runtime.store.current.version;
  await expect(applyConfig(proxy, db, mappingConfig([noDown], { reads: 'new' }))).rejects.toThrow(
    /mapping items: reads: new needs a down expression for every old column; missing v/,
  );
  expect(proxy.runtime.store.current.version).toBe(before);
});

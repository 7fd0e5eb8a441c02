// A switch takes effect at the next execution of statements prepared before
// it, on every open connection; a transaction keeps the config it started with.
import pg from 'pg';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { freshDatabase, type TestDatabase } from '../support/db.ts';
import { createItems, ITEMS } from '../support/items.ts';
import { applyConfig, checkEqual, compileMapping, mappingConfig } from '../support/lifecycle.ts';
import { startProxy, type TestProxy } from '../support/proxy.ts';

let db: TestDatabase;
let proxy: TestProxy;
const clients: pg.Client[] = [];

const items = ITEMS;

beforeAll(async () => {
  db = await freshDatabase('swp');
  await createItems(db);
  proxy = await startProxy(db, mappingConfig([items]));
});

afterAll(async () => {
  await Promise.all(clients.map((c) => c.end().catch(() => {})));
  await proxy?.close();
  await db?.drop();
});

beforeEach(async () => {
  await db.query('TRUNCATE items, items_v2');
  // One row whose two copies differ on purpose: the value read tells which table served it.
  await db.query(`INSERT INTO items VALUES (100, 'from old'); INSERT INTO items_v2 VALUES (100, 'from new')`);
  proxy.runtime.store.setKillSwitchOverride(null);
  await applyConfig(proxy, db, mappingConfig([items]));
});

async function connect(): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: proxy.url() });
  await c.connect();
  clients.push(c);
  return c;
}

async function inNew(id: number): Promise<boolean> {
  const r = await db.query('SELECT 1 FROM items_v2 WHERE id = $1', [id]);
  return r.rowCount === 1;
}

async function inOld(id: number): Promise<boolean> {
  const r = await db.query('SELECT 1 FROM items WHERE id = $1', [id]);
  return r.rowCount === 1;
}

const INSERT = 'INSERT INTO items (id, v) VALUES ($1, $2)';
const insert = (c: pg.Client, id: number) => c.query({ name: 'ins', text: INSERT, values: [id, `v${id}`] });
const READ = 'SELECT v FROM items WHERE id = $1';
const read = async (c: pg.Client) => (await c.query({ name: 'sel', text: READ, values: [100] })).rows[0]?.v;

describe('kill switch reaches prepared statements', () => {
  for (const how of ['runtime override', 'config reload'] as const) {
    const setKill = async (on: boolean) => {
      if (how === 'runtime override') proxy.runtime.store.setKillSwitchOverride(on);
      else await applyConfig(proxy, db, mappingConfig([items], { killSwitch: on }));
    };

    it(`${how}: a named INSERT prepared while mirroring stops mirroring, on every connection`, async () => {
      const [a, b] = [await connect(), await connect()];
      await insert(a, 1);
      await insert(b, 2);
      expect(await inNew(1)).toBe(true);
      expect(await inNew(2)).toBe(true);

      await setKill(true);
      await insert(a, 3);
      await insert(b, 4);
      for (const id of [3, 4]) {
        expect(await inOld(id)).toBe(true);
        expect(await inNew(id), `row ${id} was mirrored with the kill switch on`).toBe(false);
      }

      await setKill(false);
      await insert(a, 5);
      expect(await inNew(5)).toBe(true);
    });

    it(`${how}: a named INSERT prepared under the kill switch mirrors once it is off`, async () => {
      await setKill(true);
      const c = await connect();
      await insert(c, 11);
      expect(await inNew(11)).toBe(false);

      await setKill(false);
      await insert(c, 12);
      expect(await inNew(12), 'row 12 was not mirrored after the kill switch went off').toBe(true);
      const m = await compileMapping(db, items);
      // Row 11 is the gap the kill switch left; everything written since is mirrored.
      await db.query('INSERT INTO items_v2 SELECT id, v FROM items WHERE id = 11');
      await db.query("UPDATE items_v2 SET label = 'from old' WHERE id = 100");
      await checkEqual(db, m, 'after kill switch off');
    });
  }

  it('a named UPDATE and DELETE follow the switch both ways', async () => {
    const c = await connect();
    await db.query(
      "INSERT INTO items VALUES (21, 'a'), (22, 'b'); INSERT INTO items_v2 VALUES (21, 'a'), (22, 'b')",
    );
    const upd = (id: number, v: string) =>
      c.query({ name: 'upd', text: 'UPDATE items SET v = $2 WHERE id = $1', values: [id, v] });
    const del = (id: number) =>
      c.query({ name: 'del', text: 'DELETE FROM items WHERE id = $1', values: [id] });
    await upd(21, 'mirrored');
    proxy.runtime.store.setKillSwitchOverride(true);
    await upd(22, 'not mirrored');
    await del(21);
    const neu = await db.query('SELECT id, label FROM items_v2 WHERE id IN (21, 22) ORDER BY id');
    expect(neu.rows).toEqual([
      { id: 21, label: 'mirrored' },
      { id: 22, label: 'b' },
    ]);
    proxy.runtime.store.setKillSwitchOverride(false);
    await del(22);
    expect(await inNew(22)).toBe(false);
  });
});

describe('read switch reaches prepared statements', () => {
  it('a named SELECT reads new at its next execution after the flip, and old again after the flip back', async () => {
    const [a, b] = [await connect(), await connect()];
    expect(await read(a)).toBe('from old');
    expect(await read(b)).toBe('from old');
    await applyConfig(proxy, db, mappingConfig([items], { reads: 'new' }));
    expect(await read(a)).toBe('from new');
    expect(await read(b)).toBe('from new');
    // The unnamed statement and the simple protocol switch too.
    expect((await a.query(READ, [100])).rows[0].v).toBe('from new');
    expect((await a.query('SELECT v FROM items WHERE id = 100')).rows[0].v).toBe('from new');
    await applyConfig(proxy, db, mappingConfig([items], { reads: 'old' }));
    expect(await read(a)).toBe('from old');
    expect(await read(b)).toBe('from old');
  });

  it('a statement prepared under reads new keeps its result shape after switching back', async () => {
    await applyConfig(proxy, db, mappingConfig([items], { reads: 'new' }));
    const c = await connect();
    const r1 = await c.query({ name: 'star', text: 'SELECT * FROM items WHERE id = $1', values: [100] });
    await applyConfig(proxy, db, mappingConfig([items], { reads: 'old' }));
    const r2 = await c.query({ name: 'star', text: 'SELECT * FROM items WHERE id = $1', values: [100] });
    expect(r1.fields.map((f) => [f.name, f.dataTypeID])).toEqual(
      r2.fields.map((f) => [f.name, f.dataTypeID]),
    );
    expect(r1.rows).toEqual([{ id: 100, v: 'from new' }]);
    expect(r2.rows).toEqual([{ id: 100, v: 'from old' }]);
  });
});

describe('a transaction keeps the config it started with', () => {
  it('reads stay on old until the transaction that began before the flip ends', async () => {
    const c = await connect();
    await c.query('BEGIN');
    expect(await read(c)).toBe('from old');
    await applyConfig(proxy, db, mappingConfig([items], { reads: 'new' }));
    expect(await read(c)).toBe('from old');
    expect((await c.query('SELECT v FROM items WHERE id = 100')).rows[0].v).toBe('from old');
    await c.query('COMMIT');
    expect(await read(c)).toBe('from new');
  });

  it('writes keep mirroring until the transaction that began before the kill switch ends', async () => {
    const c = await connect();
    await c.query('BEGIN');
    await insert(c, 31);
    proxy.runtime.store.setKillSwitchOverride(true);
    await insert(c, 32);
    await c.query('INSERT INTO items VALUES (33, $1)', ['x']);
    await c.query('COMMIT');
    for (const id of [31, 32, 33]) expect(await inNew(id), `row ${id}`).toBe(true);
    await insert(c, 34);
    expect(await inNew(34)).toBe(false);
  });

  it('a transaction that began under the kill switch mirrors nothing, even after it is turned off', async () => {
    proxy.runtime.store.setKillSwitchOverride(true);
    const c = await connect();
    await c.query('BEGIN');
    await insert(c, 41);
    proxy.runtime.store.setKillSwitchOverride(false);
    await insert(c, 42);
    await c.query('COMMIT');
    expect(await inNew(41)).toBe(false);
    expect(await inNew(42)).toBe(false);
    await insert(c, 43);
    expect(await inNew(43)).toBe(true);
  });

  it('a rolled-back transaction leaves neither table changed', async () => {
    const c = await connect();
    await c.query('BEGIN');
    await insert(c, 51);
    await c.query("UPDATE items SET v = 'changed' WHERE id = 100");
    await c.query('ROLLBACK');
    expect(await inOld(51)).toBe(false);
    expect(await inNew(51)).toBe(false);
    const r = await db.query(
      'SELECT (SELECT v FROM items WHERE id = 100) AS o, (SELECT label FROM items_v2 WHERE id = 100) AS n',
    );
    expect(r.rows[0]).toEqual({ o: 'from old', n: 'from new' });
  });
});

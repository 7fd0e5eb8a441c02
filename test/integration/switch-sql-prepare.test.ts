// SQL PREPARE / EXECUTE follow the switches like protocol-level statements: a
// statement prepared mirrored stops mirroring at the next EXECUTE after the
// kill switch, one prepared under the kill switch mirrors once it is off, and
// a prepared read follows reads: old/new. The proxy prepares the name anew in
// the EXECUTE's own Query; the client sees only its EXECUTE's reply.
import pg from 'pg';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { freshDatabase, type TestDatabase } from '../support/db.ts';
import { createItems, ITEMS } from '../support/items.ts';
import { applyConfig, mappingConfig } from '../support/lifecycle.ts';
import { startProxy, type TestProxy } from '../support/proxy.ts';

let db: TestDatabase;
let proxy: TestProxy;
let c: pg.Client;
let direct: pg.Client;

const items = ITEMS;

beforeAll(async () => {
  db = await freshDatabase('swsqlp');
  await createItems(db);
  proxy = await startProxy(db, mappingConfig([items]));
  direct = new pg.Client({ connectionString: db.url });
  await direct.connect();
});

afterAll(async () => {
  await c?.end().catch(() => {});
  await direct?.end().catch(() => {});
  await proxy?.close();
  await db?.drop();
});

beforeEach(async () => {
  await c?.end().catch(() => {});
  await db.query('TRUNCATE items, items_v2');
  await db.query(`INSERT INTO items VALUES (100, 'from old'); INSERT INTO items_v2 VALUES (100, 'from new')`);
  proxy.runtime.store.setKillSwitchOverride(null);
  await applyConfig(proxy, db, mappingConfig([items]));
  c = new pg.Client({ connectionString: proxy.url() });
  await c.connect();
  await direct.query('DEALLOCATE ALL');
});

const inNew = async (id: number) =>
  (await db.query('SELECT 1 FROM items_v2 WHERE id = $1', [id])).rowCount === 1;
const inOld = async (id: number) =>
  (await db.query('SELECT 1 FROM items WHERE id = $1', [id])).rowCount === 1;

/** What a client sees of a simple Query: one entry per result, as node-postgres reports it. */
async function seen(client: pg.Client, sql: string) {
  const r = (await client.query(sql)) as unknown as pg.QueryResult | pg.QueryResult[];
  return (Array.isArray(r) ? r : [r]).map((x) => ({
    command: x.command,
    rowCount: x.rowCount,
    rows: x.rows,
  }));
}

describe('SQL PREPARE follows the switches', () => {
  it('a mirrored INSERT stops mirroring under the kill switch and mirrors again after it', async () => {
    await c.query('PREPARE ins(int, text) AS INSERT INTO items (id, v) VALUES ($1, $2)');
    await c.query("EXECUTE ins(1, 'a')");
    expect(await inNew(1)).toBe(true);

    proxy.runtime.store.setKillSwitchOverride(true);
    // Exactly what the same EXECUTE shows directly: one INSERT 0 1, no trace of the re-PREPARE.
    await direct.query('PREPARE ins(int, text) AS INSERT INTO items (id, v) VALUES ($1, $2)');
    const expected = await seen(direct, "EXECUTE ins(-2, 'b')");
    expect(await seen(c, "EXECUTE ins(2, 'b')")).toEqual(expected);
    expect(await inOld(2)).toBe(true);
    expect(await inNew(2), 'mirrored with the kill switch on').toBe(false);

    proxy.runtime.store.setKillSwitchOverride(false);
    expect(await seen(c, "EXECUTE ins(3, 'c')")).toEqual(expected);
    expect(await inNew(3)).toBe(true);
  });

  it('a statement prepared under the kill switch mirrors once the switch is off', async () => {
    proxy.runtime.store.setKillSwitchOverride(true);
    await c.query("PREPARE ins2 AS INSERT INTO items (id, v) VALUES ($1, 'k') RETURNING id");
    expect((await c.query('EXECUTE ins2(10)')).rows).toEqual([{ id: 10 }]);
    expect(await inNew(10)).toBe(false);
    proxy.runtime.store.setKillSwitchOverride(false);
    const r = await c.query('EXECUTE ins2(11)');
    expect([r.command, r.rowCount, r.rows, r.fields.map((f) => f.name)]).toEqual([
      'INSERT',
      1,
      [{ id: 11 }],
      ['id'],
    ]);
    expect(await inNew(11)).toBe(true);
  });

  it('a prepared read follows reads: new and back to old', async () => {
    await c.query('PREPARE sel(int) AS SELECT v FROM items WHERE id = $1');
    expect((await c.query('EXECUTE sel(100)')).rows).toEqual([{ v: 'from old' }]);
    await applyConfig(proxy, db, mappingConfig([items], { reads: 'new' }));
    expect((await c.query('EXECUTE sel(100)')).rows).toEqual([{ v: 'from new' }]);
    await applyConfig(proxy, db, mappingConfig([items]));
    expect((await c.query('EXECUTE sel(100)')).rows).toEqual([{ v: 'from old' }]);
  });

  it('inside a transaction, and in a Query with other statements, the re-PREPARE stays invisible', async () => {
    await c.query("PREPARE ins3 AS INSERT INTO items (id, v) VALUES ($1, 't')");
    proxy.runtime.store.setKillSwitchOverride(true);
    await c.query('BEGIN');
    const r = await seen(c, "SELECT 1 AS one; EXECUTE ins3(20); SELECT 'x' AS two");
    await c.query('COMMIT');
    expect(r).toEqual([
      { command: 'SELECT', rowCount: 1, rows: [{ one: 1 }] },
      { command: 'INSERT', rowCount: 1, rows: [] },
      { command: 'SELECT', rowCount: 1, rows: [{ two: 'x' }] },
    ]);
    expect([await inOld(20), await inNew(20)]).toEqual([true, false]);
  });
});

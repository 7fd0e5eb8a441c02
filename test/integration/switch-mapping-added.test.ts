// The sidecar usually runs before the migration starts: a mapping added by a
// reload must reach statements that connections prepared before it existed,
// and a mapping removed must stop mirroring them.
import pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { freshDatabase, type TestDatabase } from '../support/db.ts';
import { applyConfig, mappingConfig } from '../support/lifecycle.ts';
import type { MappingDefinition } from '../support/mapping-cases.ts';
import { startProxy, type TestProxy } from '../support/proxy.ts';

let db: TestDatabase;
let proxy: TestProxy;

const items: MappingDefinition = {
  name: 'items',
  old: 'items',
  new: 'items_v2',
  key: ['id'],
  up: { id: 'id', v: 'v' },
  down: { id: 'id', v: 'v' },
};
const other: MappingDefinition = {
  name: 'other',
  old: 'other',
  new: 'other_v2',
  key: ['id'],
  up: { id: 'id' },
  down: { id: 'id' },
};

beforeAll(async () => {
  db = await freshDatabase('sma');
  await db.query(`
    CREATE TABLE items (id int PRIMARY KEY, v text);
    CREATE TABLE items_v2 (id int PRIMARY KEY, v text);
    CREATE TABLE other (id int PRIMARY KEY);
    CREATE TABLE other_v2 (id int PRIMARY KEY);`);
});

afterAll(async () => {
  await proxy?.close();
  await db?.drop();
});

const inNew = async (id: number) =>
  (await db.query('SELECT 1 FROM items_v2 WHERE id = $1', [id])).rowCount === 1;

for (const start of [
  { title: 'no mappings at all', mappings: [] as MappingDefinition[] },
  { title: 'only another mapping', mappings: [other] },
]) {
  it(`proxy started with ${start.title}: a statement prepared before the mapping is added mirrors after it`, async () => {
    await db.query('TRUNCATE items, items_v2');
    proxy = await startProxy(db, mappingConfig(start.mappings));
    const c = new pg.Client({ connectionString: proxy.url() });
    await c.connect();
    try {
      const ins = (id: number) =>
        c.query({ name: 'ins', text: 'INSERT INTO items VALUES ($1, $2)', values: [id, 'x'] });
      await ins(1);
      expect(await inNew(1)).toBe(false);
      await applyConfig(proxy, db, mappingConfig([...start.mappings, items]));
      await ins(2);
      expect(await inNew(2), 'prepared before the mapping existed, executed after: not mirrored').toBe(true);
      // The simple protocol on the same connection, for comparison.
      await c.query("INSERT INTO items VALUES (3, 'y')");
      expect(await inNew(3)).toBe(true);
      // Removing the mapping again stops mirroring the same statement.
      await applyConfig(proxy, db, mappingConfig(start.mappings));
      await ins(4);
      expect(await inNew(4)).toBe(false);
    } finally {
      await c.end();
      await proxy.close();
    }
  });
}

it('a statement prepared while mirrored, executed after a reload removed every mapping, runs unmirrored', async () => {
  await db.query('TRUNCATE items, items_v2');
  proxy = await startProxy(db, mappingConfig([items]));
  const c = new pg.Client({ connectionString: proxy.url() });
  await c.connect();
  try {
    const ins = (id: number) =>
      c.query({ name: 'ins', text: 'INSERT INTO items VALUES ($1, $2)', values: [id, 'x'] });
    await ins(1);
    expect(await inNew(1)).toBe(true);
    await applyConfig(proxy, db, mappingConfig([]));
    const r = await ins(2);
    expect(r.rowCount).toBe(1);
    expect(await inNew(2)).toBe(false);
    expect((await c.query('SELECT count(*)::int AS n FROM items')).rows[0].n).toBe(2);
  } finally {
    await c.end().catch(() => {});
    await proxy.close();
  }
});

// What a client sees from a mirrored write is what Postgres itself answers for
// the original statement: command tag and count, RETURNING rows and column
// names and types, errors and their SQLSTATE, in the simple and the extended
// protocol. Each statement runs through the proxy on one database and straight
// on an identical second one.
import pg from 'pg';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { CompiledMapping } from '../../src/rules/mapping.ts';
import { freshDatabase, type TestDatabase } from '../support/db.ts';
import { checkEqual, compileMapping, inlineParams, mappingConfig } from '../support/lifecycle.ts';
import type { MappingDefinition, Stmt } from '../support/mapping-cases.ts';
import { startProxy, type TestProxy } from '../support/proxy.ts';

let viaProxy: TestDatabase;
let direct: TestDatabase;
let proxy: TestProxy;
let m: CompiledMapping;

const products: MappingDefinition = {
  name: 'products',
  old: 'products',
  new: 'products_v2',
  key: ['id'],
  up: { id: 'id', sku: 'sku', price: 'price_cents / 100.0', stock: 'stock' },
  down: { id: 'id', sku: 'sku', price_cents: '(price * 100)::int', stock: 'stock' },
};

const SCHEMA = `
  CREATE TABLE products (id serial PRIMARY KEY, sku text NOT NULL UNIQUE, price_cents int NOT NULL,
    stock int NOT NULL DEFAULT 0);
  CREATE TABLE products_v2 (id bigint PRIMARY KEY, sku text NOT NULL, price numeric(10,2) NOT NULL,
    stock int NOT NULL);
  CREATE TABLE promo (sku text PRIMARY KEY, discount int NOT NULL);`;
const SEED = `
  INSERT INTO products (sku, price_cents, stock) VALUES ('a', 100, 5), ('b', 250, 0), ('c', 999, 12);
  INSERT INTO promo VALUES ('a', 10), ('c', 50);`;

beforeAll(async () => {
  [viaProxy, direct] = await Promise.all([freshDatabase('mrp'), freshDatabase('mrd')]);
  for (const db of [viaProxy, direct]) await db.query(SCHEMA);
  m = await compileMapping(viaProxy, products);
  proxy = await startProxy(viaProxy, mappingConfig([products]));
});

afterAll(async () => {
  await proxy?.close();
  await viaProxy?.drop();
  await direct?.drop();
});

beforeEach(async () => {
  for (const db of [viaProxy, direct]) {
    await db.query('TRUNCATE products, products_v2, promo RESTART IDENTITY');
    await db.query(SEED);
  }
  await viaProxy.query('INSERT INTO products_v2 SELECT id, sku, price_cents / 100.0, stock FROM products');
});

type Mode = 'simple' | 'extended' | 'binary';

/** pg's `binary` option (all results in binary format) is missing from its type definitions. */
function binaryQuery(s: Stmt, binary: boolean): pg.QueryConfig {
  return { text: s.sql, values: s.params, binary } as pg.QueryConfig;
}

interface Outcome {
  command?: string;
  rowCount?: number | null;
  fields?: [string, number][];
  rows?: unknown[];
  error?: string;
}

async function outcome(c: pg.Client, s: Stmt, mode: Mode): Promise<Outcome> {
  try {
    const r =
      mode === 'simple'
        ? await c.query(inlineParams(s))
        : mode === 'binary'
          ? // Results in binary format: a reshaped reply must keep the client's result formats.
            await c.query(binaryQuery(s, true))
          : await c.query(s.sql, s.params);
    return {
      command: r.command,
      rowCount: r.rowCount,
      fields: r.fields.map((f) => [f.name, f.dataTypeID]),
      rows: r.rows,
    };
  } catch (e) {
    return { error: (e as { code?: string }).code ?? (e as Error).message };
  }
}

/** The statement through the proxy and straight on Postgres: same outcome; returns it. */
async function same(s: Stmt, mode: Mode): Promise<Outcome> {
  const a = new pg.Client({ connectionString: proxy.url() });
  const b = new pg.Client({ connectionString: direct.url });
  await Promise.all([a.connect(), b.connect()]);
  try {
    const want = await outcome(b, s, mode);
    const got = await outcome(a, s, mode);
    expect(got, `${mode}: ${s.sql}`).toEqual(want);
    return got;
  } finally {
    await Promise.all([a.end(), b.end()]);
  }
}

const CASES: { s: Stmt; command: string; rowCount: number; fields?: string[] }[] = [
  {
    s: { sql: 'INSERT INTO products (sku, price_cents) VALUES ($1, $2)', params: ['d', 10] },
    command: 'INSERT',
    rowCount: 1,
  },
  {
    s: {
      sql: 'INSERT INTO products (sku, price_cents, stock) VALUES ($1, 1, 1), ($2, 2, 2), ($3, 3, 3)',
      params: ['x', 'y', 'z'],
    },
    command: 'INSERT',
    rowCount: 3,
  },
  {
    s: { sql: 'INSERT INTO products (sku, price_cents) VALUES ($1, $2) RETURNING *', params: ['e', 20] },
    command: 'INSERT',
    rowCount: 1,
    fields: ['id', 'sku', 'price_cents', 'stock'],
  },
  {
    s: {
      sql: 'INSERT INTO products (sku, price_cents) SELECT sku || $1, discount FROM promo RETURNING id, upper(sku), price_cents * 2 AS double, 42',
      params: ['-promo'],
    },
    command: 'INSERT',
    rowCount: 2,
    fields: ['id', 'upper', 'double', '?column?'],
  },
  {
    s: {
      sql: 'INSERT INTO products (sku, price_cents) VALUES ($1, 5) ON CONFLICT DO NOTHING',
      params: ['a'],
    },
    command: 'INSERT',
    rowCount: 0,
  },
  {
    s: {
      sql: 'INSERT INTO products (sku, price_cents) VALUES ($1, 7), ($2, 8) ON CONFLICT (sku) DO UPDATE SET price_cents = EXCLUDED.price_cents, stock = products.stock + 1 RETURNING sku, price_cents, stock',
      params: ['a', 'new'],
    },
    command: 'INSERT',
    rowCount: 2,
    fields: ['sku', 'price_cents', 'stock'],
  },
  {
    s: { sql: 'UPDATE products SET stock = stock + 1 WHERE stock > $1', params: [1] },
    command: 'UPDATE',
    rowCount: 2,
  },
  {
    s: { sql: 'UPDATE products SET stock = 0 WHERE id = $1', params: [999] },
    command: 'UPDATE',
    rowCount: 0,
  },
  {
    s: {
      sql: 'UPDATE products p SET price_cents = p.price_cents - pr.discount FROM promo pr WHERE pr.sku = p.sku RETURNING p.id, p.price_cents, pr.discount',
      params: [],
    },
    command: 'UPDATE',
    rowCount: 2,
    fields: ['id', 'price_cents', 'discount'],
  },
  {
    s: { sql: 'DELETE FROM products WHERE stock = $1', params: [0] },
    command: 'DELETE',
    rowCount: 1,
  },
  {
    s: {
      sql: 'DELETE FROM products USING promo WHERE promo.sku = products.sku RETURNING products.sku, promo.discount AS d',
      params: [],
    },
    command: 'DELETE',
    rowCount: 2,
    fields: ['sku', 'd'],
  },
  {
    s: {
      sql: 'WITH cheap AS (SELECT id FROM products WHERE price_cents < $1) UPDATE products SET stock = stock * 10 WHERE id IN (SELECT id FROM cheap) RETURNING id, stock',
      params: [500],
    },
    command: 'UPDATE',
    rowCount: 2,
    fields: ['id', 'stock'],
  },
];

for (const mode of ['simple', 'extended', 'binary'] as const) {
  describe(`mirrored writes answer like Postgres (${mode} protocol)`, () => {
    for (const c of CASES) {
      it(`${c.command} ${c.rowCount}: ${c.s.sql}`, async () => {
        const got = await same(c.s, mode);
        expect(got.command).toBe(c.command);
        expect(got.rowCount).toBe(c.rowCount);
        expect(got.fields?.map(([n]) => n)).toEqual(c.fields ?? []);
        await checkEqual(viaProxy, m, c.s.sql);
      });
    }

    it('a unique violation on old fails with 23505 and leaves new untouched', async () => {
      const before = (await viaProxy.query('SELECT * FROM products_v2 ORDER BY id')).rows;
      const got = await same(
        { sql: 'INSERT INTO products (sku, price_cents) VALUES ($1, 1)', params: ['b'] },
        mode,
      );
      expect(got.error).toBe('23505');
      const got2 = await same(
        { sql: "UPDATE products SET sku = 'a' WHERE sku = $1 RETURNING *", params: ['c'] },
        mode,
      );
      expect(got2.error).toBe('23505');
      expect((await viaProxy.query('SELECT * FROM products_v2 ORDER BY id')).rows).toEqual(before);
      await checkEqual(viaProxy, m, 'after unique violations');
    });

    it('an error inside a transaction aborts it; after ROLLBACK neither table has its writes', async () => {
      const c = new pg.Client({ connectionString: proxy.url() });
      await c.connect();
      try {
        const q = (s: Stmt) =>
          mode === 'simple' ? c.query(inlineParams(s)) : c.query(binaryQuery(s, mode === 'binary'));
        await c.query('BEGIN');
        await q({ sql: 'INSERT INTO products (sku, price_cents) VALUES ($1, 1)', params: ['tx1'] });
        const err = await q({
          sql: 'INSERT INTO products (sku, price_cents) VALUES ($1, 1)',
          params: ['a'],
        }).catch((e) => e);
        expect(err.code).toBe('23505');
        const aborted = await c.query('SELECT 1').catch((e) => e);
        expect(aborted.code).toBe('25P02');
        await c.query('ROLLBACK');
      } finally {
        await c.end();
      }
      const r = await viaProxy.query(
        "SELECT (SELECT count(*) FROM products WHERE sku = 'tx1')::int AS o, (SELECT count(*) FROM products_v2 WHERE sku = 'tx1')::int AS n",
      );
      expect(r.rows[0]).toEqual({ o: 0, n: 0 });
      await checkEqual(viaProxy, m, 'after rollback');
    });
  });
}

// Unqualified table names resolve through the session's search_path, as
// Postgres resolves them: a write to a same-named table in another schema is
// not the mapped table and must not be mirrored; a write that does reach the
// mapped table must be, whichever way the search_path was set.
import pg from 'pg';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { freshDatabase, type TestDatabase } from '../support/db.ts';
import { mappingConfig } from '../support/lifecycle.ts';
import type { MappingDefinition } from '../support/mapping-cases.ts';
import { startProxy, type TestProxy } from '../support/proxy.ts';

let db: TestDatabase;
let proxy: TestProxy;

const appItems: MappingDefinition = {
  name: 'app-items',
  old: 'app.items',
  new: 'app.items_v2',
  key: ['id'],
  up: { id: 'id', v: 'v' },
  down: { id: 'id', v: 'v' },
};

const gadgets: MappingDefinition = {
  name: 'gadgets',
  old: 'public.gadgets',
  new: 'public.gadgets_v2',
  key: ['id'],
  up: { id: 'id' },
  down: { id: 'id' },
};

beforeAll(async () => {
  db = await freshDatabase('sp');
  await db.query(`
    CREATE SCHEMA app;
    CREATE TABLE app.items (id int PRIMARY KEY, v text);
    CREATE TABLE app.items_v2 (id int PRIMARY KEY, v text);
    -- Same name, other schema, not mapped.
    CREATE TABLE public.items (id int PRIMARY KEY, v text);
    -- "$user" comes first in the default path: a schema named like the role shadows public.
    CREATE TABLE public.gadgets (id int PRIMARY KEY);
    CREATE TABLE public.gadgets_v2 (id int PRIMARY KEY);
    CREATE SCHEMA postgres;
    CREATE TABLE postgres.gadgets (id int PRIMARY KEY);`);
  proxy = await startProxy(db, mappingConfig([appItems, gadgets]));
});

afterAll(async () => {
  await proxy?.close();
  await db?.drop();
});

beforeEach(async () => {
  await db.query(
    'TRUNCATE app.items, app.items_v2, public.items, public.gadgets, public.gadgets_v2, postgres.gadgets',
  );
});

async function where(id: number) {
  const r = await db.query(
    `SELECT (SELECT count(*) FROM app.items WHERE id = $1)::int AS app,
            (SELECT count(*) FROM app.items_v2 WHERE id = $1)::int AS v2,
            (SELECT count(*) FROM public.items WHERE id = $1)::int AS public`,
    [id],
  );
  return r.rows[0];
}

async function withClient<T>(f: (c: pg.Client) => Promise<T>, options?: string): Promise<T> {
  const c = new pg.Client({ connectionString: proxy.url(), options });
  await c.connect();
  try {
    return await f(c);
  } finally {
    await c.end();
  }
}

describe('unqualified names follow the session search_path', () => {
  it('default search_path: the unqualified name is public.items, not mirrored', async () => {
    await withClient((c) => c.query("INSERT INTO items VALUES (1, 'a')"));
    expect(await where(1)).toEqual({ app: 0, v2: 0, public: 1 });
  });

  it('SET search_path = app: the unqualified name is the mapped table, mirrored (simple and extended)', async () => {
    await withClient(async (c) => {
      await c.query('SET search_path TO app, public');
      await c.query("INSERT INTO items VALUES (2, 'b')");
      await c.query('INSERT INTO items VALUES ($1, $2)', [3, 'c']);
    });
    expect(await where(2)).toEqual({ app: 1, v2: 1, public: 0 });
    expect(await where(3)).toEqual({ app: 1, v2: 1, public: 0 });
  });

  it('search_path given at startup (options -c search_path=app)', async () => {
    await withClient((c) => c.query("INSERT INTO items VALUES (4, 'd')"), '-c search_path=app');
    expect(await where(4)).toEqual({ app: 1, v2: 1, public: 0 });
  });

  it('SET LOCAL lasts until the end of the transaction; RESET returns to the default', async () => {
    await withClient(async (c) => {
      await c.query('BEGIN');
      await c.query('SET LOCAL search_path = app');
      await c.query("INSERT INTO items VALUES (5, 'e')");
      await c.query('COMMIT');
      await c.query("INSERT INTO items VALUES (6, 'f')");
      await c.query("SET search_path = 'app'");
      await c.query("INSERT INTO items VALUES (7, 'g')");
      await c.query('RESET search_path');
      await c.query("INSERT INTO items VALUES (8, 'h')");
    });
    expect(await where(5)).toEqual({ app: 1, v2: 1, public: 0 });
    expect(await where(6)).toEqual({ app: 0, v2: 0, public: 1 });
    expect(await where(7)).toEqual({ app: 1, v2: 1, public: 0 });
    expect(await where(8)).toEqual({ app: 0, v2: 0, public: 1 });
  });

  it('a SET LOCAL in a rolled-back transaction does not leak', async () => {
    await withClient(async (c) => {
      await c.query('BEGIN');
      await c.query('SET LOCAL search_path = app');
      await c.query('ROLLBACK');
      await c.query("INSERT INTO items VALUES (9, 'i')");
    });
    expect(await where(9)).toEqual({ app: 0, v2: 0, public: 1 });
  });

  it('a plain SET inside a rolled-back transaction is undone with it', async () => {
    await withClient(async (c) => {
      await c.query('BEGIN');
      await c.query('SET search_path = app');
      await c.query('ROLLBACK');
      await c.query("INSERT INTO items VALUES (10, 'j')");
    });
    expect(await where(10)).toEqual({ app: 0, v2: 0, public: 1 });
  });

  it('a plain SET undone by ROLLBACK TO SAVEPOINT is undone for name resolution too', async () => {
    await withClient(async (c) => {
      await c.query('BEGIN');
      await c.query('SAVEPOINT s');
      await c.query('SET search_path = app');
      await c.query('ROLLBACK TO SAVEPOINT s');
      await c.query('COMMIT');
      await c.query("INSERT INTO items VALUES (12, 'l')");
    });
    expect(await where(12)).toEqual({ app: 0, v2: 0, public: 1 });
  });

  it('SET search_path TO DEFAULT returns to the default', async () => {
    await withClient(async (c) => {
      await c.query('SET SESSION search_path TO app');
      await c.query('SET search_path TO DEFAULT');
      await c.query("INSERT INTO items VALUES (13, 'm')");
    });
    expect(await where(13)).toEqual({ app: 0, v2: 0, public: 1 });
  });

  it('"$user" first: a schema named like the role shadows the mapped public table', async () => {
    await withClient(async (c) => {
      await c.query('INSERT INTO gadgets VALUES (1)');
      await c.query('INSERT INTO public.gadgets VALUES (2)');
    });
    const r = await db.query(`SELECT
        (SELECT array_agg(id ORDER BY id) FROM postgres.gadgets) AS shadow,
        (SELECT array_agg(id ORDER BY id) FROM public.gadgets) AS mapped,
        (SELECT array_agg(id ORDER BY id) FROM public.gadgets_v2) AS v2`);
    expect(r.rows[0]).toEqual({ shadow: [1], mapped: [2], v2: [2] });
  });

  it('a write before a SET in the same simple Query resolves with the path in force before it', async () => {
    await withClient((c) => c.query("INSERT INTO items VALUES (14, 'n'); SET search_path = app"));
    expect(await where(14)).toEqual({ app: 0, v2: 0, public: 1 });
  });

  it('a schema-qualified name needs no search_path', async () => {
    await withClient((c) => c.query("INSERT INTO app.items VALUES (11, 'k')"));
    expect(await where(11)).toEqual({ app: 1, v2: 1, public: 0 });
  });
});

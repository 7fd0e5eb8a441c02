// The mirror carries the row Postgres actually stored, not a replay of the
// statement: defaults, sequences, generated columns and what BEFORE triggers
// changed all reach the new table; a row a trigger suppresses reaches nothing.
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CompiledMapping } from '../../src/rules/mapping.ts';
import { freshDatabase, type TestDatabase } from '../support/db.ts';
import { checkEqual, compileMapping, mappingConfig } from '../support/lifecycle.ts';
import type { MappingDefinition } from '../support/mapping-cases.ts';
import { startProxy, type TestProxy } from '../support/proxy.ts';

let db: TestDatabase;
let proxy: TestProxy;
let client: pg.Client;
let m: CompiledMapping;

const docs: MappingDefinition = {
  name: 'docs',
  old: 'docs',
  new: 'docs_v2',
  key: ['id'],
  up: {
    id: 'id',
    title: 'title',
    slug: 'slug',
    updated_at: 'updated_at',
    title_len: 'title_len',
    rev: 'rev',
  },
  down: {
    id: 'id',
    title: 'title',
    slug: 'slug',
    updated_at: 'updated_at',
    title_len: 'title_len',
    rev: 'rev',
  },
};

beforeAll(async () => {
  db = await freshDatabase('ri');
  await db.query(`
    CREATE TABLE docs (
      id serial PRIMARY KEY,
      title text,
      slug text,
      updated_at timestamptz NOT NULL DEFAULT clock_timestamp(),
      title_len int GENERATED ALWAYS AS (length(title)) STORED,
      rev int NOT NULL DEFAULT 1);
    CREATE TABLE docs_v2 (id int PRIMARY KEY, title text, slug text, updated_at timestamptz NOT NULL,
      title_len int, rev int NOT NULL);
    CREATE TABLE audit (doc int, op text);
    CREATE FUNCTION docs_before() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF NEW.title = 'suppress me' THEN RETURN NULL; END IF;
      NEW.slug := lower(replace(coalesce(NEW.title, 'untitled'), ' ', '-'));
      NEW.updated_at := clock_timestamp();
      IF TG_OP = 'UPDATE' THEN NEW.rev := OLD.rev + 1; END IF;
      RETURN NEW;
    END $$;
    CREATE TRIGGER docs_before BEFORE INSERT OR UPDATE ON docs FOR EACH ROW EXECUTE FUNCTION docs_before();
    CREATE FUNCTION docs_after() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN INSERT INTO audit VALUES (coalesce(NEW.id, OLD.id), TG_OP); RETURN NULL; END $$;
    CREATE TRIGGER docs_after AFTER INSERT OR UPDATE OR DELETE ON docs FOR EACH ROW EXECUTE FUNCTION docs_after();
    -- Rows from before dual-write: not in docs_v2.
    INSERT INTO docs (title) VALUES ('Old One'), ('Old Two');`);
  m = await compileMapping(db, docs);
  proxy = await startProxy(db, mappingConfig([docs]));
  client = new pg.Client({ connectionString: proxy.url() });
  await client.connect();
});

afterAll(async () => {
  await client?.end();
  await proxy?.close();
  await db?.drop();
});

const newRow = async (id: number) => (await db.query('SELECT * FROM docs_v2 WHERE id = $1', [id])).rows[0];

describe('row images', () => {
  it('INSERT: the sequence, defaults, generated column and BEFORE trigger values reach new', async () => {
    const r = await client.query(
      "INSERT INTO docs (title) VALUES ('Hello World') RETURNING id, slug, title_len",
    );
    expect(r.rows[0]).toMatchObject({ slug: 'hello-world', title_len: 11 });
    const n = await newRow(r.rows[0].id);
    expect(n).toMatchObject({ id: r.rows[0].id, slug: 'hello-world', title_len: 11, rev: 1 });
  });

  it('INSERT DEFAULT VALUES and a multi-row INSERT', async () => {
    const a = await client.query('INSERT INTO docs DEFAULT VALUES RETURNING id');
    const b = await client.query('INSERT INTO docs (title) VALUES ($1), ($2)', ['x y', 'z']);
    expect(b.rowCount).toBe(2);
    expect(await newRow(a.rows[0].id)).toMatchObject({ slug: 'untitled', title: null, title_len: null });
  });

  it('UPDATE of a row that predates dual-write inserts its full image into new', async () => {
    const r = await client.query("UPDATE docs SET title = 'Old One Renamed' WHERE id = 1");
    expect(r.rowCount).toBe(1);
    expect(await newRow(1)).toMatchObject({ id: 1, slug: 'old-one-renamed', rev: 2, title_len: 15 });
  });

  it('a row a BEFORE trigger suppresses is in neither table, and the tag says so', async () => {
    const r = await client.query("INSERT INTO docs (title) VALUES ('suppress me'), ('kept')");
    expect(r.command).toBe('INSERT');
    expect(r.rowCount).toBe(1);
    const u = await client.query("UPDATE docs SET title = 'suppress me' WHERE id = 1 RETURNING id");
    expect(u.rowCount).toBe(0);
    expect(u.rows).toEqual([]);
    expect(
      (await db.query("SELECT count(*)::int AS n FROM docs_v2 WHERE title = 'suppress me'")).rows[0].n,
    ).toBe(0);
  });

  it('after all of it, new equals up(old) for every row written through the proxy', async () => {
    // Row 2 was never written through the proxy: the backfill's job, done here directly.
    await db.query(
      'INSERT INTO docs_v2 SELECT id, title, slug, updated_at, title_len, rev FROM docs WHERE id = 2 ON CONFLICT DO NOTHING',
    );
    await checkEqual(db, m, 'row images');
    // The AFTER trigger ran once per row actually written (2 seeded + 5 through the proxy), as without it.
    const audit = await db.query('SELECT op, count(*)::int AS n FROM audit GROUP BY op ORDER BY op');
    expect(audit.rows).toEqual([
      { op: 'INSERT', n: 7 },
      { op: 'UPDATE', n: 1 },
    ]);
  });
});

// A mirrored write runs the client's expressions exactly as often as the
// write alone would. Before PostgreSQL 18 a key-moving UPDATE is pre-read
// with a copy of its WHERE and FROM; one that calls a function that could
// tell (bump() below counts its calls) cannot be mirrored that way: it is
// forwarded and counted (passthrough) or refused (reject), never run twice.
import pg from 'pg';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { metrics } from '../../src/metrics.ts';
import { freshDatabase, type TestDatabase } from '../support/db.ts';
import { applyConfig, mappingConfig } from '../support/lifecycle.ts';
import type { MappingDefinition } from '../support/mapping-cases.ts';
import { startProxy, type TestProxy } from '../support/proxy.ts';

let db: TestDatabase;
let proxy: TestProxy;

const acct: MappingDefinition = {
  name: 'acct-fx',
  old: 'public.acct',
  new: 'public.acct_v2',
  key: ['id'],
  up: { id: 'id', v: 'v' },
  down: { id: 'id', v: 'v' },
};

beforeAll(async () => {
  db = await freshDatabase('fx');
  await db.query(`
    CREATE TABLE acct (id int PRIMARY KEY, v text);
    CREATE TABLE acct_v2 (id int PRIMARY KEY, v text);
    CREATE TABLE bumps (n int NOT NULL);
    INSERT INTO bumps VALUES (0);
    CREATE FUNCTION bump() RETURNS boolean LANGUAGE plpgsql AS $$
      BEGIN UPDATE bumps SET n = n + 1; RETURN true; END $$;`);
  proxy = await startProxy(db, mappingConfig([acct]));
});

afterAll(async () => {
  await proxy?.close();
  await db?.drop();
});

beforeEach(async () => {
  await db.query('TRUNCATE acct, acct_v2');
  await db.query('UPDATE bumps SET n = 0');
  await db.query(
    "INSERT INTO acct VALUES (12, 'twelve'), (13, 'thirteen'); INSERT INTO acct_v2 VALUES (12, 'twelve'), (13, 'thirteen')",
  );
});

async function withClient<T>(f: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: proxy.url() });
  await c.connect();
  try {
    return await f(c);
  } finally {
    await c.end();
  }
}

async function bumps(): Promise<number> {
  return (await db.query<{ n: number }>('SELECT n FROM bumps')).rows[0].n;
}

async function ids(table: string): Promise<number[]> {
  return (await db.query<{ id: number }>(`SELECT id FROM ${table} ORDER BY id`)).rows.map((r) => r.id);
}

async function unmirrored(reason: string): Promise<number> {
  const v = (await metrics.unmirroredWrites.get()).values.find(
    (x) => x.labels.mapping === acct.name && x.labels.reason === reason,
  );
  return v?.value ?? 0;
}

const MOVE = 'UPDATE acct SET id = id + 700000 WHERE id = 12 AND bump()';
const MOVE_FROM =
  'UPDATE acct SET id = a.id + 700000 FROM acct AS a WHERE a.id = acct.id AND a.id = 12 AND bump()';

describe('a key-moving UPDATE that calls a function in its WHERE', () => {
  it('direct: bump() runs once (the reference)', async () => {
    await db.query(MOVE);
    expect(await bumps()).toBe(1);
  });

  for (const [what, sql] of [
    ['WHERE', MOVE],
    ['UPDATE ... FROM', MOVE_FROM],
  ]) {
    it(`passthrough (${what}): bump() runs once, as direct; mirrored on 18, counted before`, async () => {
      const n = await unmirrored('volatile_predicate');
      const r = await withClient((c) => c.query(sql));
      expect(r.rowCount).toBe(1);
      expect(await bumps()).toBe(1);
      expect(await ids('acct')).toEqual([13, 700012]);
      if (db.serverVersion >= 18) {
        expect(await ids('acct_v2')).toEqual([13, 700012]);
        expect(await unmirrored('volatile_predicate')).toBe(n);
      } else {
        // Forwarded as written: new keeps the row under its old key until verify --repair.
        expect(await ids('acct_v2')).toEqual([12, 13]);
        expect(await unmirrored('volatile_predicate')).toBe(n + 1);
      }
    });
  }

  it('extended protocol, with parameters: the same', async () => {
    const r = await withClient((c) =>
      c.query('UPDATE acct SET id = id + $1 WHERE id = $2 AND bump() RETURNING id', [700000, 12]),
    );
    expect(r.rows).toEqual([{ id: 700012 }]);
    expect(await bumps()).toBe(1);
  });

  it('reject: refused with 0A000 before 18 (bump() never runs); mirrored on 18', async () => {
    await applyConfig(proxy, db, mappingConfig([acct], { onUnmirrorable: 'reject' }));
    try {
      const n = await unmirrored('volatile_predicate');
      const out = await withClient((c) => c.query(MOVE).catch((e: pg.DatabaseError) => e));
      if (db.serverVersion >= 18) {
        expect((out as pg.QueryResult).rowCount).toBe(1);
        expect(await bumps()).toBe(1);
        expect(await ids('acct_v2')).toEqual([13, 700012]);
      } else {
        const err = out as pg.DatabaseError;
        expect(err.code).toBe('0A000');
        expect(err.message).toContain(acct.name);
        expect(err.message).toContain('bump()');
        expect(await bumps()).toBe(0);
        expect(await ids('acct')).toEqual([12, 13]);
        expect(await unmirrored('volatile_predicate')).toBe(n + 1);
      }
    } finally {
      await applyConfig(proxy, db, mappingConfig([acct]));
    }
  });

  it('a WHERE of side-effect-free built-ins is still mirrored before 18, key move included', async () => {
    const n = await unmirrored('volatile_predicate');
    await withClient((c) =>
      c.query(
        "UPDATE acct SET id = id + 1000 WHERE lower(v) = 'twelve' AND id IN (SELECT 12) AND now() > '2000-01-01'",
      ),
    );
    expect(await ids('acct')).toEqual([13, 1012]);
    expect(await ids('acct_v2')).toEqual([13, 1012]);
    expect(await unmirrored('volatile_predicate')).toBe(n);
  });

  it('a function in SET or RETURNING is not copied: mirrored, run once per row', async () => {
    await withClient((c) =>
      c.query('UPDATE acct SET id = id + 2000, v = v || bump()::text WHERE id = 13 RETURNING bump()'),
    );
    expect(await bumps()).toBe(2);
    expect(await ids('acct_v2')).toEqual([12, 2013]);
  });
});

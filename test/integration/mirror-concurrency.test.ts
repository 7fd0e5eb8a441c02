// Two transactions through the proxy on the same row, in a fixed interleaving:
// the second statement waits on the first one's row lock and runs after it
// commits, as Postgres's READ COMMITTED does it. Whatever the first one did
// to the new table, the second one's mirror must see it: new == up(old).
import pg from 'pg';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { CompiledMapping } from '../../src/rules/mapping.ts';
import { freshDatabase, type TestDatabase } from '../support/db.ts';
import { checkEqual, compileMapping, mappingConfig } from '../support/lifecycle.ts';
import type { MappingDefinition } from '../support/mapping-cases.ts';
import { startProxy, type TestProxy } from '../support/proxy.ts';

let db: TestDatabase;
let proxy: TestProxy;
let m: CompiledMapping;

const rows: MappingDefinition = {
  name: 'rows',
  old: 'rows',
  new: 'rows_v2',
  key: ['id'],
  up: { id: 'id', v: 'v' },
  down: { id: 'id', v: 'v' },
};

beforeAll(async () => {
  db = await freshDatabase('mc');
  await db.query(`
    CREATE TABLE rows (id int PRIMARY KEY, v text NOT NULL);
    CREATE TABLE rows_v2 (id int PRIMARY KEY, v text NOT NULL);`);
  m = await compileMapping(db, rows);
  proxy = await startProxy(db, mappingConfig([rows]));
});

afterAll(async () => {
  await proxy?.close();
  await db?.drop();
});

beforeEach(async () => {
  await db.query('TRUNCATE rows, rows_v2');
});

async function session(): Promise<pg.Client & { pid: number }> {
  const c = new pg.Client({ connectionString: proxy.url() });
  await c.connect();
  const pid = (await c.query('SELECT pg_backend_pid() AS pid')).rows[0].pid as number;
  return Object.assign(c, { pid });
}

/** Resolves once the backend `pid` waits for a lock. */
async function waitingForLock(pid: number): Promise<void> {
  for (let i = 0; i < 200; i++) {
    const r = await db.query("SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND wait_event_type = 'Lock'", [
      pid,
    ]);
    if (r.rowCount === 1) return;
    await new Promise((res) => setTimeout(res, 25));
  }
  throw new Error(`backend ${pid} never waited for a lock`);
}

/** First holds the row lock inside a transaction; second blocks on it; first commits; second finishes. */
async function interleave(first: string, second: string): Promise<pg.QueryResult> {
  const [a, b] = [await session(), await session()];
  try {
    await a.query('BEGIN');
    await a.query(first);
    const blocked = b.query(second);
    await waitingForLock(b.pid);
    await a.query('COMMIT');
    return await blocked;
  } finally {
    await Promise.all([a.end(), b.end()]);
  }
}

describe('a mirror sees what a concurrent transaction committed to new while it waited', () => {
  it('DELETE waiting on an UPDATE that brought a not-yet-backfilled row into new', async () => {
    // Row 1 predates dual-write: it is in old only. The UPDATE's mirror inserts it into new.
    await db.query("INSERT INTO rows VALUES (1, 'a')");
    const r = await interleave("UPDATE rows SET v = 'b' WHERE id = 1", 'DELETE FROM rows WHERE id = 1');
    expect(r.rowCount).toBe(1);
    await checkEqual(db, m, 'update then delete of a row not yet backfilled');
  });

  it('DELETE waiting on an UPDATE that moved the row to another key', async () => {
    await db.query("INSERT INTO rows VALUES (1, 'a'); INSERT INTO rows_v2 VALUES (1, 'a')");
    const r = await interleave('UPDATE rows SET id = 2 WHERE id = 1', "DELETE FROM rows WHERE v = 'a'");
    expect(r.rowCount).toBe(1);
    await checkEqual(db, m, 'key move then delete');
  });

  it('DELETE waiting on an upsert whose DO UPDATE brought the row into new', async () => {
    await db.query("INSERT INTO rows VALUES (1, 'a')");
    const r = await interleave(
      "INSERT INTO rows VALUES (1, 'b') ON CONFLICT (id) DO UPDATE SET v = EXCLUDED.v",
      'DELETE FROM rows WHERE id = 1',
    );
    expect(r.rowCount).toBe(1);
    await checkEqual(db, m, 'upsert then delete');
  });

  it('UPDATE waiting on an UPDATE that brought the row into new (the upsert finds it)', async () => {
    await db.query("INSERT INTO rows VALUES (1, 'a')");
    const r = await interleave(
      "UPDATE rows SET v = 'b' WHERE id = 1",
      "UPDATE rows SET v = v || 'c' WHERE id = 1",
    );
    expect(r.rowCount).toBe(1);
    await checkEqual(db, m, 'update then update');
    expect((await db.query('SELECT v FROM rows_v2 WHERE id = 1')).rows[0].v).toBe('bc');
  });

  it('key move waiting on an UPDATE that brought the row into new', async () => {
    await db.query("INSERT INTO rows VALUES (1, 'a')");
    const r = await interleave("UPDATE rows SET v = 'b' WHERE id = 1", 'UPDATE rows SET id = 5 WHERE id = 1');
    expect(r.rowCount).toBe(1);
    await checkEqual(db, m, 'update then key move');
  });
});

// A backfill with 4 workers while clients keep inserting, updating (single
// rows and three-row transactions), changing keys and deleting rows; then
// verify must find zero drift and the clients zero errors. Run twice: with the
// mirror's statement shape sent straight to Postgres (the original write
// returning its row images, plus the rowsql upsert / delete of those images),
// and as plain statements through the proxy, which does the mirroring.
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Backfill, DEFAULT_OPTIONS } from '../../src/backfill/runner.ts';
import { silentLogger } from '../../src/log.ts';
import type { CompiledMapping } from '../../src/rules/mapping.ts';
import { deleteByOldRowsSql, deleteMovedKeysSql, upsertSql } from '../../src/rules/rowsql.ts';
import { DEFAULT_VERIFY_OPTIONS, type Drift, verifyMapping } from '../../src/verify/compare.ts';
import {
  createUsers,
  type Fixture,
  mismatches,
  USERS_MAPPING,
  writeConfig,
} from '../support/backfill-fixtures.ts';
import { freshDatabase, type TestDatabase } from '../support/db.ts';
import { startProxy } from '../support/proxy.ts';

const ROWS = 30_000;
/** USERS_MAPPING as the proxy's config object. */
const USERS_MAPPING_OBJECT = {
  name: 'users',
  old: 'public.users',
  new: 'public.users_v2',
  key: ['id'],
  up: { id: 'id', email: 'lower(email)', full_name: "first_name || ' ' || last_name", version: 'version' },
};
let db: TestDatabase;
let fx: Fixture;

beforeAll(async () => {
  db = await freshDatabase('bfconc');
  await createUsers(db.query, ROWS);
  await db.query('CREATE SEQUENCE fresh_ids START 10000000');
  fx = await writeConfig(db.url, USERS_MAPPING);
});

afterAll(async () => {
  await fx?.cleanup();
  await db?.drop();
});

/** The dual-written form of each application write. */
function mirrored(m: CompiledMapping) {
  const upsert = upsertSql(m, 'SELECT * FROM sy_w', 'update');
  return {
    insert: `WITH sy_w AS (INSERT INTO users (id, email, first_name, last_name)
                           VALUES (nextval('fresh_ids'), $1, 'new', $2) RETURNING *) ${upsert}`,
    update: `WITH sy_w AS (UPDATE users SET version = version + 1, last_name = $2 WHERE id = $1 RETURNING *) ${upsert}`,
    delete: `WITH sy_w AS (DELETE FROM users WHERE id = $1 RETURNING *) ${deleteByOldRowsSql(m, 'SELECT * FROM sy_w')}`,
    // A key change: the pre-image is read under the row lock in the same statement. The UPDATE joins
    // the pre-read, so the pre-read runs first; unreferenced, it would run after the UPDATE and see nothing.
    move: `WITH sy_pre AS MATERIALIZED (SELECT * FROM users WHERE id = $1 FOR UPDATE),
                sy_w AS (UPDATE users AS u SET id = nextval('fresh_ids') FROM sy_pre WHERE u.id = sy_pre.id RETURNING u.*),
                sy_d AS (${deleteMovedKeysSql(m, 'SELECT * FROM sy_pre', 'SELECT * FROM sy_w')})
           ${upsert}`,
  };
}

interface WorkloadStats {
  ops: Record<string, number>;
  errors: string[];
}

type Statements = ReturnType<typeof mirrored>;

/** What the application sends through the proxy: plain statements, mirrored by it. */
const PLAIN: Statements = {
  insert: `INSERT INTO users (id, email, first_name, last_name) VALUES (nextval('fresh_ids'), $1, 'new', $2)`,
  update: 'UPDATE users SET version = version + 1, last_name = $2 WHERE id = $1',
  delete: 'DELETE FROM users WHERE id = $1',
  move: `UPDATE users SET id = nextval('fresh_ids') WHERE id = $1`,
};

async function client(
  url: string,
  sql: Statements,
  seed: number,
  stop: () => boolean,
  stats: WorkloadStats,
): Promise<void> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  let s = seed;
  const rand = (n: number) => {
    s = (s * 1103515245 + 12345) % 2147483648;
    return s % n;
  };
  const id = () => 1 + rand(ROWS);
  try {
    while (!stop()) {
      const op = rand(100);
      try {
        if (op < 20) {
          await c.query(sql.insert, [`Fresh${seed}-${rand(1e6)}@X.com`, `n${rand(100)}`]);
          stats.ops.insert++;
        } else if (op < 60) {
          await c.query(sql.update, [id(), `u${rand(1000)}`]);
          stats.ops.update++;
        } else if (op < 75) {
          await c.query(sql.delete, [id()]);
          stats.ops.delete++;
        } else if (op < 85) {
          await c.query(sql.move, [id()]);
          stats.ops.move++;
        } else {
          // A transaction of several writes, rows taken in key order as applications should.
          const ids = [id(), id(), id()].sort((a, b) => a - b);
          await c.query('BEGIN');
          for (const i of ids) await c.query(sql.update, [i, `t${rand(1000)}`]);
          await c.query('COMMIT');
          stats.ops.tx++;
        }
      } catch (e) {
        await c.query('ROLLBACK').catch(() => {});
        stats.errors.push(`${(e as { code?: string }).code}: ${(e as Error).message}`);
      }
    }
  } finally {
    await c.end();
  }
}

describe('backfill under concurrent dual-writes', () => {
  async function workloadDuringBackfill(url: string, sql: Statements) {
    const m = fx.mappings.get('users')!;
    await db.query(`DROP SCHEMA IF EXISTS switchyard CASCADE; TRUNCATE users_v2`);
    const stats: WorkloadStats = { ops: { insert: 0, update: 0, delete: 0, move: 0, tx: 0 }, errors: [] };
    let backfillDone = false;
    let stopAt = Number.POSITIVE_INFINITY;
    const stop = () => Date.now() > stopAt;
    const clients = Array.from({ length: 6 }, (_, i) => client(url, sql, 1000 + i, stop, stats));
    // Let the workload get going before the backfill starts, as dual-write precedes backfill.
    await new Promise((r) => setTimeout(r, 300));
    const opts = {
      ...DEFAULT_OPTIONS,
      workers: 4,
      batchSize: 200,
      targetBatchMs: 15,
      chunkRows: 1500,
      maxLagMs: 0,
    };
    let result: Awaited<ReturnType<Backfill['run']>>;
    try {
      result = await new Backfill(m, fx.clientConfig, opts, silentLogger).run();
      backfillDone = true;
    } finally {
      stopAt = Date.now() + 300;
      await Promise.all(clients);
    }

    console.log('backfill under load', { ...result, ops: stats.ops });
    expect(backfillDone).toBe(true);
    expect(result.outcome).toBe('done');
    expect(stats.errors).toEqual([]);
    const total = Object.values(stats.ops).reduce((a, b) => a + b, 0);
    expect(total).toBeGreaterThan(300);
    for (const [op, n] of Object.entries(stats.ops)) expect(n, op).toBeGreaterThan(0);
    // Some rows were already dual-written when their batch came: the backfill left them alone.
    expect(result.rowsInserted).toBeLessThan(result.rowsScanned);

    const drift: Drift[] = [];
    const v = await verifyMapping(m, fx.clientConfig, DEFAULT_VERIFY_OPTIONS, silentLogger, {
      onDrift: (d) => {
        drift.push(d);
      },
    });
    expect(drift).toEqual([]);
    expect(v.chunksDiffer).toBe(0);
    expect(await mismatches((s) => db.query(s) as Promise<{ rows: { n: number }[] }>, m)).toBe(0);
  }

  it('--workers 4 with mirrored inserts, updates, key moves and deletes running: verify finds zero drift', async () => {
    await workloadDuringBackfill(db.url, mirrored(fx.mappings.get('users')!));
  });

  it('the same workload as plain statements through the proxy: verify finds zero drift', async () => {
    const proxy = await startProxy(db, { mappings: [USERS_MAPPING_OBJECT] });
    try {
      await workloadDuringBackfill(proxy.url(), PLAIN);
    } finally {
      await proxy.close();
    }
  });

  it('a delete whose statement began before the batch committed does not leave the row behind in new', async () => {
    // The race, made deterministic: the application's mirrored DELETE takes its snapshot, then
    // waits for a row lock (held by another transaction) while the batch copies that row and
    // commits. When the DELETE proceeds, its delete of the new row uses its old snapshot, in which
    // the copied row does not exist yet: without settling, the deleted row would live on in new.
    const m = fx.mappings.get('users')!;
    await db.query(`DROP SCHEMA IF EXISTS switchyard CASCADE; TRUNCATE users_v2`);
    const sql = mirrored(m);
    const locker = new pg.Client({ connectionString: db.url });
    const app = new pg.Client({ connectionString: db.url });
    await locker.connect();
    await app.connect();
    try {
      await locker.query('BEGIN');
      await locker.query('SELECT * FROM users WHERE id = 42 FOR UPDATE');
      const appDelete = app.query(sql.delete, [42]);
      // The delete is now waiting on the lock, its snapshot taken.
      for (;;) {
        const w = await db.query(
          `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%DELETE FROM users%'`,
        );
        if (w.rows[0].n > 0) break;
        await new Promise((r) => setTimeout(r, 20));
      }
      const opts = { ...DEFAULT_OPTIONS, maxLagMs: 0, chunkRows: 100_000 };
      const run = new Backfill(m, fx.clientConfig, opts, silentLogger).run();
      // Wait until the chunk is copied (row 42 included) but cannot be settled: older transactions are open.
      for (;;) {
        const c = await db
          .query(`SELECT bool_and(copied_at IS NOT NULL) AS copied FROM switchyard.backfill_chunks`)
          .catch(() => ({ rows: [{ copied: false }] })); // the run has not created its schema yet
        if (c.rows[0].copied) break;
        await new Promise((r) => setTimeout(r, 20));
      }
      const copied = await db.query('SELECT count(*)::int AS n FROM users_v2 WHERE id = 42');
      expect(copied.rows[0].n).toBe(1);
      await locker.query('COMMIT');
      const deleted = await appDelete;
      expect(deleted.rowCount).toBe(0); // the mirror's delete saw no new row: it is the stale snapshot
      const result = await run;
      expect(result.outcome).toBe('done');
      expect(result.orphansRemoved).toBe(1);
      const left = await db.query('SELECT count(*)::int AS n FROM users_v2 WHERE id = 42');
      expect(left.rows[0].n).toBe(0);
      expect(await mismatches((s) => db.query(s) as Promise<{ rows: { n: number }[] }>, m)).toBe(0);
    } finally {
      await locker.end();
      await app.end();
    }
  });
});

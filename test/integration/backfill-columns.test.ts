// Backfill of a column migration inside one table, against a real Postgres:
// keyset batches fill exactly the rows whose new columns differ from up(row)
// (rows already in step are not rewritten), resume after SIGKILL, share the
// work between workers, and keep step with writes through the proxy.
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Backfill, DEFAULT_OPTIONS } from '../../src/backfill/runner.ts';
import { silentLogger } from '../../src/log.ts';
import {
  COLUMNS_DEFINITION,
  COLUMNS_MAPPING,
  columnsOutOfStep,
  createPricedUsers,
  type Fixture,
  killBackfillAfter,
  logLines,
  resetPricedUsers,
  runCli,
  spawnCli,
  writeConfig,
} from '../support/backfill-fixtures.ts';
import { freshDatabase, type TestDatabase } from '../support/db.ts';
import { mappingConfig } from '../support/lifecycle.ts';
import { startProxy } from '../support/proxy.ts';

const ROWS = 40_000;
/** Rows of createPricedUsers whose new columns differ from up(row) before a backfill. */
const DIFFERING = 30_000;
const MAPPING = 'user-columns';

let db: TestDatabase;
let fx: Fixture;
const q = (sql: string) => db.query(sql) as Promise<{ rows: { n: number }[] }>;

beforeAll(async () => {
  db = await freshDatabase('bfcols');
  await createPricedUsers(db.query, ROWS);
  fx = await writeConfig(db.url, COLUMNS_MAPPING);
});

afterAll(async () => {
  await fx?.cleanup();
  await db?.drop();
});

async function chunkTotals() {
  const r = await db.query(
    `SELECT count(*)::int AS chunks, count(*) FILTER (WHERE done)::int AS done,
            coalesce(sum(rows_scanned), 0)::int AS scanned, coalesce(sum(rows_inserted), 0)::int AS updated
       FROM switchyard.backfill_chunks WHERE mapping = $1`,
    [MAPPING],
  );
  return r.rows[0] as { chunks: number; done: number; scanned: number; updated: number };
}

/** Back to the state before any backfill, with every row's xmin recorded in `before_fill`. */
async function resetAll() {
  await db.query(`DELETE FROM switchyard.backfill_runs WHERE mapping = $1`, [MAPPING]).catch(() => {});
  await resetPricedUsers(db.query);
  await db.query(`DROP TABLE IF EXISTS before_fill;
    CREATE TABLE before_fill AS SELECT id, xmin::text AS x, id % 4 <> 0 AS differs FROM users`);
}

/** Rows rewritten since resetAll, split by whether they differed then. */
async function rewritten() {
  const r = await db.query(
    `SELECT count(*) FILTER (WHERE b.differs)::int AS differing, count(*) FILTER (WHERE NOT b.differs)::int AS in_step
       FROM users u JOIN before_fill b USING (id) WHERE u.xmin::text <> b.x`,
  );
  return r.rows[0] as { differing: number; in_step: number };
}

const args = ['backfill', '--config', '', '--mapping', MAPPING, '--max-lag-ms', '0'];
const cli = (...more: string[]) => {
  args[2] = fx.configPath;
  return [...args, ...more];
};

describe('backfill of a column migration', () => {
  it('--dry-run prints the UPDATE it would run and touches nothing', async () => {
    await resetAll();
    const r = await runCli(cli('--dry-run'));
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('fill:        full_name, price_cents of "public"."users" where they differ');
    expect(r.stdout).toContain('key range:   1 .. 40000');
    expect(r.stdout).toContain('UPDATE "public"."users" AS sy_old SET "full_name" = ');
    expect(r.stdout).not.toContain('ON CONFLICT');
    const schema = await db.query(`SELECT to_regnamespace('switchyard') IS NULL AS absent`);
    expect(schema.rows[0].absent).toBe(true);
    expect(await rewritten()).toEqual({ differing: 0, in_step: 0 });
  });

  it('fills exactly the rows that differ, with two workers; rows already in step are not rewritten', {
    timeout: 120_000,
  }, async () => {
    await resetAll();
    expect(await columnsOutOfStep(q)).toBe(DIFFERING);
    const r = await runCli(
      cli('--workers', '2', '--chunk-rows', '5000', '--batch-size', '500', '--log-level', 'debug'),
    );
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(`backfill of ${MAPPING} complete: ${ROWS} rows scanned, ${DIFFERING} updated`);
    expect(await columnsOutOfStep(q)).toBe(0);
    // Each differing row rewritten once, no row in step touched.
    expect(await rewritten()).toEqual({ differing: DIFFERING, in_step: 0 });
    const t = await chunkTotals();
    expect(t).toMatchObject({ done: t.chunks, scanned: ROWS, updated: DIFFERING });
    expect(t.chunks).toBeGreaterThanOrEqual(8);
    // Both workers filled chunks.
    const claims = logLines(r.stderr).filter((l) => l.msg === 'chunk claimed');
    expect(new Set(claims.map((l) => l.worker))).toEqual(new Set([1, 2]));
    const again = await runCli(cli());
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toContain('was already complete');

    const verify = await runCli(['verify', '--config', fx.configPath, '--mapping', MAPPING]);
    expect(verify.code, verify.stdout + verify.stderr).toBe(0);
    expect(verify.stdout).toContain(`${ROWS} rows in`);
    expect(verify.stdout).toContain('no drift: new columns match up(row)');
  });

  it('resumes exactly after SIGKILL after the first checkpoint', { timeout: 180_000 }, async () => {
    await resetAll();
    const run = spawnCli(cli('--batch-size', '200', '--target-batch-ms', '5', '--workers', '2'));
    const killed = await killBackfillAfter(db.url, run, MAPPING, 4_000);
    expect(killed.signal).toBe('SIGKILL');
    const mid = await chunkTotals();
    expect(mid.done).toBeLessThan(mid.chunks);
    // The checkpoint commits with the rows it describes: rows filled = rows it counts, never more or fewer.
    const filled = await rewritten();
    expect(filled.in_step).toBe(0);
    expect(filled.differing).toBe(mid.updated);
    expect(filled.differing).toBeGreaterThan(0);
    expect(await columnsOutOfStep(q)).toBe(DIFFERING - mid.updated);

    const resumed = await runCli(cli());
    expect(resumed.code, resumed.stderr).toBe(0);
    const summary = logLines(resumed.stderr).find((l) => l.msg === 'backfill done')!;
    expect(summary.rowsBefore).toBe(mid.scanned);
    expect(summary.rowsScanned).toBe(ROWS - mid.scanned);
    expect(summary.rowsInserted).toBe(DIFFERING - mid.updated);
    expect(await chunkTotals()).toMatchObject({ done: mid.chunks, scanned: ROWS, updated: DIFFERING });
    expect(await rewritten()).toEqual({ differing: DIFFERING, in_step: 0 });
    expect(await columnsOutOfStep(q)).toBe(0);
  });

  it('fills a row changed while its batch waits for it from its latest version, and skips it when the proxy filled it', {
    timeout: 120_000,
  }, async () => {
    await resetAll();
    const proxy = await startProxy(db, mappingConfig([COLUMNS_DEFINITION]));
    // Both rows are out of step: 4001 in both columns, 4006 in price_cents only. One writer bypasses
    // the proxy, so its row stays out of step with a new first_name; the other sets price through the
    // proxy, which recomputes price_cents and so puts its row in step.
    const direct = new pg.Client({ connectionString: db.url });
    const viaProxy = new pg.Client({ connectionString: proxy.url() });
    await direct.connect();
    await viaProxy.connect();
    try {
      await direct.query('BEGIN');
      await direct.query(`UPDATE users SET first_name = 'Later' WHERE id = 4001`);
      await viaProxy.query('BEGIN');
      await viaProxy.query(`UPDATE users SET price = 5 WHERE id = 4006`);
      const opts = { ...DEFAULT_OPTIONS, maxLagMs: 0, lockTimeoutMs: 60_000 };
      const run = new Backfill(fx.mappings.get(MAPPING)!, fx.clientConfig, opts, silentLogger).run();
      for (;;) {
        const w = await db.query(
          `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'switchyard-backfill' AND wait_event_type = 'Lock'`,
        );
        if (w.rows[0].n > 0) break;
        await new Promise((res) => setTimeout(res, 20));
      }
      await direct.query('COMMIT');
      await viaProxy.query('COMMIT');
      const stats = await run;
      expect(stats.outcome).toBe('done');
      // Row 4006 was in step when the batch re-read it: not rewritten.
      expect(stats.rowsInserted).toBe(DIFFERING - 1);
      const rows = await db.query(
        `SELECT id, full_name, price_cents::int AS cents FROM users WHERE id IN (4001, 4006) ORDER BY id`,
      );
      expect(rows.rows).toEqual([
        { id: 4001, full_name: 'Later last4001', cents: 4001 },
        { id: 4006, full_name: 'first4006 last4006', cents: 500 },
      ]);
      expect(await columnsOutOfStep(q)).toBe(0);
    } finally {
      await direct.query('ROLLBACK').catch(() => {});
      await viaProxy.query('ROLLBACK').catch(() => {});
      await direct.end();
      await viaProxy.end();
      await proxy.close();
    }
  });

  it('keeps step with concurrent writes through the proxy: 0 rows out of step', {
    timeout: 180_000,
  }, async () => {
    await resetAll();
    const proxy = await startProxy(db, mappingConfig([COLUMNS_DEFINITION]));
    const clients = await Promise.all(
      Array.from({ length: 4 }, async () => {
        const c = new pg.Client({ connectionString: proxy.url() });
        await c.connect();
        return c;
      }),
    );
    let nextId = ROWS;
    let stop = false;
    let writes = 0;
    let writesDuringBackfill = 0;
    let backfillRunning = true;
    const errors: string[] = [];
    const rand = (n: number) => 1 + Math.floor(Math.random() * n);
    const work = clients.map(async (c, i) => {
      while (!stop) {
        const id = rand(ROWS);
        try {
          switch ((writes + i) % 5) {
            case 0:
              await c.query('UPDATE users SET first_name = $1, price = price + 1 WHERE id = $2', [
                `w${i}`,
                id,
              ]);
              break;
            case 1:
              // Several rows of one batch in one transaction, in an order the batch does not follow.
              await c.query('BEGIN');
              await c.query('UPDATE users SET last_name = last_name || $1 WHERE id = $2', ['x', id]);
              await c.query('UPDATE users SET price = price * 2 WHERE id = $1', [Math.max(1, id - 3)]);
              await c.query('COMMIT');
              break;
            case 2:
              await c.query(
                `INSERT INTO users (id, first_name, last_name, price) VALUES ($1, 'new', 'row', 1.25)`,
                [++nextId],
              );
              break;
            case 3:
              await c.query('DELETE FROM users WHERE id = $1', [id]);
              break;
            default:
              await c.query('UPDATE users SET price = 7.5 WHERE id BETWEEN $1 AND $1 + 20', [id]);
          }
          writes++;
          if (backfillRunning) writesDuringBackfill++;
        } catch (e) {
          await c.query('ROLLBACK').catch(() => {});
          errors.push((e as Error).message);
        }
      }
    });
    try {
      const opts = {
        ...DEFAULT_OPTIONS,
        batchSize: 200,
        targetBatchMs: 10,
        workers: 2,
        chunkRows: 4000,
        maxLagMs: 0,
      };
      const stats = await new Backfill(fx.mappings.get(MAPPING)!, fx.clientConfig, opts, silentLogger).run();
      backfillRunning = false;
      expect(stats.outcome).toBe('done');
      // The workload really overlapped the backfill.
      expect(writesDuringBackfill).toBeGreaterThan(100);
    } finally {
      stop = true;
      await Promise.all(work);
      await Promise.all(clients.map((c) => c.end()));
      await proxy.close();
    }
    expect(errors).toEqual([]);
    expect(await columnsOutOfStep(q)).toBe(0);
    const verify = await runCli(['verify', '--config', fx.configPath, '--mapping', MAPPING]);
    expect(verify.code, verify.stdout + verify.stderr).toBe(0);
  });
});

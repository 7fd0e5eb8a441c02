// Backfill against a real Postgres: composite keys, dry run, SIGKILL and
// resume, several processes sharing one run.
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Backfill, DEFAULT_OPTIONS } from '../../src/backfill/runner.ts';
import { silentLogger } from '../../src/log.ts';
import {
  createLines,
  createUsers,
  type Fixture,
  killBackfillAfter,
  LINES_MAPPING,
  logLines,
  mismatches,
  runCli,
  spawnCli,
  USERS_MAPPING,
  writeConfig,
} from '../support/backfill-fixtures.ts';
import { freshDatabase, type TestDatabase } from '../support/db.ts';

let db: TestDatabase;
let fx: Fixture;
const q = (sql: string) => db.query(sql) as Promise<{ rows: { n: number }[] }>;

beforeAll(async () => {
  db = await freshDatabase('backfill');
  await createUsers(db.query, 60_000);
  await createLines(db.query, 3_000, 4);
  fx = await writeConfig(db.url, USERS_MAPPING + LINES_MAPPING);
});

afterAll(async () => {
  await fx?.cleanup();
  await db?.drop();
});

async function chunkTotals(mapping: string) {
  const r = await db.query(
    `SELECT count(*)::int AS chunks, count(*) FILTER (WHERE done)::int AS done,
            coalesce(sum(rows_scanned), 0)::int AS scanned, coalesce(sum(rows_inserted), 0)::int AS inserted
       FROM switchyard.backfill_chunks WHERE mapping = $1`,
    [mapping],
  );
  return r.rows[0] as { chunks: number; done: number; scanned: number; inserted: number };
}

async function resetRun(mapping: string, newTable: string) {
  await db.query(`DELETE FROM switchyard.backfill_runs WHERE mapping = $1`, [mapping]);
  await db.query(`TRUNCATE ${newTable}`);
}

describe('backfill', () => {
  it('--dry-run prints the plan and touches nothing', async () => {
    const r = await runCli(['backfill', '--config', fx.configPath, '--mapping', 'users', '--dry-run']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('key range:   1 .. 60000');
    expect(r.stdout).toMatch(/est\. rows:\s+60,000/);
    expect(r.stdout).toMatch(/batches:\s+~30 of 2,000 rows/);
    expect(r.stdout).toContain('ON CONFLICT ("id") DO NOTHING');
    const schema = await db.query(`SELECT to_regnamespace('switchyard') IS NULL AS absent`);
    expect(schema.rows[0].absent).toBe(true);
    expect((await db.query('SELECT count(*)::int AS n FROM users_v2')).rows[0].n).toBe(0);
  });

  it('copies a composite-key mapping exactly, with small batches and two workers, and is idempotent', async () => {
    const m = fx.mappings.get('lines')!;
    const opts = {
      ...DEFAULT_OPTIONS,
      batchSize: 100,
      targetBatchMs: 5,
      workers: 2,
      chunkRows: 1000,
      maxLagMs: 0,
    };
    const first = await new Backfill(m, fx.clientConfig, opts, silentLogger).run();
    expect(first.outcome).toBe('done');
    expect(first.rowsScanned).toBe(12_000);
    expect(first.rowsInserted).toBe(12_000);
    expect(await mismatches(q, m)).toBe(0);
    const t = await chunkTotals('lines');
    expect(t.done).toBe(t.chunks);
    expect(t.chunks).toBeGreaterThanOrEqual(8);
    expect(t.scanned).toBe(12_000);

    const again = await new Backfill(m, fx.clientConfig, opts, silentLogger).run();
    expect(again.outcome).toBe('already-done');
    expect(again.rowsScanned).toBe(0);
  });

  it('never overwrites a row already in new (the dual-write is fresher)', async () => {
    const m = fx.mappings.get('lines')!;
    await resetRun('lines', 'order_lines_v2');
    // As if the mirror had written this row after the application changed it.
    await db.query(`UPDATE order_lines SET qty = 999 WHERE order_id = 7 AND line_no = 2`);
    await db.query(`INSERT INTO order_lines_v2 VALUES (7, 2, 'SKU-14', 999)`);
    const opts = { ...DEFAULT_OPTIONS, maxLagMs: 0, restart: true };
    const r = await new Backfill(m, fx.clientConfig, opts, silentLogger).run();
    expect(r.rowsScanned).toBe(12_000);
    expect(r.rowsInserted).toBe(11_999);
    expect(await mismatches(q, m)).toBe(0);
  });

  it('leaves a row the dual-write inserts during the batch as it is (unique violation, then ON CONFLICT DO NOTHING)', async () => {
    const m = fx.mappings.get('lines')!;
    await resetRun('lines', 'order_lines_v2');
    // A mirrored insert still open when the batch starts: its snapshot cannot see the row, so the
    // batch's plain insert waits on the key and fails once the application commits.
    const app = new pg.Client({ connectionString: db.url });
    await app.connect();
    try {
      await app.query('BEGIN');
      await app.query(`UPDATE order_lines SET qty = 777 WHERE order_id = 9 AND line_no = 3`);
      await app.query(`INSERT INTO order_lines_v2 VALUES (9, 3, 'SKU-27', 777)`);
      const opts = { ...DEFAULT_OPTIONS, maxLagMs: 0, restart: true, lockTimeoutMs: 60_000 };
      const run = new Backfill(m, fx.clientConfig, opts, silentLogger).run();
      for (;;) {
        const w = await db.query(
          `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'switchyard-backfill' AND wait_event_type = 'Lock'`,
        );
        if (w.rows[0].n > 0) break;
        await new Promise((res) => setTimeout(res, 20));
      }
      await app.query('COMMIT');
      const r = await run;
      expect(r.conflicts).toBeGreaterThanOrEqual(1);
      expect(r.rowsScanned).toBe(12_000);
      expect(r.rowsInserted).toBe(11_999);
      const row = await db.query(
        `SELECT quantity::int AS q FROM order_lines_v2 WHERE order_id = 9 AND line = 3`,
      );
      expect(row.rows[0].q).toBe(777);
      expect(await mismatches(q, m)).toBe(0);
    } finally {
      await app.end();
    }
  });

  // Real CLI processes: their start-up dominates on a busy machine, hence the longer timeouts.
  it('resumes exactly after SIGKILL halfway', { timeout: 180_000 }, async () => {
    const m = fx.mappings.get('users')!;
    const args = ['backfill', '--config', fx.configPath, '--mapping', 'users', '--max-lag-ms', '0'];
    // Tiny batches so that the run is still going when it is killed.
    const run = spawnCli([...args, '--batch-size', '200', '--target-batch-ms', '5', '--workers', '2']);
    const killed = await killBackfillAfter(db.url, run, 'users', 10_000);
    expect(killed.signal).toBe('SIGKILL');
    const mid = await chunkTotals('users');
    expect(mid.done).toBeLessThan(mid.chunks);
    const copied = (await db.query('SELECT count(*)::int AS n FROM users_v2')).rows[0].n;
    // The checkpoint is committed with the rows it describes: never ahead, never behind.
    expect(copied).toBe(mid.inserted);
    expect(copied).toBeGreaterThan(0);
    expect(copied).toBeLessThan(60_000);

    const resumed = await runCli(args);
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(resumed.stdout).toContain('backfill of users complete');
    const summary = logLines(resumed.stderr).find((l) => l.msg === 'backfill done')!;
    expect(summary.rowsBefore).toBe(mid.scanned);
    expect(summary.rowsScanned).toBe(60_000 - mid.scanned);
    const end = await chunkTotals('users');
    expect(end).toMatchObject({ done: end.chunks, scanned: 60_000, inserted: 60_000 });
    expect(await mismatches(q, m)).toBe(0);
  });

  it('shares one run between processes: every row copied once, no chunk skipped', {
    timeout: 180_000,
  }, async () => {
    const m = fx.mappings.get('users')!;
    await resetRun('users', 'users_v2');
    const args = ['backfill', '--config', fx.configPath, '--mapping', 'users', '--max-lag-ms', '0'];
    // Small batches keep the first process busy until the second has started (a run of 60,000
    // rows at full speed can end before the second process has even planned).
    const plan = ['--chunk-rows', '2000', '--batch-size', '100', '--target-batch-ms', '5', '--workers', '2'];
    const [a, b] = await Promise.all([runCli([...args, ...plan]), runCli([...args, ...plan])]);
    expect(a.code, a.stderr).toBe(0);
    expect(b.code, b.stderr).toBe(0);
    // One process ends 'done', the other 'done' or 'partial' (nothing left for it while the first finished).
    const summaries = [a, b].map(
      (r) => logLines(r.stderr).find((l) => /^backfill (done|partial)$/.test(String(l.msg)))!,
    );
    const scanned = summaries.reduce((n, l) => n + Number(l.rowsScanned), 0);
    expect(scanned).toBe(60_000);
    const t = await chunkTotals('users');
    expect(t).toMatchObject({ done: t.chunks, scanned: 60_000, inserted: 60_000 });
    expect(t.chunks).toBeGreaterThanOrEqual(20);
    // Each chunk scanned exactly the old rows of its own range.
    const perChunk = await db.query(
      `SELECT c.chunk_no, c.rows_scanned::int AS scanned,
              (SELECT count(*)::int FROM users u WHERE (c.lo IS NULL OR u.id > c.lo[1]::int) AND u.id <= c.hi[1]::int) AS actual
         FROM switchyard.backfill_chunks c WHERE c.mapping = 'users'`,
    );
    for (const row of perChunk.rows) expect(row.scanned, `chunk ${row.chunk_no}`).toBe(row.actual);
    expect(await mismatches(q, m)).toBe(0);
  });

  it('names an unknown mapping in one line and exits 2', async () => {
    const r = await runCli(['backfill', '--config', fx.configPath, '--mapping', 'nope']);
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toContain('unknown mapping nope');
  });
});

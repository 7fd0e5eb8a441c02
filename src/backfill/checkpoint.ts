// Backfill state lives in the database it describes, in the `switchyard`
// schema, so that any process on any machine can resume or join a run:
//
//   backfill_runs    one row per mapping: the fixed upper key bound, the
//                    estimate, and a fingerprint of the mapping it was planned for;
//   backfill_chunks  the key ranges (lo, hi] a run is cut into, with each
//                    chunk's cursor (last key copied), when its copy ended,
//                    whether it is settled (done), and its owner.
//
// A chunk's cursor advances in the same statement that copies the batch, so
// after a crash the checkpoint says exactly which rows are done. A chunk is
// owned by a backend (pid + start time): claiming skips chunks owned by a
// live backend, and takes over chunks whose owner's connection is gone.
import { createHash } from 'node:crypto';
import type pg from 'pg';
import type { CompiledMapping } from '../rules/mapping.ts';

export const SCHEMA = 'switchyard';

export const DDL = `
CREATE SCHEMA IF NOT EXISTS ${SCHEMA};
CREATE TABLE IF NOT EXISTS ${SCHEMA}.backfill_runs (
  mapping       text PRIMARY KEY,
  fingerprint   text NOT NULL,
  old_table     text NOT NULL,
  new_table     text NOT NULL,
  key_columns   text[] NOT NULL,
  upper_key     text[],
  estimated_rows bigint NOT NULL,
  chunks        int NOT NULL,
  started_at    timestamptz NOT NULL DEFAULT now(),
  finished_at   timestamptz
);
CREATE TABLE IF NOT EXISTS ${SCHEMA}.backfill_chunks (
  mapping       text NOT NULL REFERENCES ${SCHEMA}.backfill_runs ON DELETE CASCADE,
  chunk_no      int NOT NULL,
  lo            text[],
  hi            text[] NOT NULL,
  cursor        text[],
  done          boolean NOT NULL DEFAULT false,
  rows_scanned  bigint NOT NULL DEFAULT 0,
  rows_inserted bigint NOT NULL DEFAULT 0,
  batches       int NOT NULL DEFAULT 0,
  copied_at     timestamptz,
  orphans_removed bigint NOT NULL DEFAULT 0,
  owner         text,
  owner_pid     int,
  owner_started timestamptz,
  updated_at    timestamptz,
  PRIMARY KEY (mapping, chunk_no)
);
`;

export interface RunRow {
  mapping: string;
  fingerprint: string;
  upper_key: string[] | null;
  estimated_rows: string;
  chunks: number;
  started_at: Date;
  finished_at: Date | null;
}

export interface Chunk {
  chunkNo: number;
  /** Exclusive lower bound; null: from the start of the key space. */
  lo: string[] | null;
  /** Inclusive upper bound. */
  hi: string[];
  /** Last key copied; null: nothing copied yet. */
  cursor: string[] | null;
  /** When the last batch committed; null while copying. */
  copiedAt: Date | null;
}

/** Identifies what a plan was made for: resuming under a changed mapping would mix two definitions of up(). */
export function fingerprint(m: CompiledMapping): string {
  const what = { old: m.old, new: m.new, key: m.key, up: m.up };
  return createHash('sha256').update(JSON.stringify(what)).digest('hex').slice(0, 16);
}

export async function ensureSchema(c: pg.Client): Promise<void> {
  // Serialised: concurrent CREATE ... IF NOT EXISTS can still collide in the catalog.
  await c.query('BEGIN');
  try {
    await c.query(`SELECT pg_advisory_xact_lock(hashtext('switchyard.schema'))`);
    await c.query(DDL);
    await c.query('COMMIT');
  } catch (e) {
    await c.query('ROLLBACK').catch(() => {});
    throw e;
  }
}

export async function schemaExists(c: pg.Client): Promise<boolean> {
  const r = await c.query(`SELECT to_regclass('${SCHEMA}.backfill_chunks') IS NOT NULL AS ok`);
  return r.rows[0].ok === true;
}

export async function readRun(c: pg.Client, mapping: string): Promise<RunRow | undefined> {
  const r = await c.query<RunRow>(`SELECT * FROM ${SCHEMA}.backfill_runs WHERE mapping = $1`, [mapping]);
  return r.rows[0];
}

export interface RunTotals {
  chunks: number;
  done: number;
  rowsScanned: number;
  rowsInserted: number;
}

export async function runTotals(c: pg.Client, mapping: string): Promise<RunTotals> {
  const r = await c.query(
    `SELECT count(*)::int AS chunks, count(*) FILTER (WHERE done)::int AS done,
            coalesce(sum(rows_scanned), 0)::float8 AS scanned, coalesce(sum(rows_inserted), 0)::float8 AS inserted
       FROM ${SCHEMA}.backfill_chunks WHERE mapping = $1`,
    [mapping],
  );
  const row = r.rows[0];
  return { chunks: row.chunks, done: row.done, rowsScanned: row.scanned, rowsInserted: row.inserted };
}

/**
 * Claims the next chunk nobody live is working on, for this connection's
 * backend. SKIP LOCKED: concurrent claimers never wait on each other and never
 * take the same chunk.
 */
export async function claimChunk(c: pg.Client, mapping: string, owner: string): Promise<Chunk | undefined> {
  const r = await c.query(
    `UPDATE ${SCHEMA}.backfill_chunks AS ch
        SET owner = $2, owner_pid = pg_backend_pid(),
            owner_started = (SELECT backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid()),
            updated_at = now()
      WHERE (ch.mapping, ch.chunk_no) = (
        SELECT q.mapping, q.chunk_no FROM ${SCHEMA}.backfill_chunks AS q
         WHERE q.mapping = $1 AND NOT q.done
           AND (q.owner_pid IS NULL
                OR NOT EXISTS (SELECT 1 FROM pg_stat_activity AS a
                                WHERE a.pid = q.owner_pid AND a.backend_start = q.owner_started))
         ORDER BY q.chunk_no
         LIMIT 1
         FOR UPDATE SKIP LOCKED)
      RETURNING ch.chunk_no, ch.lo, ch.hi, ch.cursor, ch.copied_at`,
    [mapping, owner],
  );
  const row = r.rows[0];
  if (!row) return undefined;
  return { chunkNo: row.chunk_no, lo: row.lo, hi: row.hi, cursor: row.cursor, copiedAt: row.copied_at };
}

/** Records that the whole range is copied; returns the server time it was recorded at. */
export async function markCopied(c: pg.Client, mapping: string, chunkNo: number): Promise<Date> {
  const r = await c.query(
    `UPDATE ${SCHEMA}.backfill_chunks SET cursor = hi, copied_at = clock_timestamp(), updated_at = now()
      WHERE mapping = $1 AND chunk_no = $2 AND owner_pid = pg_backend_pid()
      RETURNING copied_at`,
    [mapping, chunkNo],
  );
  if (r.rowCount !== 1) throw new Error(`backfill lost ownership of chunk ${chunkNo} of ${mapping}`);
  return r.rows[0].copied_at;
}

/**
 * Records that the whole range is copied and done at once: for a column
 * migration, whose batches leave nothing for a settle step to sweep.
 */
export async function markDone(c: pg.Client, mapping: string, chunkNo: number): Promise<void> {
  const r = await c.query(
    `UPDATE ${SCHEMA}.backfill_chunks
        SET cursor = hi, copied_at = clock_timestamp(), done = true, owner = NULL, owner_pid = NULL,
            owner_started = NULL, updated_at = now()
      WHERE mapping = $1 AND chunk_no = $2 AND owner_pid = pg_backend_pid()`,
    [mapping, chunkNo],
  );
  if (r.rowCount !== 1) throw new Error(`backfill lost ownership of chunk ${chunkNo} of ${mapping}`);
}

export interface OlderTransaction {
  pid: number;
  application_name: string;
  state: string;
  xact_start: Date;
}

/**
 * Transactions in this database that began before `since` and are still
 * open. A statement that took its snapshot before a batch committed cannot
 * see that batch's rows; the chunk is settled only once all of them are gone.
 */
export async function olderTransactions(c: pg.Client, since: Date): Promise<OlderTransaction[]> {
  const r = await c.query<OlderTransaction>(
    `SELECT pid, application_name, state, xact_start FROM pg_stat_activity
      WHERE datname = current_database() AND backend_type = 'client backend'
        AND pid <> pg_backend_pid() AND xact_start < $1
      ORDER BY xact_start`,
    [since],
  );
  return r.rows;
}

/** Sets finished_at once every chunk is done; true if the run is complete. */
export async function finishRunIfDone(c: pg.Client, mapping: string): Promise<boolean> {
  const r = await c.query(
    `UPDATE ${SCHEMA}.backfill_runs AS r SET finished_at = coalesce(r.finished_at, now())
      WHERE r.mapping = $1
        AND NOT EXISTS (SELECT 1 FROM ${SCHEMA}.backfill_chunks c WHERE c.mapping = r.mapping AND NOT c.done)
      RETURNING 1`,
    [mapping],
  );
  return (r.rowCount ?? 0) > 0;
}

/** Forgets a run (for --restart); refuses while a live backend owns one of its chunks. */
export async function deleteRun(c: pg.Client, mapping: string): Promise<void> {
  const live = await c.query(
    `SELECT count(*)::int AS n FROM ${SCHEMA}.backfill_chunks q
      WHERE q.mapping = $1 AND NOT q.done
        AND EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = q.owner_pid AND a.backend_start = q.owner_started)`,
    [mapping],
  );
  if (live.rows[0].n > 0) {
    throw new Error(`backfill of ${mapping} is running (${live.rows[0].n} chunks owned by live connections)`);
  }
  await c.query(`DELETE FROM ${SCHEMA}.backfill_runs WHERE mapping = $1`, [mapping]);
}

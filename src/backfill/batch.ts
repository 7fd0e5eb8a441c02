// One backfill batch, in two statements:
//
// 1. boundary: the key of the n-th row after the cursor (an index-only read).
//    It fixes the batch's key range (cursor, upper] before the copy runs.
//
// 2. copy: one single-statement transaction that inserts up(row) for the old
//    rows of the range into new ON CONFLICT DO NOTHING and moves the chunk's
//    cursor to `upper`, so the checkpoint commits with the rows it describes.
//
// DO NOTHING: a row already in new was put there by the dual-write, which is
// always at least as fresh as the batch's read, so the batch never overwrites
// it. Rows the application deletes while a batch copies them are handled by
// settling the chunk (settle.ts). The copy takes no row locks on old: the
// application never waits for the backfill there. See
// docs/backfill-and-verify.md for the races and why this order is safe.
import type pg from 'pg';
import { type KeyColumn, keyList, keyRange, keyText } from '../pg/keys.ts';
import type { CompiledMapping } from '../rules/mapping.ts';
import { qualified, upsertSql } from '../rules/rowsql.ts';
import { SCHEMA } from './checkpoint.ts';

export interface BatchStatements {
  /** [lo, hi, limit] -> { last: text[], n } or no row when the range is empty. */
  boundaryFrom: string;
  /** [hi, limit]: the same from the start of the key space. */
  boundaryStart: string;
  /** [lo, upper, mapping, chunk_no] -> { scanned, inserted, checkpointed }. */
  copyFrom: string;
  /** [upper, mapping, chunk_no]. */
  copyStart: string;
}

export function batchStatements(m: CompiledMapping, keys: KeyColumn[]): BatchStatements {
  const old = qualified(m.old);
  const order = keyList(keys, 'old');
  const desc = keys.map((k) => `"${k.oldColumn.replaceAll('"', '""')}" DESC`).join(', ');
  // With a lower bound the parameters are $1 lo, $2.., without it they shift down by one.
  const boundary = (withLo: boolean) => {
    const p = withLo ? 1 : 0;
    return `SELECT ${keyText(keys, 'old')} AS last, count(*) OVER ()::int AS n
       FROM (SELECT ${order} FROM ${old}
              WHERE ${keyRange(keys, 'old', withLo ? 1 : undefined, p + 1)}
              ORDER BY ${order} LIMIT $${p + 2}) AS sy_keys
      ORDER BY ${desc} LIMIT 1`;
  };
  const copy = (withLo: boolean) => {
    const p = withLo ? 1 : 0;
    return `WITH sy_batch AS MATERIALIZED (
       SELECT * FROM ${old} WHERE ${keyRange(keys, 'old', withLo ? 1 : undefined, p + 1)}
     ), sy_ins AS (
       ${upsertSql(m, 'SELECT * FROM sy_batch', 'nothing')} RETURNING 1
     ), sy_ckpt AS (
       UPDATE ${SCHEMA}.backfill_chunks
          SET cursor = $${p + 1}::text[],
              rows_scanned = rows_scanned + (SELECT count(*) FROM sy_batch),
              rows_inserted = rows_inserted + (SELECT count(*) FROM sy_ins),
              batches = batches + 1, updated_at = now()
        WHERE mapping = $${p + 2} AND chunk_no = $${p + 3} AND owner_pid = pg_backend_pid()
       RETURNING 1
     )
     SELECT (SELECT count(*) FROM sy_batch)::int AS scanned, (SELECT count(*) FROM sy_ins)::int AS inserted,
            (SELECT count(*) FROM sy_ckpt)::int AS checkpointed`;
  };
  return {
    boundaryFrom: boundary(true),
    boundaryStart: boundary(false),
    copyFrom: copy(true),
    copyStart: copy(false),
  };
}

export interface BoundaryResult {
  last: string[];
  n: number;
}

export async function nextBoundary(
  c: pg.Client,
  s: BatchStatements,
  lo: string[] | null,
  hi: string[],
  limit: number,
): Promise<BoundaryResult | undefined> {
  const r = lo ? await c.query(s.boundaryFrom, [lo, hi, limit]) : await c.query(s.boundaryStart, [hi, limit]);
  return r.rows[0];
}

export interface CopyResult {
  scanned: number;
  inserted: number;
  checkpointed: number;
}

export async function copyRange(
  c: pg.Client,
  s: BatchStatements,
  lo: string[] | null,
  upper: string[],
  mapping: string,
  chunkNo: number,
): Promise<CopyResult> {
  const r = lo
    ? await c.query(s.copyFrom, [lo, upper, mapping, chunkNo])
    : await c.query(s.copyStart, [upper, mapping, chunkNo]);
  return r.rows[0];
}

/**
 * Batch size that steers toward a target duration: scale by target/actual,
 * at most x2 or /2 per step, within [min, max].
 */
export class BatchSizer {
  size: number;

  constructor(
    initial: number,
    private readonly targetMs: number,
    private readonly min = 50,
    private readonly max = 50_000,
  ) {
    this.size = Math.max(min, Math.min(max, initial));
  }

  observe(rows: number, ms: number): void {
    // A short final batch says nothing about the speed of a full one.
    if (rows < this.size / 2 || ms <= 0) return;
    const factor = Math.max(0.5, Math.min(2, this.targetMs / ms));
    this.size = Math.round(Math.max(this.min, Math.min(this.max, this.size * factor)));
  }

  /** After a timeout: halve, so the retry holds its locks for less time. */
  shrink(): void {
    this.size = Math.max(this.min, Math.floor(this.size / 2));
  }
}

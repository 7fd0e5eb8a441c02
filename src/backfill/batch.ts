// One backfill batch is one statement, one round trip, one transaction:
//
//   sy_upper  the key of the limit-th old row after the cursor (an index-only
//             read with OFFSET), or the chunk's end when fewer rows are left:
//             it fixes the batch's key range (cursor, upper];
//   sy_write  inserts up(row) for the old rows of that range into new, except
//             those whose key new already has; for a column migration inside
//             one table, sets the new columns of the range's rows that are
//             not up(row) yet (columns-sql.ts);
//   sy_ckpt   moves the chunk's cursor to upper, so the checkpoint commits
//             with exactly the rows it describes.
//
// The insert never overwrites a row of new: a row already there was put there
// by the dual-write, which is always at least as fresh as the batch's read.
// The fast form skips keys new has in the statement's snapshot (an anti-join
// over the same key range) and is a plain INSERT, which costs the same as the
// single INSERT ... SELECT; ON CONFLICT DO NOTHING costs 1.6-4x more per row
// (speculative insertion). A mirrored insert that commits after the snapshot
// makes the plain INSERT fail with a unique violation: then nothing was
// written, and the same batch runs again in the ON CONFLICT DO NOTHING form.
// Either way an existing row is left as it is. Rows the application deletes
// while a batch copies them are handled by settling the chunk (settle.ts). The
// copy takes no row locks on old: the application never waits for the
// backfill there. See docs/backfill-and-verify.md for the races and why this
// order is safe. A column migration's UPDATE needs none of this: Postgres
// re-reads a row changed concurrently before updating it, so it never writes
// up() of a stale version, and it never meets a key the dual-write inserted.
import type pg from 'pg';
import { quoteIdent } from '../pg/ident.ts';
import { type KeyColumn, keyList, keyRange, keyRow, keyText, type Side } from '../pg/keys.ts';
import { fillColumnsSql } from '../rules/columns-sql.ts';
import type { CompiledMapping } from '../rules/mapping.ts';
import { OLD_ROW_ALIAS, qualified, upSelect, upsertSql } from '../rules/rowsql.ts';
import { SCHEMA } from './checkpoint.ts';

export interface BatchStatements {
  /** [lo, hi, limit, mapping, chunk_no] -> { upper, full, scanned, inserted, checkpointed }. */
  copyFrom: string;
  /** [hi, limit, mapping, chunk_no]: the same from the start of the key space. */
  copyStart: string;
  /**
   * The same two, with ON CONFLICT DO NOTHING: after a unique violation of the
   * fast form. Absent for a column migration, whose UPDATE inserts no key.
   */
  copyFromOnConflict?: string;
  copyStartOnConflict?: string;
}

/** The key of old cast to new's key types: what the insert would store in new's key. */
function oldKeyAsNew(keys: KeyColumn[], alias: string): string {
  const parts = keys.map((k) => `${alias}.${quoteIdent(k.oldColumn)}::${k.newType}`);
  return keys.length > 1 ? `(${parts.join(', ')})` : parts[0];
}

/** `(a, b) <= ((upper)[1]::t1, (upper)[2]::t2)`: a key bound from a text[] expression. */
function keyAtMost(keys: KeyColumn[], side: Side, alias: string, upper: string): string {
  const parts = keys.map((k, i) => `(${upper})[${i + 1}]::${side === 'old' ? k.oldType : k.newType}`);
  return `${keyRow(keys, side, alias)} <= ${keys.length > 1 ? `(${parts.join(', ')})` : parts[0]}`;
}

export function batchStatements(m: CompiledMapping, keys: KeyColumn[]): BatchStatements {
  const old = qualified(m.old);
  const neu = qualified(m.new);
  const build = (withLo: boolean, onConflict: boolean) => {
    // Parameters: [$1 lo,] hi, limit, mapping, chunk_no.
    const p = withLo ? 1 : 0;
    const lo = withLo ? 1 : undefined;
    const hi = p + 1;
    const limit = `$${p + 2}`;
    const upper = `(SELECT k FROM sy_upper)`;
    const lower = lo !== undefined ? `${keyRange(keys, 'old', lo, undefined, 'sy_src')} AND ` : '';
    const newLower = lo !== undefined ? `${keyRange(keys, 'new', lo, undefined, 'sy_n')} AND ` : '';
    const write = () => {
      if (m.sameTable) {
        const own = lo !== undefined ? `${keyRange(keys, 'old', lo, undefined, OLD_ROW_ALIAS)} AND ` : '';
        return fillColumnsSql(m, `${own}${keyAtMost(keys, 'old', OLD_ROW_ALIAS, upper)}`);
      }
      const source = `SELECT sy_src.* FROM ${old} AS sy_src
        WHERE ${lower}${keyAtMost(keys, 'old', 'sy_src', upper)}
          AND NOT EXISTS (SELECT 1 FROM ${neu} AS sy_n
                           WHERE ${keyRow(keys, 'new', 'sy_n')} = ${oldKeyAsNew(keys, 'sy_src')}
                             AND ${newLower}${keyAtMost(keys, 'new', 'sy_n', upper)})`;
      const cols = m.up.map((u) => quoteIdent(u.column)).join(', ');
      return onConflict
        ? upsertSql(m, source, 'nothing')
        : `INSERT INTO ${neu} (${cols}) ${upSelect(m, source)}`;
    };
    return `WITH sy_bound AS MATERIALIZED (
       SELECT (SELECT ${keyText(keys, 'old')} FROM ${old}
                WHERE ${keyRange(keys, 'old', lo, hi)}
                ORDER BY ${keyList(keys, 'old')} OFFSET ${limit}::int - 1 LIMIT 1) AS k
     ), sy_upper AS MATERIALIZED (
       SELECT coalesce(k, $${hi}::text[]) AS k, k IS NOT NULL AS is_full,
              -- A full batch has exactly limit rows; a short one (the chunk's end) is counted.
              CASE WHEN k IS NOT NULL THEN ${limit}::int
                   ELSE (SELECT count(*) FROM ${old} WHERE ${keyRange(keys, 'old', lo, hi)})::int END AS scanned
         FROM sy_bound
     ), sy_write AS (
       ${write()} RETURNING 1
     ), sy_ckpt AS (
       UPDATE ${SCHEMA}.backfill_chunks
          SET cursor = ${upper},
              rows_scanned = rows_scanned + (SELECT scanned FROM sy_upper),
              rows_inserted = rows_inserted + (SELECT count(*) FROM sy_write),
              batches = batches + 1, updated_at = now()
        WHERE mapping = $${p + 3} AND chunk_no = $${p + 4} AND owner_pid = pg_backend_pid()
       RETURNING 1
     )
     SELECT ${upper} AS upper, (SELECT is_full FROM sy_upper) AS full, (SELECT scanned FROM sy_upper) AS scanned,
            (SELECT count(*) FROM sy_write)::int AS inserted, (SELECT count(*) FROM sy_ckpt)::int AS checkpointed`;
  };
  const fast = { copyFrom: build(true, false), copyStart: build(false, false) };
  if (m.sameTable) return fast;
  return { ...fast, copyFromOnConflict: build(true, true), copyStartOnConflict: build(false, true) };
}

export interface CopyResult {
  /** The batch's upper key: the chunk's cursor from now on. */
  upper: string[];
  /** False when the batch reached the chunk's end. */
  full: boolean;
  scanned: number;
  inserted: number;
  checkpointed: number;
  /** The fast form met a concurrently inserted key and the batch ran again with ON CONFLICT DO NOTHING. */
  conflicted: boolean;
}

const UNIQUE_VIOLATION = '23505';

/** Copies the next batch of at most `limit` rows after `lo` (null: the key space's start) up to `hi`. */
export async function copyBatch(
  c: pg.Client,
  s: BatchStatements,
  lo: string[] | null,
  hi: string[],
  limit: number,
  mapping: string,
  chunkNo: number,
): Promise<CopyResult> {
  const run = async (onConflict: boolean) => {
    const from = (onConflict ? s.copyFromOnConflict : undefined) ?? s.copyFrom;
    const start = (onConflict ? s.copyStartOnConflict : undefined) ?? s.copyStart;
    const r = lo
      ? await c.query(from, [lo, hi, limit, mapping, chunkNo])
      : await c.query(start, [hi, limit, mapping, chunkNo]);
    return { ...r.rows[0], conflicted: onConflict } as CopyResult;
  };
  try {
    return await run(false);
  } catch (e) {
    // A conflict on another unique index of new fails again in the ON CONFLICT (key) form, as before.
    if ((e as { code?: string; constraint?: string }).code !== UNIQUE_VIOLATION) throw e;
    if (!s.copyFromOnConflict) throw e;
    return await run(true);
  }
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
    // Above the default chunk (50,000 rows): a chunk that fits in the target time is one
    // batch, not a full batch plus a remainder.
    private readonly max = 500_000,
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

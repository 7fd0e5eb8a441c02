// Planning a backfill run: fix the key range at the start (rows created later
// are the dual-write's job, so a busy table cannot keep the run going
// forever), estimate its size, and cut it into chunks that workers claim.
import type pg from 'pg';
import { type KeyColumn, keyList, keyRange, keyText } from '../pg/keys.ts';
import type { CompiledMapping } from '../rules/mapping.ts';
import { qualified } from '../rules/rowsql.ts';
import { fingerprint, type RunRow, readRun, SCHEMA } from './checkpoint.ts';

export interface KeySpace {
  /** Smallest and largest key of old at planning time; null when old is empty. */
  lowest: string[] | null;
  highest: string[] | null;
  estimatedRows: number;
}

export async function measureKeySpace(
  c: pg.Client,
  m: CompiledMapping,
  keys: KeyColumn[],
): Promise<KeySpace> {
  const old = qualified(m.old);
  const order = keyList(keys, 'old');
  const desc = keys.map((k) => `"${k.oldColumn.replaceAll('"', '""')}" DESC`).join(', ');
  const lo = await c.query(`SELECT ${keyText(keys, 'old')} AS k FROM ${old} ORDER BY ${order} LIMIT 1`);
  const hi = await c.query(`SELECT ${keyText(keys, 'old')} AS k FROM ${old} ORDER BY ${desc} LIMIT 1`);
  return {
    lowest: lo.rows[0]?.k ?? null,
    highest: hi.rows[0]?.k ?? null,
    estimatedRows: hi.rows[0] ? await estimateRows(c, old) : 0,
  };
}

/** The planner's estimate scaled to the current size, or an exact count when the table was never analyzed. */
async function estimateRows(c: pg.Client, old: string): Promise<number> {
  const r = await c.query(
    `SELECT reltuples::float8 AS tuples, relpages::float8 AS pages,
            (pg_relation_size(oid) / current_setting('block_size')::int)::float8 AS now_pages
       FROM pg_class WHERE oid = $1::regclass`,
    [old],
  );
  const { tuples, pages, now_pages } = r.rows[0];
  if (tuples > 0 && pages > 0) return Math.max(1, Math.round((tuples / pages) * now_pages));
  const n = await c.query(`SELECT count(*)::float8 AS n FROM ${old}`);
  return n.rows[0].n;
}

export function chunkCount(estimatedRows: number, chunkRows: number, workers: number): number {
  // Enough chunks that every worker has several to take, none so small that claiming dominates.
  const bySize = Math.ceil(estimatedRows / chunkRows);
  const byWorkers = Math.min(workers * 4, Math.ceil(estimatedRows / 1000));
  return Math.max(1, bySize, byWorkers);
}

/**
 * Chunk boundaries from a page sample of the keys (TABLESAMPLE SYSTEM reads
 * only the sampled pages). Chunks need not be equal: they are units of work,
 * not of correctness; every key in (-inf, highest] lies in exactly one.
 */
export async function sampleBoundaries(
  c: pg.Client,
  m: CompiledMapping,
  keys: KeyColumn[],
  highest: string[],
  chunks: number,
): Promise<string[][]> {
  if (chunks <= 1) return [highest];
  const old = qualified(m.old);
  const p = await c.query(
    `SELECT greatest(1, pg_relation_size($1::regclass) / current_setting('block_size')::int)::float8 AS pages`,
    [old],
  );
  const pages: number = p.rows[0].pages;
  // About 16 sampled pages per chunk keeps the quantiles close to even on clustered keys.
  const pct = Math.min(100, (100 * chunks * 16) / pages);
  const sample = await c.query(
    `SELECT ${keyText(keys, 'old')} AS k FROM ${old} TABLESAMPLE SYSTEM (${pct.toFixed(6)})
      WHERE ${keyRange(keys, 'old', undefined, 1)} ORDER BY ${keyList(keys, 'old')}`,
    [highest],
  );
  const rows: string[][] = sample.rows.map((r) => r.k);
  const bounds: string[][] = [];
  for (let i = 1; i < chunks; i++) {
    const b = rows[Math.floor((i * rows.length) / chunks)];
    if (b === undefined) continue;
    const prev = bounds[bounds.length - 1];
    if (prev && JSON.stringify(prev) === JSON.stringify(b)) continue;
    bounds.push(b);
  }
  // The sample comes back in key order, so bounds ascend; the last chunk ends at the fixed upper bound.
  if (bounds.length > 0 && JSON.stringify(bounds[bounds.length - 1]) === JSON.stringify(highest))
    bounds.pop();
  bounds.push(highest);
  return bounds;
}

export interface PlanOptions {
  chunkRows: number;
  workers: number;
}

export type PlanOutcome =
  | { kind: 'created'; run: RunRow }
  | { kind: 'resumed'; run: RunRow }
  | { kind: 'complete'; run: RunRow };

export class PlanError extends Error {
  override name = 'PlanError';
}

/**
 * Creates the run (under an advisory lock, so concurrent starters agree on
 * one plan) or joins the existing one.
 */
export async function planOrResume(
  c: pg.Client,
  m: CompiledMapping,
  keys: KeyColumn[],
  opts: PlanOptions,
): Promise<PlanOutcome> {
  await c.query('BEGIN');
  try {
    await c.query(`SELECT pg_advisory_xact_lock(hashtext('switchyard.backfill:' || $1))`, [m.name]);
    const existing = await readRun(c, m.name);
    if (existing) {
      await c.query('COMMIT');
      if (existing.fingerprint !== fingerprint(m)) {
        throw new PlanError(
          `backfill of ${m.name} was planned for a different definition of the mapping (old/new/key/up changed); rerun with --restart to start over`,
        );
      }
      return { kind: existing.finished_at ? 'complete' : 'resumed', run: existing };
    }
    const space = await measureKeySpace(c, m, keys);
    const bounds = space.highest
      ? await sampleBoundaries(
          c,
          m,
          keys,
          space.highest,
          chunkCount(space.estimatedRows, opts.chunkRows, opts.workers),
        )
      : [];
    await c.query(
      `INSERT INTO ${SCHEMA}.backfill_runs (mapping, fingerprint, old_table, new_table, key_columns, upper_key, estimated_rows, chunks, finished_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, CASE WHEN $8 = 0 THEN now() END)`,
      [
        m.name,
        fingerprint(m),
        qualified(m.old),
        qualified(m.new),
        keys.map((k) => k.oldColumn),
        space.highest,
        space.estimatedRows,
        bounds.length,
      ],
    );
    if (bounds.length > 0) {
      await c.query(
        `INSERT INTO ${SCHEMA}.backfill_chunks (mapping, chunk_no, lo, hi)
         SELECT $1, n, lag(hi) OVER (ORDER BY n), hi
           FROM (SELECT n::int, ARRAY(SELECT jsonb_array_elements_text(k)) AS hi
                   FROM jsonb_array_elements($2::jsonb) WITH ORDINALITY AS b(k, n)) AS s`,
        [m.name, JSON.stringify(bounds)],
      );
    }
    const run = (await readRun(c, m.name))!;
    await c.query('COMMIT');
    return { kind: bounds.length === 0 ? 'complete' : 'created', run };
  } catch (e) {
    await c.query('ROLLBACK').catch(() => {});
    throw e;
  }
}

// Verify: walk the old table in key order, chunk by chunk, inside one
// REPEATABLE READ READ ONLY transaction (one snapshot, plain reads: writers
// are never blocked). Each chunk is compared by count and an order-independent
// hash of its rows (bit_xor of 64-bit row hashes) on both sides; only chunks
// that differ are drilled into, with a full join on the key that names every
// missing, extra and different row. A column migration inside one table is
// compared the same way, its rows read twice: up(row) with the key, against
// the key and the stored new columns (only "different" can occur).
import type pg from 'pg';
import type { Logger } from '../log.ts';
import { metrics } from '../metrics.ts';
import { connect, sleep, sqlState } from '../pg/connect.ts';
import { type KeyColumn, keyObject, keyRange } from '../pg/keys.ts';
import { columnsAsRows } from '../rules/columns-sql.ts';
import { keyColumns } from '../rules/key-columns.ts';
import type { CompiledMapping } from '../rules/mapping.ts';
import { qualified } from '../rules/rowsql.ts';
import { repairKeys } from './repair.ts';
import { diffSql, keyIn, newRangeSql, oldChunkSql } from './sql.ts';

export type DriftKind = 'missing' | 'extra' | 'different';

export interface Drift {
  kind: DriftKind;
  /** New-table key, column -> value as text. */
  key: Record<string, string>;
  keyValues: string[];
  /** up(old) as the new table would store it; absent for extra rows. */
  expected?: Record<string, unknown>;
  /** The new table's row; absent for missing rows. */
  actual?: Record<string, unknown>;
  /** Columns whose values differ (different rows only). */
  columns?: string[];
  /** Set by --repair: true when a re-check after the repair found the row in agreement. */
  repaired?: boolean;
}

export interface VerifyOptions {
  chunkRows: number;
  repair: boolean;
  lockTimeoutMs: number;
  statementTimeoutMs: number;
}

export const DEFAULT_VERIFY_OPTIONS: VerifyOptions = {
  chunkRows: 10_000,
  repair: false,
  lockTimeoutMs: 5000,
  statementTimeoutMs: 300_000,
};

export interface VerifyResult {
  oldRows: number;
  chunks: number;
  chunksDiffer: number;
  drift: Record<DriftKind, number>;
  repaired: number;
  /** Rows still in disagreement after --repair re-checked them. */
  unrepaired: number;
  elapsedMs: number;
}

export interface VerifyHooks {
  onDrift(d: Drift): void | Promise<void>;
  onChunk?(r: Readonly<VerifyResult>): void;
}

function classify(
  row: { k: string[]; old_row: Record<string, unknown> | null; new_row: Record<string, unknown> | null },
  keys: KeyColumn[],
): Drift {
  const kind: DriftKind = !row.new_row ? 'missing' : !row.old_row ? 'extra' : 'different';
  const d: Drift = { kind, key: keyObject(keys, row.k), keyValues: row.k };
  if (row.old_row) d.expected = row.old_row;
  if (row.new_row) d.actual = row.new_row;
  if (row.old_row && row.new_row) {
    d.columns = Object.keys(row.old_row).filter(
      (c) => JSON.stringify(row.old_row![c]) !== JSON.stringify(row.new_row![c]),
    );
  }
  return d;
}

export async function verifyMapping(
  m: CompiledMapping,
  clientConfig: pg.ClientConfig,
  opts: VerifyOptions,
  log: Logger,
  hooks: VerifyHooks,
): Promise<VerifyResult> {
  const started = Date.now();
  const keys = keyColumns(m);
  // What the row comparison reads; repair writes through the mapping itself.
  const rows = m.sameTable ? columnsAsRows(m) : m;
  const labels = { mapping: m.name };
  const result: VerifyResult = {
    oldRows: 0,
    chunks: 0,
    chunksDiffer: 0,
    drift: { missing: 0, extra: 0, different: 0 },
    repaired: 0,
    unrepaired: 0,
    elapsedMs: 0,
  };
  const settings = { lock_timeout: opts.lockTimeoutMs, statement_timeout: opts.statementTimeoutMs };
  const snap = await connect(clientConfig, settings);
  const fixer = opts.repair ? await connect(clientConfig, settings) : undefined;
  const oldFrom = oldChunkSql(rows, keys, true);
  const oldStart = oldChunkSql(rows, keys, false);
  try {
    await snap.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    let lo: string[] | null = null;
    for (;;) {
      const o = (
        lo ? await snap.query(oldFrom, [lo, opts.chunkRows]) : await snap.query(oldStart, [opts.chunkRows])
      ).rows[0] as { n: number; h: string; last: string[] | null };
      // The last chunk is open-ended, so new rows beyond every old key are compared too.
      const hi = o.n < opts.chunkRows ? null : o.last;
      const params = [lo, hi].filter((p) => p !== null);
      const n = (await snap.query(newRangeSql(rows, keys, lo !== null, hi !== null), params)).rows[0] as {
        n: number;
        h: string;
      };
      result.chunks++;
      result.oldRows += o.n;
      const same = o.n === n.n && o.h === n.h;
      metrics.verifyChunks.inc({ ...labels, result: same ? 'match' : 'differ' });
      if (!same) {
        result.chunksDiffer++;
        const loN = lo ? 1 : undefined;
        const hiN = hi ? (lo ? 2 : 1) : undefined;
        const diff = await snap.query(
          diffSql(rows, keys, keyRange(keys, 'old', loN, hiN), keyRange(keys, 'new', loN, hiN)),
          params,
        );
        const found = diff.rows.map((r) => classify(r, keys));
        log.debug({ lo, hi, old: o.n, new: n.n, drift: found.length }, 'chunk differs');
        if (fixer && found.length > 0) {
          const still = await repairAndRecheck(fixer, m, rows, keys, found, log);
          for (const d of found) {
            d.repaired = !still.has(JSON.stringify(d.keyValues));
            if (d.repaired) result.repaired++;
            else result.unrepaired++;
          }
          metrics.verifyRepaired.inc(labels, found.filter((d) => d.repaired).length);
        }
        for (const d of found) {
          result.drift[d.kind]++;
          metrics.verifyDrift.inc({ ...labels, kind: d.kind });
          await hooks.onDrift(d);
        }
      }
      hooks.onChunk?.(result);
      if (hi === null) break;
      lo = hi;
    }
    await snap.query('COMMIT');
  } finally {
    result.elapsedMs = Date.now() - started;
    await snap.end().catch(() => {});
    await fixer?.end().catch(() => {});
  }
  log.debug({ table: qualified(m.old), ...result }, 'verify finished');
  return result;
}

/**
 * Repairs the keys, then compares exactly those keys again in a new snapshot.
 * Returns the keys (as JSON text) that still differ.
 */
async function repairAndRecheck(
  c: pg.Client,
  m: CompiledMapping,
  rows: CompiledMapping,
  keys: KeyColumn[],
  found: Drift[],
  log: Logger,
): Promise<Set<string>> {
  const keySet = found.map((d) => d.keyValues);
  for (let attempt = 1; ; attempt++) {
    try {
      await repairKeys(c, m, keys, keySet);
      break;
    } catch (e) {
      // A concurrent write touched one of the rows after the repair's snapshot: try again on fresh data.
      if (sqlState(e) !== '40001' && sqlState(e) !== '40P01' && sqlState(e) !== '55P03') throw e;
      if (attempt >= 20) throw e;
      log.warn({ attempt, sqlstate: sqlState(e) }, 'repair conflicted with a concurrent write: retrying');
      await sleep(Math.min(2000, 20 * 2 ** attempt));
    }
  }
  const json = JSON.stringify(keySet);
  const again = await c.query(diffSql(rows, keys, keyIn(keys, 'old', 1), keyIn(keys, 'new', 1)), [json]);
  return new Set(again.rows.map((r) => JSON.stringify(r.k)));
}

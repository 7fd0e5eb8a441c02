// Statements verify and repair run. The old side is always up(old) cast to
// the new column types (upTypedSelect) and the new side the same columns of
// new, so "equal" means "equal to what the mirror or backfill would store".

import { quoteIdent } from '../pg/ident.ts';
import { type KeyColumn, keyList, keyRange, keyText } from '../pg/keys.ts';
import type { CompiledMapping } from '../rules/mapping.ts';
import { newUpColumnsSelect, qualified, upRowHashExpr, upTypedSelect } from '../rules/rowsql.ts';

/** Old side of one chunk: the next `limit` old rows after lo, their count, hash and last key. */
export function oldChunkSql(m: CompiledMapping, keys: KeyColumn[], withLo: boolean): string {
  const old = qualified(m.old);
  const order = keyList(keys, 'old');
  const desc = keys.map((k) => `${quoteIdent(k.oldColumn)} DESC`).join(', ');
  const lo = withLo ? 1 : undefined;
  const limit = withLo ? '$2' : '$1';
  return `WITH sy_chunk AS MATERIALIZED (
      SELECT * FROM ${old} WHERE ${keyRange(keys, 'old', lo)} ORDER BY ${order} LIMIT ${limit}
    )
    SELECT count(*)::int AS n, coalesce(bit_xor(${upRowHashExpr(m, 'u')}), 0)::text AS h,
           (SELECT ${keyText(keys, 'old')} FROM sy_chunk ORDER BY ${desc} LIMIT 1) AS last
      FROM (${upTypedSelect(m, 'SELECT * FROM sy_chunk')}) AS u`;
}

/** New side of the key range (lo, hi]: count and hash. Parameters: lo and/or hi as text[]. */
export function newRangeSql(m: CompiledMapping, keys: KeyColumn[], withLo: boolean, withHi: boolean): string {
  const lo = withLo ? 1 : undefined;
  const hi = withHi ? (withLo ? 2 : 1) : undefined;
  return `SELECT count(*)::int AS n, coalesce(bit_xor(${upRowHashExpr(m, 'u')}), 0)::text AS h
      FROM (${newUpColumnsSelect(m, keyRange(keys, 'new', lo, hi))}) AS u`;
}

/**
 * Rows that differ between up(old) and new where the conditions hold, keyed by
 * the new key as text: one row per missing, extra or different key, with both
 * row images as JSON.
 */
export function diffSql(m: CompiledMapping, keys: KeyColumn[], oldWhere: string, newWhere: string): string {
  const newKey = `ARRAY[${keys.map((k) => `u.${quoteIdent(k.newColumn)}::text`).join(', ')}]`;
  const side = (sql: string) =>
    `SELECT ${newKey} AS k, ${upRowHashExpr(m, 'u')} AS h, to_jsonb(u) AS j FROM (${sql}) AS u`;
  return `SELECT coalesce(o.k, n.k) AS k, o.j AS old_row, n.j AS new_row
      FROM (${side(upTypedSelect(m, `SELECT * FROM ${qualified(m.old)} WHERE ${oldWhere}`))}) AS o
      FULL JOIN (${side(newUpColumnsSelect(m, newWhere))}) AS n ON o.k = n.k
     WHERE o.h IS DISTINCT FROM n.h OR o.k IS NULL OR n.k IS NULL
     ORDER BY 1`;
}

/** `(a, b) IN (SELECT k[1]::t1, k[2]::t2 FROM <keys in $n as JSON>)` on one side. */
export function keyIn(keys: KeyColumn[], side: 'old' | 'new', n: number, alias?: string): string {
  const prefix = alias ? `${alias}.` : '';
  const cols = keys.map((k) => prefix + quoteIdent(side === 'old' ? k.oldColumn : k.newColumn)).join(', ');
  const casts = keys.map((k, i) => `sy_k.k[${i + 1}]::${side === 'old' ? k.oldType : k.newType}`).join(', ');
  return `(${cols}) IN (SELECT ${casts} FROM ${keySetSource(n)})`;
}

/** The key set passed as $n, a JSON array of text arrays, as rows with one text[] column k. */
export function keySetSource(n: number): string {
  return `(SELECT ARRAY(SELECT jsonb_array_elements_text(e)) AS k FROM jsonb_array_elements($${n}::jsonb) AS e) AS sy_k`;
}

/** The key set $n as the new table's key columns, by name (for deleteOrphansSql). */
export function newKeySource(keys: KeyColumn[], n: number): string {
  const casts = keys.map((k, i) => `sy_k.k[${i + 1}]::${k.newType} AS ${quoteIdent(k.newColumn)}`).join(', ');
  return `SELECT ${casts} FROM ${keySetSource(n)}`;
}

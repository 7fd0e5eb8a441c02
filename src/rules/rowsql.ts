// The one place that says what "new = up(old)" means in SQL. The mirrored
// write, the backfill, verify and repair all build their statements here, so
// they can never disagree about how an old row becomes a new one.
import { quoteIdent } from '../sql/ident.ts';
import type { CompiledMapping, ResolvedTable } from './mapping.ts';

/** Alias under which the old row's columns are visible to the up expressions. */
export const OLD_ROW_ALIAS = 'sy_old';

export function qualified(t: ResolvedTable): string {
  return `${quoteIdent(t.schema)}.${quoteIdent(t.name)}`;
}

/** `SELECT up1 AS "c1", ... FROM (<source>) AS sy_old`; source yields rows with the old table's columns. */
export function upSelect(m: CompiledMapping, source: string): string {
  const cols = m.up.map((u) => `(${u.expr}) AS ${quoteIdent(u.column)}`).join(', ');
  return `SELECT ${cols} FROM (${source}) AS ${OLD_ROW_ALIAS}`;
}

/** The key expressions of up(old), in key order: `(expr) AS "k"`. */
export function upKeySelect(m: CompiledMapping, source: string): string {
  const byCol = new Map(m.up.map((u) => [u.column, u.expr]));
  const cols = m.key.map((k) => `(${byCol.get(k)}) AS ${quoteIdent(k)}`).join(', ');
  return `SELECT ${cols} FROM (${source}) AS ${OLD_ROW_ALIAS}`;
}

/**
 * Upserts up(source rows) into the new table. `update` overwrites the new row
 * (mirror, repair); `nothing` never touches an existing new row (backfill,
 * where the dual-write's row is always the fresher one).
 */
export function upsertSql(
  m: CompiledMapping,
  source: string,
  onConflict: 'update' | 'nothing' = 'update',
): string {
  const cols = m.up.map((u) => quoteIdent(u.column)).join(', ');
  const keyCols = m.key.map(quoteIdent).join(', ');
  const nonKey = m.up.filter((u) => !m.key.includes(u.column));
  const action =
    onConflict === 'nothing' || nonKey.length === 0
      ? 'DO NOTHING'
      : `DO UPDATE SET ${nonKey.map((u) => `${quoteIdent(u.column)} = EXCLUDED.${quoteIdent(u.column)}`).join(', ')}`;
  return `INSERT INTO ${qualified(m.new)} (${cols}) ${upSelect(m, source)} ON CONFLICT (${keyCols}) ${action}`;
}

/** Deletes from the new table the rows whose key is up(key) of the source rows. */
export function deleteByOldRowsSql(m: CompiledMapping, source: string): string {
  const keyCols = m.key.map(quoteIdent).join(', ');
  return `DELETE FROM ${qualified(m.new)} WHERE (${keyCols}) IN (${upKeySelect(m, source)})`;
}

/**
 * up(source rows) with every column cast to the new column's type, so that it
 * reads exactly as the row the upsert would store (verify compares it with new).
 */
export function upTypedSelect(m: CompiledMapping, source: string): string {
  const types = new Map(m.newColumns.map((c) => [c.name, c.type]));
  const cols = m.up
    .map((u) => `(${u.expr})::${types.get(u.column) ?? 'text'} AS ${quoteIdent(u.column)}`)
    .join(', ');
  return `SELECT ${cols} FROM (${source}) AS ${OLD_ROW_ALIAS}`;
}

/** The new table's up columns, in up order: what upTypedSelect is compared with. */
export function newUpColumnsSelect(m: CompiledMapping, where = 'true'): string {
  const cols = m.up.map((u) => quoteIdent(u.column)).join(', ');
  return `SELECT ${cols} FROM ${qualified(m.new)} WHERE ${where}`;
}

/** 64-bit hash of one row of up columns visible under `alias` (text form of the row, NULLs distinct from ''). */
export function upRowHashExpr(m: CompiledMapping, alias: string): string {
  const cols = m.up.map((u) => `${alias}.${quoteIdent(u.column)}`).join(', ');
  return `hashtextextended(ROW(${cols})::text, 0)`;
}

/** Alias of the new table in deleteOrphansWhereSql's condition. */
export const NEW_ROW_ALIAS = 'sy_new';

/**
 * Deletes the new rows matching `where` (over the new table, aliased sy_new)
 * that have no old row whose up(key) is their key: rows up(old) cannot explain.
 * `oldWhere` may narrow the old rows looked at to those that can match (the
 * same key range), so Postgres can merge two index ranges instead of probing.
 */
export function deleteOrphansWhereSql(m: CompiledMapping, where: string, oldWhere = 'true'): string {
  const match = m.key
    .map(quoteIdent)
    .map((k) => `sy_up.${k} = ${NEW_ROW_ALIAS}.${k}`)
    .join(' AND ');
  const oldRows = `SELECT * FROM ${qualified(m.old)} WHERE ${oldWhere}`;
  return (
    `DELETE FROM ${qualified(m.new)} AS ${NEW_ROW_ALIAS} WHERE (${where}) ` +
    `AND NOT EXISTS (SELECT 1 FROM (${upKeySelect(m, oldRows)}) AS sy_up WHERE ${match})`
  );
}

/**
 * Deletes the new rows whose key is among `keySource` (a query yielding the
 * new key columns by name) and that have no old row whose up(key) matches.
 */
export function deleteOrphansSql(m: CompiledMapping, keySource: string): string {
  const keyCols = m.key.map(quoteIdent).map((k) => `${NEW_ROW_ALIAS}.${k}`);
  return deleteOrphansWhereSql(m, `(${keyCols.join(', ')}) IN (${keySource})`);
}

/**
 * Deletes the new rows left behind when a write moved old rows to other keys:
 * keys of up(pre-images) that no up(post-image) still has.
 */
export function deleteMovedKeysSql(m: CompiledMapping, preSource: string, postSource: string): string {
  const keyCols = m.key.map(quoteIdent).join(', ');
  return (
    `DELETE FROM ${qualified(m.new)} WHERE (${keyCols}) IN ` +
    `(${upKeySelect(m, preSource)} EXCEPT ${upKeySelect(m, postSource)})`
  );
}

// What "new columns = up(row)" means in SQL for a column migration inside one
// table (a mapping with sameTable). The backfill's batches, verify and repair
// all build their statements here, so they agree on which rows are out of step.
//
// A row is in step when the text form of its new columns equals the text form
// of up(row) cast to those columns' types: the notion verify's row hashes use
// (rowsql.ts upRowHashExpr). Plain `IS DISTINCT FROM` would call numeric 1.0
// and 1.00 equal, so a row verify reports could never be filled or repaired.
import { quoteIdent } from '../pg/ident.ts';
import type { ColumnExpr, CompiledMapping } from './mapping.ts';
import { OLD_ROW_ALIAS, qualified } from './rowsql.ts';

function typeOf(m: CompiledMapping, column: string): string {
  return m.newColumns.find((c) => c.name === column)?.type ?? 'text';
}

/** up(row) for each new column, cast to the column's type, over the row visible as sy_old. */
function typedUp(m: CompiledMapping): { column: string; value: string }[] {
  return m.up.map((u) => ({ column: quoteIdent(u.column), value: `(${u.expr})::${typeOf(m, u.column)}` }));
}

/** True when the row visible as sy_old has new columns that are not up(row). */
export function columnsDifferSql(m: CompiledMapping): string {
  const cols = typedUp(m);
  const stored = cols.map((c) => `${OLD_ROW_ALIAS}.${c.column}`).join(', ');
  const wanted = cols.map((c) => c.value).join(', ');
  return `ROW(${stored})::text IS DISTINCT FROM ROW(${wanted})::text`;
}

/**
 * Sets the new columns to up(row) in the rows matching `where` (over the
 * table aliased sy_old, so up expressions see the row's columns unqualified
 * or as sy_old.c) whose new columns differ: rows already in step are not
 * rewritten (no dead tuple, no WAL, no trigger). A row a concurrent write
 * changes is re-read by Postgres before it is updated (READ COMMITTED), so the
 * value set is up() of the row's latest version, never of a stale one.
 */
export function fillColumnsSql(m: CompiledMapping, where: string): string {
  const set = typedUp(m)
    .map((c) => `${c.column} = ${c.value}`)
    .join(', ');
  return `UPDATE ${qualified(m.new)} AS ${OLD_ROW_ALIAS} SET ${set} WHERE (${where}) AND ${columnsDifferSql(m)}`;
}

/**
 * The mapping as verify's row comparison reads it: up also yields the key
 * columns unchanged, so up(row) and the stored new columns are whole rows
 * with a key on both sides (rowsql.ts upTypedSelect, newUpColumnsSelect).
 */
export function columnsAsRows(m: CompiledMapping): CompiledMapping {
  const key: ColumnExpr[] = m.key.map((k) => ({ column: k, expr: quoteIdent(k) }));
  return { ...m, up: [...key, ...m.up.filter((u) => !m.key.includes(u.column))] };
}

/** The same columns seen from the old side: old columns = down(row) (verify --direction new-to-old). */
export function reversedColumns(m: CompiledMapping): CompiledMapping {
  return { ...m, up: m.down ?? [], down: m.up };
}

// The one place that says what "new = up(old)" means in SQL. The mirrored
// write, the backfill, verify and repair all build their statements here, so
// they can never disagree about how an old row becomes a new one.
import { createHash } from 'node:crypto';
import { quoteIdent } from '../pg/ident.ts';
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

/**
 * Schema of the mirror's delete-by-key helpers. Apart from the backfill's
 * `switchyard` schema on purpose: an operator who drops the backfill state
 * (DROP SCHEMA switchyard CASCADE) must not break live mirrored writes.
 */
export const HELPER_SCHEMA = 'switchyard_mirror';

/** Postgres truncates identifiers to 63 bytes; names are cut below that on a UTF-8 boundary. */
const MAX_IDENT_BYTES = 63;

function cutBytes(s: string, max: number): string {
  let out = '';
  for (const ch of s) {
    if (Buffer.byteLength(out + ch) > max) break;
    out += ch;
  }
  return out;
}

/**
 * Name of the function that deletes new rows by key (unquoted). It depends on
 * the new table and its key columns only, so mappings that share both share
 * one function. The hash keeps names unique where the readable part is cut or
 * ambiguous (schema "a_b" table "c" against schema "a" table "b_c").
 */
export function deleteKeysFunctionName(m: CompiledMapping): string {
  const id = JSON.stringify([m.new.schema, m.new.name, m.key]);
  const hash = createHash('sha256').update(id).digest('hex').slice(0, 8);
  const readable = cutBytes(`sy_delete_${m.new.schema}_${m.new.name}`, MAX_IDENT_BYTES - hash.length - 1);
  return `${readable}_${hash}`;
}

/** The delete-by-key function, schema-qualified and quoted. */
export function deleteKeysFunction(m: CompiledMapping): string {
  return `${quoteIdent(HELPER_SCHEMA)}.${quoteIdent(deleteKeysFunctionName(m))}`;
}

function sqlString(s: string): string {
  return `'${s.replace(/'/g, "''")}'`;
}

/**
 * Body of the delete-by-key function: `$1` is a jsonb array of objects, one
 * per key, named by the new key columns. `keyTypes` are the key columns'
 * format_type (schema-qualified where not in pg_catalog, so the body does not
 * depend on the caller's search_path). Being a VOLATILE plpgsql function, its
 * DELETE takes a fresh snapshot in READ COMMITTED: it sees new rows that
 * transactions the calling statement waited for have committed since the
 * statement started, which the statement itself cannot see.
 */
export function deleteKeysFunctionBody(m: CompiledMapping, keyTypes: readonly string[]): string {
  const defs = m.key.map((k, i) => `${quoteIdent(k)} ${keyTypes[i]}`).join(', ');
  const match = m.key.map((k) => `t.${quoteIdent(k)} = k.${quoteIdent(k)}`).join(' AND ');
  return [
    '',
    'DECLARE sy_n bigint;',
    'BEGIN',
    `  DELETE FROM ${qualified(m.new)} AS t USING pg_catalog.jsonb_to_recordset($1) AS k(${defs})`,
    `   WHERE ${match};`,
    '  GET DIAGNOSTICS sy_n = ROW_COUNT;',
    '  RETURN sy_n;',
    'END',
    '',
  ].join('\n');
}

/** CREATE OR REPLACE FUNCTION for deleteKeysFunctionBody (STRICT: no keys, no call). */
export function createDeleteKeysFunctionSql(m: CompiledMapping, body: string): string {
  let tag = '$sy$';
  for (let i = 0; body.includes(tag); i++) tag = `$sy${i}$`;
  return (
    `CREATE OR REPLACE FUNCTION ${deleteKeysFunction(m)}(jsonb) RETURNS bigint ` +
    `LANGUAGE plpgsql VOLATILE STRICT SECURITY INVOKER AS ${tag}${body}${tag}`
  );
}

/**
 * A query yielding one row: the delete-by-key function called with the keys
 * `keySource` yields (the new key columns by name), carried as jsonb and read
 * back by the function as the new key columns' types. No type name is written
 * here, so the statement does not depend on the session's search_path. No
 * keys: a NULL argument, and the STRICT function is not called.
 */
export function callDeleteKeysSql(m: CompiledMapping, keySource: string): string {
  const pairs = m.key.map((k) => `${sqlString(k)}, sy_k.${quoteIdent(k)}`).join(', ');
  return (
    `SELECT ${deleteKeysFunction(m)}((SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(${pairs})) ` +
    `FROM (${keySource}) AS sy_k)) AS n`
  );
}

/** Calls the delete-by-key function with up(key) of the source rows (a deleting write's images). */
export function callDeleteByOldRowsSql(m: CompiledMapping, source: string): string {
  return callDeleteKeysSql(m, upKeySelect(m, source));
}

/** Calls the delete-by-key function with the keys a key-moving write left behind (see deleteMovedKeysSql). */
export function callDeleteMovedKeysSql(m: CompiledMapping, preSource: string, postSource: string): string {
  return callDeleteKeysSql(m, `${upKeySelect(m, preSource)} EXCEPT ${upKeySelect(m, postSource)}`);
}

// The key that backfill and verify walk. The new table's key columns come
// from the mapping; each must be computed from one old column (`id: id`,
// `user_id: id`, `id: id::bigint`), so that walking the old table in the order
// of those old columns visits the new keys in the same order, and both tables
// can be cut into the same key ranges using their own indexes.
//
// Key values travel as text (their Postgres output form) and are cast back
// with the column's type: exact for every type whose text form round-trips.

import type { CompiledMapping } from '../rules/mapping.ts';
import { quoteIdent } from '../sql/ident.ts';

export interface KeyColumn {
  /** Key column of the new table. */
  newColumn: string;
  newType: string;
  /** The old column its up expression reads. */
  oldColumn: string;
  oldType: string;
}

export class KeyError extends Error {
  override name = 'KeyError';
}

/** `id`, `"Id"`, `sy_old.id`, optionally followed by a cast `::type`. */
const COLUMN_REF =
  /^\s*\(?\s*(?:(?:"(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*)\s*\.\s*)?("(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*)\s*\)?\s*(?:::\s*[A-Za-z_][A-Za-z0-9_ ."()[\],]*)?\s*$/;

function unquote(ident: string): string {
  return ident.startsWith('"') ? ident.slice(1, -1).replaceAll('""', '"') : ident.toLowerCase();
}

/** Resolves each new key column to the old column it is copied from. */
export function keyColumns(m: CompiledMapping): KeyColumn[] {
  const upByCol = new Map(m.up.map((u) => [u.column, u.expr]));
  const oldTypes = new Map(m.oldColumns.map((c) => [c.name, c.type]));
  const newTypes = new Map(m.newColumns.map((c) => [c.name, c.type]));
  return m.key.map((k) => {
    const expr = upByCol.get(k);
    if (expr === undefined) throw new KeyError(`mapping ${m.name}: key column ${k} has no up expression`);
    const match = COLUMN_REF.exec(expr);
    const oldColumn = match ? unquote(match[1]) : undefined;
    if (oldColumn === undefined || !oldTypes.has(oldColumn)) {
      throw new KeyError(
        `mapping ${m.name}: key column ${k} must be copied from one old column (e.g. "${k}: id"), got "${expr}"; backfill and verify walk the old table in that column's order`,
      );
    }
    const newType = newTypes.get(k);
    if (newType === undefined)
      throw new KeyError(`mapping ${m.name}: key column ${k} is not a column of new`);
    return { newColumn: k, newType, oldColumn, oldType: oldTypes.get(oldColumn)! };
  });
}

export type Side = 'old' | 'new';

/** Column list of the key on one side: `"a", "b"`, optionally qualified by an alias. */
export function keyList(keys: KeyColumn[], side: Side, alias?: string): string {
  const prefix = alias ? `${alias}.` : '';
  return keys.map((k) => prefix + quoteIdent(side === 'old' ? k.oldColumn : k.newColumn)).join(', ');
}

/** `(a, b)` or `a`: a row constructor when the key is composite. */
export function keyRow(keys: KeyColumn[], side: Side, alias?: string): string {
  const list = keyList(keys, side, alias);
  return keys.length > 1 ? `(${list})` : list;
}

/** The parameter `$n` (a text[] of key values) cast back to the key's types on one side. */
export function keyParam(keys: KeyColumn[], side: Side, n: number): string {
  const parts = keys.map((k, i) => `($${n}::text[])[${i + 1}]::${side === 'old' ? k.oldType : k.newType}`);
  return keys.length > 1 ? `(${parts.join(', ')})` : parts[0];
}

/** `ARRAY[a::text, b::text]`: the key of a row as text, for cursors and reports. */
export function keyText(keys: KeyColumn[], side: Side, alias?: string): string {
  const prefix = alias ? `${alias}.` : '';
  return `ARRAY[${keys.map((k) => `${prefix}${quoteIdent(side === 'old' ? k.oldColumn : k.newColumn)}::text`).join(', ')}]`;
}

/**
 * WHERE condition for the half-open key range (lo, hi] on one side; lo/hi are
 * parameter numbers or undefined for an open end.
 */
export function keyRange(keys: KeyColumn[], side: Side, lo?: number, hi?: number, alias?: string): string {
  const row = keyRow(keys, side, alias);
  const parts: string[] = [];
  if (lo !== undefined) parts.push(`${row} > ${keyParam(keys, side, lo)}`);
  if (hi !== undefined) parts.push(`${row} <= ${keyParam(keys, side, hi)}`);
  return parts.length > 0 ? parts.join(' AND ') : 'true';
}

/** Key as an object for reports: {"id": "42"}. */
export function keyObject(keys: KeyColumn[], values: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  keys.forEach((k, i) => {
    out[k.newColumn] = values[i];
  });
  return out;
}

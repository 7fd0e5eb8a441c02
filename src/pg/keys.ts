// SQL over a key that backfill and verify walk: column lists, row
// constructors, key ranges, key values as text.
//
// Key values travel as text (their Postgres output form) and are cast back
// with the column's type: exact for every type whose text form round-trips.

import { quoteIdent } from './ident.ts';

export interface KeyColumn {
  /** Key column of the new table. */
  newColumn: string;
  newType: string;
  /** The old column its up expression reads. */
  oldColumn: string;
  oldType: string;
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

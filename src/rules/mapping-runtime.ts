// What the planner precomputes for each mapping it rewrites statements for:
// the columns whose assignment may move a row's key, and the subquery a
// switched read puts in place of the old table.
import { quoteIdent } from '../pg/ident.ts';
import { type Node, parseSql } from '../sql/parse.ts';
import type { CompiledMapping } from './mapping.ts';
import type { SwitchedColumns } from './row-origins.ts';
import { qualified } from './rowsql.ts';

export interface MappingRuntime {
  /** For a write on the new table (`reverse`), the mapping seen from new: old and new swapped. */
  m: CompiledMapping;
  /** A write on the new table mirrored into the old one (dualWrite: both). */
  reverse?: true;
  keySources: Set<string>;
  /** The parenthesised subquery presenting old columns over the new table. */
  readSubquery?: string;
  /** The old columns with their catalog origin, for the RowDescription of a switched read. */
  switchedColumns?: SwitchedColumns;
}

/** Old-table columns a set of SQL expressions reads (last part of each column reference). */
export function columnsRead(exprs: string[]): Set<string> {
  const out = new Set<string>();
  const visit = (v: Node): void => {
    if (v === null || typeof v !== 'object') return;
    if (Array.isArray(v)) {
      for (const x of v) visit(x);
      return;
    }
    if (v.ColumnRef) {
      const f: Node[] = v.ColumnRef.fields ?? [];
      const last = f[f.length - 1]?.String?.sval;
      if (last !== undefined) out.add(last);
      return;
    }
    for (const k in v) visit(v[k]);
  };
  for (const e of exprs) visit(parseSql(`SELECT ${e}`).statements[0]?.node);
  return out;
}

/** Columns the key's up expressions read: assigning one may move the row to another key. */
export function keySources(m: CompiledMapping): Set<string> {
  return columnsRead(m.key.map((k) => m.up.find((u) => u.column === k)?.expr ?? quoteIdent(k)));
}

export function readSubquery(m: CompiledMapping): string | undefined {
  if (!m.down) return undefined;
  if (m.sameTable) {
    // A column migration: the table's own columns, the old ones computed from the new ones.
    const byCol = new Map(m.down.map((d) => [d.column, d.expr]));
    const cols = m.oldColumns.map((c) =>
      byCol.has(c.name) ? `(${byCol.get(c.name)})::${c.type} AS ${quoteIdent(c.name)}` : quoteIdent(c.name),
    );
    return `(SELECT ${cols.join(', ')} FROM ${qualified(m.new)})`;
  }
  const down = new Map(m.down.map((d) => [d.column, d.expr]));
  if (!m.oldColumns.every((c) => down.has(c.name))) return undefined;
  const cols = m.oldColumns
    .map((c) => `(${down.get(c.name)})::${c.type} AS ${quoteIdent(c.name)}`)
    .join(', ');
  return `(SELECT ${cols} FROM ${qualified(m.new)})`;
}

// A mapping as the proxy, backfill and verify use it: config resolved against
// the catalog (schemas, column order and types).
import type { MappingConfig } from '../config/schema.ts';

export interface ColumnInfo {
  name: string;
  /** format_type() of the column, e.g. "character varying(40)", "timestamp with time zone". */
  type: string;
}

/**
 * Where an old column comes from, as a RowDescription names it when the old
 * table is read directly: a switched read restores it (see row-origins.ts).
 */
export interface ColumnOrigin {
  /** The old table's OID. */
  table: number;
  /** pg_attribute.attnum: dropped columns leave gaps. */
  attnum: number;
  typeOid: number;
  typmod: number;
}

/** What an INSERT that fills columns itself must know of the table. */
export interface SameTableFacts {
  /** Default expression per column; absent: none (NULL when omitted). */
  defaults: Record<string, string>;
  /** Columns an INSERT may not give a value (identity ALWAYS, generated). */
  fixed: string[];
}

export interface ResolvedTable {
  schema: string;
  name: string;
}

export interface ColumnExpr {
  /** Column name (unquoted, exact case). */
  column: string;
  /** SQL expression over the other table's row, as written in the config. */
  expr: string;
}

export interface CompiledMapping {
  name: string;
  config: MappingConfig;
  old: ResolvedTable;
  new: ResolvedTable;
  /** Key columns of the new table. */
  key: string[];
  /** new column <- expression over an old row, in config order. */
  up: ColumnExpr[];
  /** old column <- expression over a new row (reads: new). */
  down?: ColumnExpr[];
  /** Old table columns in catalog order. */
  oldColumns: ColumnInfo[];
  /** Catalog facts of each old column, in oldColumns order (absent when built without a catalog). */
  oldOrigins?: ColumnOrigin[];
  /** New table columns in catalog order. */
  newColumns: ColumnInfo[];
  /**
   * The same mapping seen from the new table (dualWrite: both): old and new,
   * up and down swapped, keyed by the old table's key. Writes on new are
   * mirrored into old with exactly the machinery that mirrors old into new.
   */
  reverse?: CompiledMapping;
  /**
   * old and new are one table (a column migration): `up` keys are its new
   * columns, `down` keys its old ones, and oldColumns = newColumns = all of
   * its columns. Writes gain the other side's columns in the same statement
   * (columns-write.ts) instead of a second table's row.
   */
  sameTable?: SameTableFacts;
}

/** The mapping from the new table's side: what mirrors a write on new into old, by down. */
export function reversed(m: CompiledMapping, oldKey: string[]): CompiledMapping {
  return {
    name: m.name,
    config: m.config,
    old: m.new,
    new: m.old,
    key: [...oldKey],
    up: m.down ?? [],
    down: m.up,
    oldColumns: m.newColumns,
    newColumns: m.oldColumns,
  };
}

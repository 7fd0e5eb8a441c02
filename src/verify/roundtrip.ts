// Does a mapping lose anything when a row goes to the other table and back?
// With dualWrite: both, a row written on new is stored in old as down(new),
// and old's next write sends up(down(new)) back: wherever up(down(x)) != x a
// write through one name silently changes what the other reads. This module
// evaluates both round trips, down(up(old)) = old and up(down(new)) = new, over
// sampled real rows and over edge values generated from the column types, and
// names every column that does not come back, with examples. It only
// evaluates expressions (a read-only transaction, rolled back): nothing is written.
import type pg from 'pg';
import { quoteIdent } from '../pg/ident.ts';
import type { ColumnInfo, CompiledMapping } from '../rules/mapping.ts';
import { OLD_ROW_ALIAS, qualified, upTypedSelect } from '../rules/rowsql.ts';
import { edgeLiterals } from './edge-values.ts';

export interface LossExample {
  /** Where the row came from: a sampled row (with its key) or a generated edge value. */
  source: 'sample' | 'edge';
  key?: Record<string, unknown>;
  value: unknown;
  /** What came back; absent when evaluating the expressions raised an error. */
  back?: unknown;
  error?: string;
}

export interface ColumnLoss {
  column: string;
  sampledRows: number;
  edgeValues: number;
  examples: LossExample[];
}

export interface DirectionReport {
  /** old: down(up(old)) = old; new: up(down(new)) = new. */
  side: 'old' | 'new';
  rule: string;
  table: string;
  sampledRows: number;
  edgeValues: number;
  lossy: ColumnLoss[];
  /** Columns of the table with no expression from the other side: a row written there leaves them to defaults. */
  uncovered: string[];
}

export interface RoundTripReport {
  mapping: string;
  sides: DirectionReport[];
  /** True when some column does not round-trip in either direction. */
  lossy: boolean;
}

export interface RoundTripOptions {
  /** Rows sampled from each table. */
  sample: number;
  /** Examples kept per column. */
  examples: number;
}

export const DEFAULT_ROUND_TRIP: RoundTripOptions = { sample: 1000, examples: 3 };

interface Pair {
  original: Record<string, unknown>;
  back: Record<string, unknown>;
}

/** `there` maps the table's rows to the other table, `back` maps them home again. */
interface Trip {
  side: 'old' | 'new';
  rule: string;
  table: CompiledMapping['old'];
  columns: ColumnInfo[];
  there: CompiledMapping;
  back: CompiledMapping;
  /** Key columns of this table, to name sampled rows. */
  key: string[];
}

function trips(m: CompiledMapping): Trip[] {
  if (m.sameTable) {
    // One table: the trip replaces the new columns by up (or the old ones by down) and comes back.
    const down = { ...m, up: m.down ?? [] };
    const cols = m.oldColumns;
    return [
      {
        side: 'old',
        rule: 'down(up(old)) = old',
        table: m.old,
        columns: cols,
        there: m,
        back: down,
        key: m.key,
      },
      {
        side: 'new',
        rule: 'up(down(new)) = new',
        table: m.new,
        columns: cols,
        there: down,
        back: m,
        key: m.key,
      },
    ];
  }
  const r = m.reverse;
  if (!r)
    throw new Error(
      `mapping ${m.name}: the round trip needs the mapping seen from new (down and the old key)`,
    );
  return [
    {
      side: 'old',
      rule: 'down(up(old)) = old',
      table: m.old,
      columns: m.oldColumns,
      there: m,
      back: r,
      key: r.key,
    },
    {
      side: 'new',
      rule: 'up(down(new)) = new',
      table: m.new,
      columns: m.newColumns,
      there: r,
      back: m,
      key: m.key,
    },
  ];
}

/** Rows of `source` (a query yielding the table's columns, visible as `s`) with their round-tripped image. */
function tripSql(t: Trip, source: string): string {
  // Within one table the way back may read any of its columns: the whole row goes, the mapped ones replaced.
  const inner = t.there.sameTable
    ? wholeRowSelect(t.there, 'SELECT s.*')
    : upTypedSelect(t.there, 'SELECT s.*');
  return (
    `SELECT pg_catalog.to_jsonb(s) AS original, pg_catalog.to_jsonb(b) AS back ` +
    `FROM (${source}) AS s CROSS JOIN LATERAL (${upTypedSelect(t.back, inner)}) AS b`
  );
}

/** The row with the columns `m.up` names replaced by their expressions (typed), the others as they are. */
function wholeRowSelect(m: CompiledMapping, source: string): string {
  const exprs = new Map(m.up.map((u) => [u.column, u.expr]));
  const cols = m.oldColumns.map((c) =>
    exprs.has(c.name)
      ? `(${exprs.get(c.name)})::${c.type} AS ${quoteIdent(c.name)}`
      : `${OLD_ROW_ALIAS}.${quoteIdent(c.name)}`,
  );
  return `SELECT ${cols.join(', ')} FROM (${source}) AS ${OLD_ROW_ALIAS}`;
}

async function attempt<T>(c: pg.Client, run: () => Promise<T>): Promise<T | Error> {
  await c.query('SAVEPOINT sy_trip');
  try {
    const v = await run();
    await c.query('RELEASE SAVEPOINT sy_trip');
    return v;
  } catch (e) {
    await c.query('ROLLBACK TO SAVEPOINT sy_trip');
    return e as Error;
  }
}

class Losses {
  private readonly byColumn = new Map<string, ColumnLoss>();
  constructor(private readonly maxExamples: number) {}

  add(column: string, source: 'sample' | 'edge', example: LossExample): void {
    let l = this.byColumn.get(column);
    if (!l) {
      l = { column, sampledRows: 0, edgeValues: 0, examples: [] };
      this.byColumn.set(column, l);
    }
    if (source === 'sample') l.sampledRows++;
    else l.edgeValues++;
    if (l.examples.length < this.maxExamples) l.examples.push(example);
  }

  list(order: ColumnInfo[]): ColumnLoss[] {
    return order.map((c) => this.byColumn.get(c.name)).filter((l): l is ColumnLoss => l !== undefined);
  }
}

async function checkTrip(c: pg.Client, t: Trip, opts: RoundTripOptions): Promise<DirectionReport> {
  const covered = new Set(t.back.up.map((u) => u.column));
  const compared = t.columns.filter((col) => covered.has(col.name));
  const losses = new Losses(opts.examples);
  const keyOf = (row: Record<string, unknown>) => Object.fromEntries(t.key.map((k) => [k, row[k]]));
  const compare = (p: Pair, source: 'sample' | 'edge', only?: string) => {
    for (const col of compared) {
      if (only !== undefined && col.name !== only) continue;
      const a = JSON.stringify(p.original[col.name] ?? null);
      const b = JSON.stringify(p.back[col.name] ?? null);
      if (a === b) continue;
      losses.add(col.name, source, {
        source,
        ...(source === 'sample' ? { key: keyOf(p.original) } : {}),
        value: p.original[col.name] ?? null,
        back: p.back[col.name] ?? null,
      });
    }
  };

  // Sampled rows: a Bernoulli sample a little larger than opts.sample rows, cut at random
  // (not by position, which would favour the table's first pages); all rows of a small table.
  const est = await c.query<{ n: number }>(
    'SELECT greatest(reltuples, 0)::float8 AS n FROM pg_catalog.pg_class WHERE oid = $1::regclass',
    [qualified(t.table)],
  );
  const pct = Math.min(100, (150 * opts.sample) / Math.max(1, est.rows[0].n));
  const sampleFrom = `${qualified(t.table)}${pct < 100 ? ` TABLESAMPLE BERNOULLI (${pct.toFixed(6)})` : ''}`;
  const rows = await c.query<{ j: Record<string, unknown> }>(
    `SELECT pg_catalog.to_jsonb(x) AS j FROM ${sampleFrom} AS x ORDER BY pg_catalog.random() LIMIT ${opts.sample}`,
  );
  const fromJson = (cols: string) =>
    `SELECT ${cols} FROM pg_catalog.jsonb_populate_record(NULL::${qualified(t.table)}, $1::jsonb) AS r`;
  const allColumns = t.columns.map((col) => `r.${quoteIdent(col.name)}`).join(', ');
  for (const row of rows.rows) {
    const r = await attempt(c, () => c.query<Pair>(tripSql(t, fromJson(allColumns)), [row.j]));
    if (r instanceof Error) {
      losses.add('(evaluation error)', 'sample', {
        source: 'sample',
        key: keyOf(row.j),
        value: row.j,
        error: r.message,
      });
      continue;
    }
    compare(r.rows[0], 'sample');
  }

  // Edge values: one column at a time, the others as in a real row (or NULL on an empty table).
  const base = rows.rows[0]?.j ?? {};
  const notNull = await c.query<{ name: string }>(
    `SELECT attname AS name FROM pg_catalog.pg_attribute
      WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped AND attnotnull`,
    [qualified(t.table)],
  );
  const required = new Set(notNull.rows.map((r) => r.name));
  let edgeValues = 0;
  for (const col of compared) {
    const literals = [...(required.has(col.name) ? [] : ['NULL']), ...edgeLiterals(col.type)];
    for (const lit of literals) {
      const cols = t.columns
        .map((x) =>
          x.name === col.name ? `(${lit})::${x.type} AS ${quoteIdent(x.name)}` : `r.${quoteIdent(x.name)}`,
        )
        .join(', ');
      // A value the column's type cannot hold (numeric(5,2) and 1e20) says nothing about the mapping.
      if ((await attempt(c, () => c.query(`SELECT (${lit})::${col.type}`))) instanceof Error) continue;
      const r = await attempt(c, () => c.query<Pair>(tripSql(t, fromJson(cols)), [base]));
      edgeValues++;
      if (r instanceof Error) {
        losses.add(col.name, 'edge', { source: 'edge', value: lit, error: r.message });
        continue;
      }
      compare(r.rows[0], 'edge', col.name);
    }
  }
  return {
    side: t.side,
    rule: t.rule,
    table: qualified(t.table),
    sampledRows: rows.rows.length,
    edgeValues,
    lossy: losses.list([...compared, { name: '(evaluation error)', type: '' }]),
    // Within one table the other columns are the row's own, written by nobody else.
    uncovered: t.there.sameTable
      ? []
      : t.columns.filter((col) => !covered.has(col.name)).map((col) => col.name),
  };
}

/** Both round trips of a mapping compiled with its reverse (see loadMapping's `reverse`). */
export async function checkRoundTrip(
  c: pg.Client,
  m: CompiledMapping,
  opts: RoundTripOptions = DEFAULT_ROUND_TRIP,
): Promise<RoundTripReport> {
  await c.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
  try {
    const sides: DirectionReport[] = [];
    for (const t of trips(m)) sides.push(await checkTrip(c, t, opts));
    return { mapping: m.name, sides, lossy: sides.some((s) => s.lossy.length > 0) };
  } finally {
    await c.query('ROLLBACK').catch(() => {});
  }
}

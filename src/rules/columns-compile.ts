// A mapping whose old and new name the same table: a column migration inside
// it (rename a column, change its type or unit, split or merge columns). `up`
// gives the new columns as expressions over the row, `down` the old columns;
// the key is the table's own. Checked like a two-table mapping, against the
// catalog, without touching data.
import type pg from 'pg';
import { ConfigError } from '../config/load.ts';
import type { MappingConfig } from '../config/schema.ts';
import { explain, isUniqueKey } from './catalog-checks.ts';
import { expressionProblem } from './expr-check.ts';
import type { ColumnExpr, ColumnInfo, ColumnOrigin, CompiledMapping, ResolvedTable } from './mapping.ts';
import { OLD_ROW_ALIAS, qualified } from './rowsql.ts';

export async function compileColumns(
  client: pg.Client,
  m: MappingConfig,
  table: ResolvedTable,
  oid: number,
  columns: ColumnInfo[],
  origins: ColumnOrigin[],
): Promise<CompiledMapping> {
  const where = `mapping ${m.name}`;
  const t = qualified(table);
  const up: ColumnExpr[] = Object.entries(m.up).map(([column, expr]) => ({ column, expr }));
  const down: ColumnExpr[] = Object.entries(m.down ?? {}).map(([column, expr]) => ({ column, expr }));
  for (const [side, list] of [
    ['up', up],
    ['down', down],
  ] as const) {
    for (const x of list) {
      const problem = expressionProblem(x.expr);
      if (problem) {
        throw new ConfigError(
          `${where}: ${side} expression ${JSON.stringify(x.expr)} for column ${x.column} ${problem}`,
        );
      }
      if (!columns.some((c) => c.name === x.column)) {
        throw new ConfigError(`${where}: ${side} column ${x.column} does not exist in ${t}`);
      }
    }
  }
  const both = up.filter((u) => down.some((d) => d.column === u.column)).map((u) => u.column);
  if (both.length > 0) {
    throw new ConfigError(
      `${where}: old and new are the same table, so a column is either new (up) or old (down), not both: ${both.join(', ')}`,
    );
  }
  const keyed = m.key.filter((k) => up.some((u) => u.column === k) || down.some((d) => d.column === k));
  if (keyed.length > 0) {
    throw new ConfigError(
      `${where}: old and new are the same table, whose key (${keyed.join(', ')}) is its own: the key takes no up or down expression`,
    );
  }
  for (const k of m.key) {
    if (!columns.some((c) => c.name === k))
      throw new ConfigError(`${where}: key column ${k} does not exist in ${t}`);
  }
  if (!(await isUniqueKey(client, oid, m.key))) {
    throw new ConfigError(
      `${where}: key (${m.key.join(', ')}) is not the primary key or a unique index of ${t}`,
    );
  }
  // Rows written before the new columns were added (and by writers that bypass the proxy) leave them
  // empty until the backfill: the expand step must not make such rows invalid.
  const strict = await client.query<{ name: string }>(
    `SELECT attname AS name FROM pg_catalog.pg_attribute
      WHERE attrelid = $1 AND attname = ANY($2::text[]) AND attnotnull AND NOT atthasdef`,
    [oid, up.map((u) => u.column)],
  );
  if (strict.rowCount! > 0) {
    throw new ConfigError(
      `${where}: new column ${strict.rows.map((r) => r.name).join(', ')} is NOT NULL without a default; add new columns nullable (or with a default) and set NOT NULL after the backfill`,
    );
  }

  const type = new Map(columns.map((c) => [c.name, c.type]));
  await client.query('BEGIN');
  try {
    for (const [side, list] of [
      ['up', up],
      ['down', down],
    ] as const) {
      for (const x of list) {
        await explain(
          client,
          `SELECT (${x.expr})::${type.get(x.column)} FROM ${t} AS ${OLD_ROW_ALIAS}`,
          `${where}: ${side} expression ${JSON.stringify(x.expr)} for column ${x.column}`,
        );
      }
    }
  } finally {
    await client.query('ROLLBACK').catch(() => {});
  }
  // Defaults an INSERT evaluates itself when a derived column is made from a column the client omits.
  const facts = await client.query<{ name: string; def: string | null; fixed: boolean }>(
    `SELECT a.attname AS name,
            CASE WHEN a.attidentity = 'd'
                 THEN format('pg_catalog.nextval(%L::pg_catalog.regclass)', pg_catalog.pg_get_serial_sequence($2, a.attname))
                 WHEN a.attgenerated = '' THEN pg_catalog.pg_get_expr(d.adbin, d.adrelid) END AS def,
            a.attidentity = 'a' OR a.attgenerated <> '' AS fixed
       FROM pg_catalog.pg_attribute a
       LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
      WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped`,
    [oid, t],
  );
  const sameTable = {
    defaults: Object.fromEntries(
      facts.rows.filter((r) => r.def !== null).map((r) => [r.name, r.def as string]),
    ),
    fixed: facts.rows.filter((r) => r.fixed).map((r) => r.name),
  };
  return {
    name: m.name,
    config: m,
    old: table,
    new: table,
    key: [...m.key],
    up,
    down,
    oldColumns: columns,
    oldOrigins: origins,
    newColumns: columns,
    sameTable,
  };
}

// Checks of a mapping against the catalog that compiling needs in more than
// one place: a statement planned (never run) inside the caller's transaction,
// and whether some columns are a table's key.
import type pg from 'pg';
import { ConfigError } from '../config/load.ts';

/** True when `cols` are exactly the columns of the table's primary key or of a plain unique index. */
export async function isUniqueKey(client: pg.Client, oid: number, cols: readonly string[]): Promise<boolean> {
  const idx = await client.query<{ cols: string[] }>(
    `SELECT array_agg(a.attname::text ORDER BY a.attname) AS cols
       FROM pg_catalog.pg_index i
       JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
      WHERE i.indrelid = $1 AND i.indisunique AND i.indexprs IS NULL AND i.indpred IS NULL
      GROUP BY i.indexrelid`,
    [oid],
  );
  const wanted = [...cols].sort().join('\u0000');
  return idx.rows.some((r) => [...r.cols].sort().join('\u0000') === wanted);
}

/** Plans `sql` with EXPLAIN under a savepoint; a failure is a ConfigError saying `what`. */
export async function explain(client: pg.Client, sql: string, what: string): Promise<void> {
  await client.query('SAVEPOINT sy_check');
  try {
    await client.query(`EXPLAIN ${sql}`);
  } catch (e) {
    throw new ConfigError(`${what}: ${(e as Error).message}`);
  } finally {
    await client.query('ROLLBACK TO SAVEPOINT sy_check').catch(() => {});
  }
}

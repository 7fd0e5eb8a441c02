// verify --repair: make new[k] = up(old[k]) for exactly the keys verify
// reported, with the statements the mirror and backfill use (rowsql.ts):
// upsert-with-update from the current old rows, and delete the new rows whose
// old row is gone. One REPEATABLE READ transaction with the old rows locked
// FOR SHARE: a row the application changes meanwhile makes the repair fail
// with a serialization error (and retry) instead of writing a stale image.
// A column migration inside one table is repaired by UPDATE (columns-sql.ts):
// its rows are all there, only their new columns can be out of step.
import type pg from 'pg';
import type { KeyColumn } from '../pg/keys.ts';
import { fillColumnsSql } from '../rules/columns-sql.ts';
import type { CompiledMapping } from '../rules/mapping.ts';
import { deleteOrphansSql, OLD_ROW_ALIAS, qualified, upsertSql } from '../rules/rowsql.ts';
import { keyIn, newKeySource } from './sql.ts';

export async function repairKeys(
  c: pg.Client,
  m: CompiledMapping,
  keys: KeyColumn[],
  keySet: string[][],
): Promise<{ upserted: number; deleted: number }> {
  const json = JSON.stringify(keySet);
  await c.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
  try {
    if (m.sameTable) {
      const set = await c.query(fillColumnsSql(m, keyIn(keys, 'old', 1, OLD_ROW_ALIAS)), [json]);
      await c.query('COMMIT');
      return { upserted: set.rowCount ?? 0, deleted: 0 };
    }
    const up = await c.query(
      upsertSql(m, `SELECT * FROM ${qualified(m.old)} WHERE ${keyIn(keys, 'old', 1)} FOR SHARE`, 'update'),
      [json],
    );
    const del = await c.query(deleteOrphansSql(m, newKeySource(keys, 1)), [json]);
    await c.query('COMMIT');
    return { upserted: up.rowCount ?? 0, deleted: del.rowCount ?? 0 };
  } catch (e) {
    await c.query('ROLLBACK').catch(() => {});
    throw e;
  }
}

// verify --repair: make new[k] = up(old[k]) for exactly the keys verify
// reported, with the statements the mirror and backfill use (rowsql.ts):
// upsert-with-update from the current old rows, and delete the new rows whose
// old row is gone. One REPEATABLE READ transaction with the old rows locked
// FOR SHARE: a row the application changes meanwhile makes the repair fail
// with a serialization error (and retry) instead of writing a stale image.
import type pg from 'pg';
import type { KeyColumn } from '../pg/keys.ts';
import type { CompiledMapping } from '../rules/mapping.ts';
import { deleteOrphansSql, qualified, upsertSql } from '../rules/rowsql.ts';
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

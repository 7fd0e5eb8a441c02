// verify of a column migration inside one table, against a real Postgres and
// the real CLI: rows whose new columns were corrupted on purpose are found
// exactly, --repair rewrites exactly them by UPDATE, and verify is clean again;
// --direction new-to-old compares the old columns with down(row).
import fs from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Backfill, DEFAULT_OPTIONS } from '../../src/backfill/runner.ts';
import { silentLogger } from '../../src/log.ts';
import {
  COLUMNS_MAPPING,
  columnsOutOfStep,
  createPricedUsers,
  type Fixture,
  runCli,
  writeConfig,
} from '../support/backfill-fixtures.ts';
import { freshDatabase, type TestDatabase } from '../support/db.ts';

const ROWS = 25_000;
const MAPPING = 'user-columns';

let db: TestDatabase;
let fx: Fixture;
const q = (sql: string) => db.query(sql) as Promise<{ rows: { n: number }[] }>;

beforeAll(async () => {
  db = await freshDatabase('vfcols');
  await createPricedUsers(db.query, ROWS);
  fx = await writeConfig(db.url, COLUMNS_MAPPING);
  const opts = { ...DEFAULT_OPTIONS, maxLagMs: 0 };
  await new Backfill(fx.mappings.get(MAPPING)!, fx.clientConfig, opts, silentLogger).run();
});

afterAll(async () => {
  await fx?.cleanup();
  await db?.drop();
});

const verify = (...more: string[]) =>
  runCli(['verify', '--config', fx.configPath, '--mapping', MAPPING, '--chunk-rows', '2000', ...more]);

describe('verify of a column migration', () => {
  it('is clean after the backfill (exit 0)', async () => {
    expect(await columnsOutOfStep(q)).toBe(0);
    const r = await verify();
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(
      `verify ${MAPPING}: "public"."users" columns full_name, price_cents: ${ROWS} rows in 13 chunks, 0 differ`,
    );
    expect(r.stdout).toContain('no drift: new columns match up(row)');
  });

  it('finds exactly the corrupted rows, repairs exactly them by UPDATE, and verifies clean again', async () => {
    await db.query(`
      UPDATE users SET full_name = 'Someone Else' WHERE id IN (17, 12001);
      UPDATE users SET price_cents = NULL WHERE id = 1;                  -- first key
      UPDATE users SET price_cents = price_cents + 1 WHERE id = ${ROWS};  -- last key
      UPDATE users SET full_name = '' WHERE id = 500;                     -- '' is not NULL
      UPDATE users SET full_name = NULL WHERE id = 501;
    `);
    const corrupted = [1, 17, 500, 501, 12001, ROWS];
    await db.query(`DROP TABLE IF EXISTS before_repair;
      CREATE TABLE before_repair AS SELECT id, xmin::text AS x FROM users`);
    const out = path.join(fx.dir, 'drift.jsonl');
    const r = await verify('--out', out, '--show', '2');
    expect(r.code, r.stderr).toBe(1);
    expect(r.stdout).toContain('drift: 6 rows (missing 0, extra 0, different 6)');
    expect(r.stdout).toContain('... 4 more');
    const lines = (await fs.readFile(out, 'utf8'))
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(lines.map((l) => Number(l.key.id)).sort((a, b) => a - b)).toEqual(corrupted);
    expect(lines.every((l) => l.kind === 'different')).toBe(true);
    const d17 = lines.find((l) => l.key.id === '17');
    expect(d17.columns).toEqual(['full_name']);
    expect(d17.expected).toEqual({ id: 17, full_name: 'first17 last17', price_cents: 17 });
    expect(d17.actual.full_name).toBe('Someone Else');
    expect(lines.find((l) => l.key.id === '1').columns).toEqual(['price_cents']);

    const repair = await verify('--repair');
    expect(repair.code, repair.stdout + repair.stderr).toBe(0);
    expect(repair.stdout).toContain('repaired: 6, still different after repair: 0');
    // Exactly the corrupted rows were rewritten.
    const touched = await db.query(
      `SELECT id FROM users u JOIN before_repair b USING (id) WHERE u.xmin::text <> b.x ORDER BY id`,
    );
    expect(touched.rows.map((row) => row.id)).toEqual(corrupted);
    expect(await columnsOutOfStep(q)).toBe(0);

    const again = await verify();
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toContain('no drift');
  });

  it('--direction new-to-old compares the old columns with down(row) and repairs them', async () => {
    const clean = await verify('--direction', 'new-to-old');
    expect(clean.code, clean.stdout + clean.stderr).toBe(0);
    expect(clean.stdout).toContain('no drift: old columns match down(row)');

    await db.query(`UPDATE users SET first_name = 'Changed', price = 0 WHERE id = 33`);
    const r = await verify('--direction', 'both');
    expect(r.code, r.stderr).toBe(1);
    // Both directions see row 33: up(row) differs from full_name/price_cents, and down(row) from the old columns.
    expect(r.stdout.match(/different \{"id":"33"\}/g)).toHaveLength(2);
    const repair = await verify('--direction', 'new-to-old', '--repair');
    expect(repair.code, repair.stdout + repair.stderr).toBe(0);
    const row = await db.query(`SELECT first_name, price::text AS price FROM users WHERE id = 33`);
    expect(row.rows[0]).toEqual({ first_name: 'first33', price: '0.33' });
    expect(await columnsOutOfStep(q)).toBe(0);
  });
});

// Memory does not grow with the table: rows never pass through the backfill
// process (every batch is one INSERT ... SELECT inside Postgres), so a run
// over ten times the rows peaks at about the same RSS. The 1,000,000-row
// figure is measured by bench/backfill.ts.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createUsers,
  type Fixture,
  logLines,
  runCli,
  USERS_MAPPING,
  writeConfig,
} from '../support/backfill-fixtures.ts';
import { freshDatabase, type TestDatabase } from '../support/db.ts';

let small: TestDatabase;
let large: TestDatabase;
let fxSmall: Fixture;
let fxLarge: Fixture;

beforeAll(async () => {
  small = await freshDatabase('bfmem');
  large = await freshDatabase('bfmem');
  await createUsers(small.query, 20_000);
  await createUsers(large.query, 200_000);
  fxSmall = await writeConfig(small.url, USERS_MAPPING);
  fxLarge = await writeConfig(large.url, USERS_MAPPING);
});

afterAll(async () => {
  await fxSmall?.cleanup();
  await fxLarge?.cleanup();
  await small?.drop();
  await large?.drop();
});

async function peakRss(fx: Fixture, rows: number): Promise<number> {
  const r = await runCli(['backfill', '--config', fx.configPath, '--mapping', 'users', '--max-lag-ms', '0']);
  expect(r.code, r.stderr).toBe(0);
  const summary = logLines(r.stderr).find((l) => l.msg === 'backfill done')!;
  expect(summary.rowsScanned).toBe(rows);
  return Number(summary.peakRssMb);
}

describe('backfill memory', () => {
  it('peaks at about the same RSS for 200,000 rows as for 20,000', async () => {
    const a = await peakRss(fxSmall, 20_000);
    const b = await peakRss(fxLarge, 200_000);
    console.log(`peak RSS: ${a} MB at 20,000 rows, ${b} MB at 200,000 rows`);
    expect(b).toBeLessThan(a + 40);
    expect(b).toBeLessThan(300);
  });
});

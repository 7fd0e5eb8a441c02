// One mapping shape through the whole migration lifecycle (see test/support/lifecycle.ts).
import { afterAll, beforeAll, expect, it } from 'vitest';
import { freshDatabase, type TestDatabase } from '../support/db.ts';
import { describeReport, printPlanCache, runLifecycle } from '../support/lifecycle.ts';
import { splitMergeCase } from '../support/mapping-cases.ts';

let db: TestDatabase;

beforeAll(async () => {
  db = await freshDatabase('lc');
});

afterAll(async () => {
  await printPlanCache('lifecycle-split-merge');
  await db?.drop();
});

it('split-merge: expand, dual-write, backfill, reads new, reads old, kill switch, dual-write again', async () => {
  const report = await runLifecycle(db, splitMergeCase, { seed: 11 });
  console.log(describeReport(report));
  expect(report.map((r) => r.stage)).toEqual([
    'dual-write',
    'backfill',
    'reads new',
    'reads old',
    'kill switch',
    'dual-write again',
  ]);
  // The workload really wrote in every stage that has one.
  for (const r of report) if (r.workload) expect(r.workload.ok).toBeGreaterThan(100);
  expect(report.at(-1)!.newRows).toBeGreaterThan(0);
}, 240_000);

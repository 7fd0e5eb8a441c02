import { Backfill, DEFAULT_OPTIONS } from '../../src/backfill/runner.ts';
import { silentLogger } from '../../src/log.ts';
import { quoteIdent } from '../../src/pg/ident.ts';
import { DEFAULT_VERIFY_OPTIONS, verifyMapping } from '../../src/verify/compare.ts';
import type { ColumnCase } from './column-cases.ts';
import type { TestDatabase } from './db.ts';
import {
  applyConfig,
  compareReads,
  compileMapping,
  mappingConfig,
  runWorkload,
  type StageReport,
  type Switches,
  stagedSuite,
  sumWorkloads,
  type WorkloadResult,
} from './lifecycle.ts';
import { startProxy } from './proxy.ts';

/**
 * Rows out of step: a new column that is not up(row), or an old one that is
 * not down(row). `partial` (before the backfill): only new columns that are
 * set count, since rows not written since dual-write began have none.
 */
async function outOfStep(db: TestDatabase, c: ColumnCase, partial = false): Promise<number> {
  const m = c.base.mapping;
  const types = await db.query<{ name: string; type: string }>(
    `SELECT attname AS name, format_type(atttypid, atttypmod) AS type FROM pg_attribute
      WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped`,
    [m.old],
  );
  const type = new Map(types.rows.map((r) => [r.name, r.type]));
  const differs = (exprs: Record<string, string>) =>
    Object.entries(exprs).map(([col, e]) => `${quoteIdent(col)} IS DISTINCT FROM (${e})::${type.get(col)}`);
  // Before the backfill only what writes filled can be checked: each new column that is set.
  const wrong = partial
    ? Object.keys(m.up).map((col, i) => `(${quoteIdent(col)} IS NOT NULL AND ${differs(m.up)[i]})`)
    : [...differs(m.up), ...differs(m.down)];
  const r = await db.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM ${m.old} WHERE ${wrong.join(' OR ')}`,
  );
  return r.rows[0].n;
}

export async function runColumnRollout(db: TestDatabase, cc: ColumnCase, seed = 1): Promise<StageReport[]> {
  const c = cc.base;
  const m = c.mapping;
  const ids = { next: c.seededKeys + 1 };
  const report: StageReport[] = [];
  let s = seed;
  let t0 = performance.now();
  const check = async (stage: string, partial = false) => {
    const n = await outOfStep(db, cc, partial);
    if (n > 0) throw new Error(`${stage}: ${n} rows out of step (new != up(row) or old != down(row))`);
    const rows = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${m.old}`);
    return rows.rows[0].n;
  };
  const push = async (stage: string, w: WorkloadResult | undefined, partial = false) => {
    const rows = await check(stage, partial);
    report.push({ stage, workload: w, newRows: rows, ms: Math.round(performance.now() - t0) });
    t0 = performance.now();
  };

  await db.query(c.setup);
  await db.query(c.expand);
  const proxy = await startProxy(db, mappingConfig([m], { dualWrite: 'both' }));
  const url = proxy.url();
  const opts = { clients: 5, perClient: 30 };
  const v1 = () => runWorkload(url, c, ids, { ...opts, seed: s++ });
  const v2 = () => runWorkload(url, { ...c, write: cc.writeNew }, ids, { ...opts, seed: s++ });
  const flip = (sw: Switches) => applyConfig(proxy, db, mappingConfig([m], { dualWrite: 'both', ...sw }));
  try {
    await push('dual-write', await v1(), true);

    const compiled = await compileMapping(db, m);
    const backfill = new Backfill(
      compiled,
      { connectionString: db.url },
      { ...DEFAULT_OPTIONS, batchSize: 40, chunkRows: 100, workers: 2, maxLagMs: 0 },
      silentLogger,
    );
    const [stats, bw] = await Promise.all([backfill.run(), v1()]);
    if (stats.outcome !== 'done') throw new Error(`backfill ended ${stats.outcome}`);
    await push('backfill', bw);

    const v = await verifyMapping(
      compiled,
      { connectionString: db.url },
      DEFAULT_VERIFY_OPTIONS,
      silentLogger,
      {
        onDrift: () => {},
      },
    );
    const drift = v.drift.missing + v.drift.extra + v.drift.different;
    if (drift > 0) throw new Error(`verify found ${drift} rows out of step after the backfill`);
    await push('verify', undefined);

    await flip({ reads: 'new' });
    await compareReads(db, url, c, 'reads new');
    await push('reads new', await v1());

    await push('v2 writes', sumWorkloads(await Promise.all([v1(), v2()])));
    await compareReads(db, url, { ...c, reads: cc.readsNew }, 'v2 reads');

    await flip({ reads: 'old' });
    await push('reads old (rollback)', sumWorkloads(await Promise.all([v1(), v2()])));
    await compareReads(db, url, c, 'reads old (rollback)');

    await flip({ reads: 'new' });
    await push('reads new again', sumWorkloads(await Promise.all([v1(), v2()])));
    await compareReads(db, url, c, 'reads new again');

    await push('v1 stops', await v2());

    // Contract: the mapping goes, then the old columns.
    await applyConfig(proxy, db, { mappings: [] });
    await db.query(
      `ALTER TABLE ${m.old} ${cc.oldColumns.map((col) => `DROP COLUMN ${quoteIdent(col)}`).join(', ')}`,
    );
    const w = await v2();
    if (Object.keys(w.failed).length > 0) throw new Error(`contract: v2 failed: ${JSON.stringify(w.failed)}`);
    await compareReads(db, url, { ...c, reads: cc.readsNew }, 'contract');
    const rows = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${m.old}`);
    report.push({
      stage: 'contract',
      workload: w,
      newRows: rows.rows[0].n,
      ms: Math.round(performance.now() - t0),
    });
  } finally {
    await proxy.close();
  }
  return report;
}

/** One column migration as a test file of its own. */
export function columnRolloutSuite(label: string, cc: ColumnCase, seed = 31): void {
  stagedSuite({
    prefix: 'colro',
    title: `${label}: two app versions through add column, dual-write both ways, backfill, verify, reads new, v2 writes, rollback, reads new, v1 stops, drop column`,
    stages: [
      'dual-write',
      'backfill',
      'verify',
      'reads new',
      'v2 writes',
      'reads old (rollback)',
      'reads new again',
      'v1 stops',
      'contract',
    ],
    minOk: 60,
    run: (db) => runColumnRollout(db, cc, seed),
  });
}

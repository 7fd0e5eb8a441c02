// A rolling deploy with two live app versions, Reshape's style: v1 writes and
// reads by the old names, v2 by the new ones, both through the proxy, while
// the operator runs expand -> dual-write (both ways) -> backfill -> reads new
// -> v2 starts writing -> reads back to old (rollback) -> reads new again ->
// v1 stops -> contract. After every stage the two tables are exact images of
// each other, checked with SQL written here from the mapping's expressions
// (not with the proxy's own SQL builder): old EXCEPT down(new) and new EXCEPT
// up(old), both ways. Around every switch, both versions see the same keys,
// and the same keys as before the switch: no row vanishes for either.
import pg from 'pg';
import { expect } from 'vitest';
import { Backfill, DEFAULT_OPTIONS } from '../../src/backfill/runner.ts';
import { silentLogger } from '../../src/log.ts';
import { quoteIdent } from '../../src/pg/ident.ts';
import { DEFAULT_VERIFY_OPTIONS, verifyMapping } from '../../src/verify/compare.ts';
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
import type { MappingDefinition } from './mapping-cases.ts';
import { startProxy } from './proxy.ts';
import type { RolloutCase } from './rollout-cases.ts';

async function columnTypes(db: TestDatabase, table: string): Promise<Map<string, string>> {
  const r = await db.query<{ name: string; type: string }>(
    `SELECT attname AS name, format_type(atttypid, atttypmod) AS type FROM pg_attribute
      WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped`,
    [table],
  );
  return new Map(r.rows.map((x) => [x.name, x.type]));
}

/**
 * Rows of `to` (over the mapped columns) that are not `exprs` of a `from` row,
 * and the other way round. `exprs`: to-column -> SQL expression over a from row.
 */
async function imageDrift(
  db: TestDatabase,
  from: string,
  to: string,
  exprs: Record<string, string>,
): Promise<{ notImage: number; notStored: number }> {
  const types = await columnTypes(db, to);
  const cols = Object.keys(exprs);
  const stored = `SELECT ${cols.map(quoteIdent).join(', ')} FROM ${to}`;
  const image = `SELECT ${cols.map((c) => `(${exprs[c]})::${types.get(c)}`).join(', ')} FROM ${from}`;
  const r = await db.query<{ a: number; b: number }>(
    `SELECT (SELECT count(*)::int FROM (${stored} EXCEPT ${image}) x) AS a,
            (SELECT count(*)::int FROM (${image} EXCEPT ${stored}) x) AS b`,
  );
  return { notImage: r.rows[0].a, notStored: r.rows[0].b };
}

/** new = up(old) and old = down(new), exactly; `partial`: before the backfill, old may hold rows new lacks. */
async function checkImages(db: TestDatabase, m: MappingDefinition, stage: string, partial = false) {
  const fwd = await imageDrift(db, m.old, m.new, m.up);
  const back = await imageDrift(db, m.new, m.old, m.down);
  // Before the backfill, old rows that predate dual-write are missing from new (and from down(new)).
  const bad = partial
    ? fwd.notImage + back.notStored
    : fwd.notImage + fwd.notStored + back.notImage + back.notStored;
  if (bad > 0) {
    throw new Error(
      `${stage}: the tables are not images of each other: new rows not up(old) ${fwd.notImage}, ` +
        `up(old) not in new ${fwd.notStored}, old rows not down(new) ${back.notImage}, down(new) not in old ${back.notStored}`,
    );
  }
  const n = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${m.new}`);
  return n.rows[0].n;
}

/**
 * Sequences owned by an old column (serial) that a new column's default takes
 * its values from become the new column's, so dropping old keeps them (the
 * runbook's contract step; docs/rollout.md).
 */
async function handOverSequences(db: TestDatabase, oldTable: string, newTable: string): Promise<void> {
  const r = await db.query<{ seq: string; col: string }>(
    `SELECT DISTINCT dep.refobjid::regclass::text AS seq, a.attname AS col
       FROM pg_attrdef ad
       JOIN pg_attribute a ON a.attrelid = ad.adrelid AND a.attnum = ad.adnum
       JOIN pg_depend dep ON dep.classid = 'pg_attrdef'::regclass AND dep.objid = ad.oid
                         AND dep.refclassid = 'pg_class'::regclass
       JOIN pg_depend own ON own.classid = 'pg_class'::regclass AND own.objid = dep.refobjid
                         AND own.refobjid = $1::regclass AND own.deptype = 'a'
      WHERE ad.adrelid = $2::regclass`,
    [oldTable, newTable],
  );
  for (const x of r.rows) await db.query(`ALTER SEQUENCE ${x.seq} OWNED BY ${newTable}.${quoteIdent(x.col)}`);
}

async function keys(url: string, sql: string): Promise<string[]> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return (await c.query<{ k: string }>(sql)).rows.map((r) => r.k);
  } finally {
    await c.end();
  }
}

export async function runRollout(db: TestDatabase, rc: RolloutCase, seed = 1): Promise<StageReport[]> {
  const c = rc.base;
  const m = c.mapping;
  const v2Case = { ...c, write: rc.writeNew };
  const ids = { next: c.seededKeys + 1 };
  const report: StageReport[] = [];
  let s = seed;
  let t0 = performance.now();
  const push = (stage: string, w: WorkloadResult | undefined, newRows: number) => {
    report.push({ stage, workload: w, newRows, ms: Math.round(performance.now() - t0) });
    t0 = performance.now();
  };

  // 1. expand
  await db.query(c.setup);
  await db.query(c.expand);
  const proxy = await startProxy(db, mappingConfig([m], { dualWrite: 'both' }));
  const url = proxy.url();
  const opts = { clients: 5, perClient: 30 };
  const v1 = () => runWorkload(url, c, ids, { ...opts, seed: s++ });
  const v2 = () => runWorkload(url, v2Case, ids, { ...opts, seed: s++ });
  /** Both versions see the same keys, the same as before; returns them. */
  const sameKeys = async (stage: string, before?: string[]) => {
    const [k1, k2] = [await keys(url, rc.keysOld), await keys(url, rc.keysNew)];
    expect(k2, `${stage}: v2 sees other keys than v1`).toEqual(k1);
    if (before) expect(k1, `${stage}: a switch changed the rows a version sees`).toEqual(before);
    return k1;
  };
  const flip = async (stage: string, sw: Switches) => {
    const before = await sameKeys(`before ${stage}`);
    await applyConfig(proxy, db, mappingConfig([m], { dualWrite: 'both', ...sw }));
    await sameKeys(stage, before);
  };
  try {
    // 2. dual-write both ways; only v1 runs. Rows that predate it are not in new yet.
    let w = await v1();
    push('dual-write', w, await checkImages(db, m, 'dual-write', true));

    // 3. backfill while v1 writes.
    const compiled = await compileMapping(db, m);
    const backfill = new Backfill(
      compiled,
      { connectionString: db.url },
      { ...DEFAULT_OPTIONS, batchSize: 40, chunkRows: 100, workers: 2, maxLagMs: 0 },
      silentLogger,
    );
    const [stats, bw] = await Promise.all([backfill.run(), v1()]);
    if (stats.outcome !== 'done') throw new Error(`backfill ended ${stats.outcome}`);
    push('backfill', bw, await checkImages(db, m, 'backfill'));

    // 4. reads new, v1 only.
    await flip('reads new', { reads: 'new' });
    w = await v1();
    push('reads new', w, await checkImages(db, m, 'reads new'));
    await compareReads(db, url, c, 'reads new');

    // 5. v2 starts writing by the new names, beside v1.
    w = sumWorkloads(await Promise.all([v1(), v2()]));
    push('v2 writes', w, await checkImages(db, m, 'v2 writes'));
    await sameKeys('v2 writes');
    await compareReads(db, url, { ...c, reads: rc.readsNew }, 'v2 reads');

    // 6. rollback: reads back to old, both versions still writing. v1 reads what v2 wrote.
    await flip('reads old (rollback)', { reads: 'old' });
    w = sumWorkloads(await Promise.all([v1(), v2()]));
    push('reads old (rollback)', w, await checkImages(db, m, 'reads old (rollback)'));
    await compareReads(db, url, c, 'reads old (rollback)');

    // 7. reads new again.
    await flip('reads new again', { reads: 'new' });
    w = sumWorkloads(await Promise.all([v1(), v2()]));
    push('reads new again', w, await checkImages(db, m, 'reads new again'));
    await compareReads(db, url, c, 'reads new again');

    // 8. v1 stops; v2 alone.
    w = await v2();
    push('v1 stops', w, await checkImages(db, m, 'v1 stops'));
    await sameKeys('v1 stops');

    // 9. contract: verify says no drift either way, the mapping goes, old is dropped, v2 goes on.
    const both = await compileMapping(db, m, { dualWrite: 'both' });
    for (const side of [both, both.reverse!]) {
      const r = await verifyMapping(
        side,
        { connectionString: db.url },
        DEFAULT_VERIFY_OPTIONS,
        silentLogger,
        {
          onDrift: () => {},
        },
      );
      const drift = r.drift.missing + r.drift.extra + r.drift.different;
      if (drift > 0)
        throw new Error(`contract: verify ${side.old.name} -> ${side.new.name} found ${drift} rows`);
    }
    await applyConfig(proxy, db, { mappings: [] });
    await handOverSequences(db, m.old, m.new);
    // No CASCADE: anything of new's that still depends on old makes this fail rather than vanish.
    await db.query(`DROP TABLE ${m.old}`);
    w = await v2();
    if (Object.keys(w.failed).some((code) => code !== '40P01' && code !== '23505')) {
      throw new Error(`contract: v2 failed after the old table was dropped: ${JSON.stringify(w.failed)}`);
    }
    const left = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${m.new}`);
    push('contract', w, left.rows[0].n);
    await compareReads(db, url, { ...c, reads: rc.readsNew }, 'contract');
  } finally {
    await proxy.close();
  }
  return report;
}

/** One rollout as a test file of its own. */
export function rolloutSuite(label: string, rc: RolloutCase, seed = 23): void {
  stagedSuite({
    prefix: 'ro',
    title: `${label}: two app versions through expand, dual-write both ways, backfill, reads new, v2 writes, rollback, reads new, v1 stops, contract`,
    stages: [
      'dual-write',
      'backfill',
      'reads new',
      'v2 writes',
      'reads old (rollback)',
      'reads new again',
      'v1 stops',
      'contract',
    ],
    minOk: 60,
    run: (db) => runRollout(db, rc, seed),
  });
}

// Drives one mapping through the whole migration, as an operator would:
// expand -> dual-write -> backfill (concurrent with writes) -> reads new -> reads old -> kill switch ->
// dual-write again (gap repaired). Concurrent clients send a seeded mix of
// writes through the proxy; after every stage the new table is compared with
// up(old) row for row, straight on Postgres (never through the proxy).
import pg from 'pg';
import postgres from 'postgres';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { Backfill, DEFAULT_OPTIONS } from '../../src/backfill/runner.ts';
import { parseConfigText } from '../../src/config/load.ts';
import { silentLogger } from '../../src/log.ts';
import { registry } from '../../src/metrics.ts';
import { quoteIdent } from '../../src/pg/ident.ts';
import type { CompiledMapping } from '../../src/rules/mapping.ts';
import {
  deleteOrphansSql,
  newUpColumnsSelect,
  qualified,
  upsertSql,
  upTypedSelect,
} from '../../src/rules/rowsql.ts';
import { compileRules } from '../../src/rules/ruleset.ts';
import { freshDatabase, type TestDatabase } from './db.ts';
import {
  type MappingCase,
  type MappingDefinition,
  type Stmt,
  seededRandom,
  workloadContext,
} from './mapping-cases.ts';
import { baseConfig, startProxy, type TestProxy } from './proxy.ts';

export type ClientMode = 'simple' | 'extended' | 'prepared' | 'transaction' | 'pipelined';
const MODES: ClientMode[] = ['simple', 'extended', 'prepared', 'transaction', 'pipelined'];

export interface Switches {
  dualWrite?: boolean | 'both';
  reads?: 'old' | 'new';
  killSwitch?: boolean;
  onUnmirrorable?: 'passthrough' | 'reject';
}

/** The proxy config for a set of mappings and switches, as the test proxy's extra config. */
export function mappingConfig(mappings: MappingDefinition[], s: Switches = {}): Record<string, unknown> {
  return {
    killSwitch: s.killSwitch ?? false,
    onUnmirrorable: s.onUnmirrorable ?? 'passthrough',
    mappings: mappings.map((m) => ({ ...m, dualWrite: s.dualWrite ?? true, reads: s.reads ?? 'old' })),
  };
}

/** Installs a new config in a running in-process proxy, as a reload would. */
export async function applyConfig(
  proxy: TestProxy,
  db: TestDatabase,
  extra: Record<string, unknown>,
): Promise<number> {
  const config = parseConfigText(stringify(baseConfig(db, extra)));
  const r = await proxy.runtime.store.apply({ config, hash: String(Math.random()) });
  return r.version;
}

export async function compileMapping(
  db: TestDatabase,
  m: MappingDefinition,
  s: Switches = {},
): Promise<CompiledMapping> {
  const config = parseConfigText(stringify(baseConfig(db, mappingConfig([m], s))));
  const rs = await compileRules(config);
  return rs.mappings[0];
}

/** `$n` replaced by literals, for sending a statement in the simple protocol. */
export function inlineParams(s: Stmt): string {
  return s.sql.replace(/\$(\d+)/g, (_, n: string) => literal(s.params[Number(n) - 1]));
}

function literal(v: unknown): string {
  if (v === null || v === undefined) return 'NULL';
  const text = String(
    (pg as unknown as { utils: { prepareValue(v: unknown): unknown } }).utils.prepareValue(v),
  );
  // Quoted like an untyped parameter: the server infers the type from context either way.
  return pg.escapeLiteral(text);
}

export interface WorkloadResult {
  statements: number;
  ok: number;
  /** Failed statements by SQLSTATE (only codes the case allows). */
  failed: Record<string, number>;
}

/** Several workloads run side by side, as one result (failures by SQLSTATE added up). */
export function sumWorkloads(ws: WorkloadResult[]): WorkloadResult {
  const failed: Record<string, number> = {};
  for (const w of ws) for (const [k, n] of Object.entries(w.failed)) failed[k] = (failed[k] ?? 0) + n;
  return {
    statements: ws.reduce((n, w) => n + w.statements, 0),
    ok: ws.reduce((n, w) => n + w.ok, 0),
    failed,
  };
}

export class UnexpectedError extends Error {
  override name = 'UnexpectedError';
}

async function exec(client: pg.Client, mode: ClientMode, s: Stmt, n: number): Promise<pg.QueryResult> {
  if (mode === 'simple') return client.query(inlineParams(s));
  if (mode === 'prepared' || (mode === 'transaction' && n % 2 === 0)) {
    return client.query({ name: statementName(s.sql), text: s.sql, values: s.params });
  }
  return client.query(s.sql, s.params);
}

const names = new Map<string, string>();
function statementName(sql: string): string {
  let n = names.get(sql);
  if (!n) {
    n = `w${names.size + 1}`;
    names.set(sql, n);
  }
  return n;
}

/**
 * Several clients at once, each with its own seeded stream of writes: one in
 * the simple protocol, one extended (unnamed), one with named prepared
 * statements, one grouping writes in transactions, and one (postgres.js)
 * pipelining several prepared statements on its connection without waiting.
 */
export async function runWorkload(
  url: string,
  c: MappingCase,
  keys: { next: number },
  opts: { clients: number; perClient: number; seed: number },
): Promise<WorkloadResult> {
  const result: WorkloadResult = { statements: 0, ok: 0, failed: {} };
  const fail = (code: string, n: number) => {
    result.failed[code] = (result.failed[code] ?? 0) + n;
  };
  const check = (e: unknown, what: string) => {
    const code = (e as { code?: string }).code ?? '';
    if (!c.allowedErrors.includes(code)) {
      throw new UnexpectedError(`${what}: ${code} ${(e as Error).message}`);
    }
    return code;
  };
  await Promise.all(
    Array.from({ length: opts.clients }, async (_, i) => {
      const mode = MODES[i % MODES.length];
      const ctx = workloadContext(seededRandom(opts.seed * 7919 + i), keys);
      if (mode === 'pipelined') {
        const sql = postgres(url, { max: 1, prepare: true, onnotice: () => {} });
        try {
          let n = 0;
          while (n < opts.perClient) {
            const batch = Array.from({ length: Math.min(ctx.int(2, 6), opts.perClient - n) }, () =>
              c.write(ctx),
            );
            n += batch.length;
            result.statements += batch.length;
            const settled = await Promise.allSettled(
              batch.map((s) => sql.unsafe(s.sql, s.params as never[], { prepare: true })),
            );
            settled.forEach((r, j) => {
              if (r.status === 'fulfilled') result.ok++;
              else fail(check(r.reason, `pipelined ${batch[j].sql} ${JSON.stringify(batch[j].params)}`), 1);
            });
          }
        } finally {
          await sql.end();
        }
        return;
      }
      const client = new pg.Client({ connectionString: url });
      await client.connect();
      try {
        let n = 0;
        while (n < opts.perClient) {
          if (mode === 'transaction') {
            const batch = Array.from({ length: Math.min(ctx.int(1, 4), opts.perClient - n) }, () =>
              c.write(ctx),
            );
            n += batch.length;
            result.statements += batch.length;
            await client.query('BEGIN');
            try {
              for (const [j, s] of batch.entries()) await exec(client, mode, s, j);
              await client.query('COMMIT');
              result.ok += batch.length;
            } catch (e) {
              await client.query('ROLLBACK');
              fail(
                check(
                  e,
                  `transaction [${batch.map((s) => `${s.sql} ${JSON.stringify(s.params)}`).join('; ')}]`,
                ),
                batch.length,
              );
            }
            continue;
          }
          const s = c.write(ctx);
          n++;
          result.statements++;
          try {
            await exec(client, mode, s, n);
            result.ok++;
          } catch (e) {
            fail(check(e, `${mode} ${s.sql} ${JSON.stringify(s.params)}`), 1);
          }
        }
      } finally {
        await client.end();
      }
    }),
  );
  return result;
}

type Row = Record<string, unknown>;

function keyOf(m: CompiledMapping, r: Row): string {
  return JSON.stringify(m.key.map((k) => String(r[k])));
}

function orderBy(m: CompiledMapping): string {
  return m.key.map(quoteIdent).join(', ');
}

/** up(old) as the new table would store it, and the new table, both keyed by the new key. */
export async function expectedAndActual(db: TestDatabase, m: CompiledMapping) {
  const expected = await db.query(
    `SELECT * FROM (${upTypedSelect(m, `SELECT * FROM ${qualified(m.old)}`)}) e ORDER BY ${orderBy(m)}`,
  );
  const actual = await db.query(`SELECT * FROM (${newUpColumnsSelect(m)}) a ORDER BY ${orderBy(m)}`);
  return { expected: expected.rows as Row[], actual: actual.rows as Row[] };
}

export interface RowDiff {
  missing: Row[];
  extra: Row[];
  different: { expected: Row; actual: Row }[];
}

export function diffRows(m: CompiledMapping, expected: Row[], actual: Row[]): RowDiff {
  const e = new Map(expected.map((r) => [keyOf(m, r), r]));
  const a = new Map(actual.map((r) => [keyOf(m, r), r]));
  const d: RowDiff = { missing: [], extra: [], different: [] };
  for (const [k, r] of e) {
    const x = a.get(k);
    if (!x) d.missing.push(r);
    else if (JSON.stringify(x) !== JSON.stringify(r)) d.different.push({ expected: r, actual: x });
  }
  for (const [k, r] of a) if (!e.has(k)) d.extra.push(r);
  return d;
}

export function describeDiff(d: RowDiff): string {
  const few = (xs: unknown[]) => JSON.stringify(xs.slice(0, 3));
  return (
    `missing ${d.missing.length} ${few(d.missing)}; extra ${d.extra.length} ${few(d.extra)}; ` +
    `different ${d.different.length} ${few(d.different)}`
  );
}

/** new == up(old), row for row. */
export async function checkEqual(db: TestDatabase, m: CompiledMapping, stage: string): Promise<number> {
  const { expected, actual } = await expectedAndActual(db, m);
  const d = diffRows(m, expected, actual);
  if (d.missing.length + d.extra.length + d.different.length > 0) {
    throw new Error(`${stage}: new table differs from up(old): ${describeDiff(d)}`);
  }
  return expected.length;
}

/**
 * Before the backfill: every row in new equals up(its old row), and every old
 * row that did not exist before dual-write started (`preexisting` keys) is in new.
 */
export async function checkSubset(
  db: TestDatabase,
  m: CompiledMapping,
  preexisting: Set<string>,
  stage: string,
): Promise<number> {
  const { expected, actual } = await expectedAndActual(db, m);
  const d = diffRows(m, expected, actual);
  const missingWritten = d.missing.filter((r) => !preexisting.has(keyOf(m, r)));
  if (d.extra.length + d.different.length + missingWritten.length > 0) {
    throw new Error(
      `${stage}: new table is not up(old) for the rows written so far: ${describeDiff({ ...d, missing: missingWritten })}`,
    );
  }
  return actual.length;
}

/** The reads, through the proxy (simple and extended) and straight on Postgres: same columns, types, rows. */
export async function compareReads(
  db: TestDatabase,
  proxyUrl: string,
  c: MappingCase,
  stage: string,
): Promise<void> {
  const client = new pg.Client({ connectionString: proxyUrl });
  await client.connect();
  try {
    for (const r of c.reads) {
      const direct = await db.query(r.sql, r.params);
      const want = shapeOf(direct);
      for (const [how, run] of [
        ['simple', () => client.query(inlineParams(r))],
        ['extended', () => client.query(r.sql, r.params)],
        ['prepared', () => client.query({ name: statementName(r.sql), text: r.sql, values: r.params })],
      ] as const) {
        let got: ReturnType<typeof shapeOf>;
        try {
          got = shapeOf(await run());
        } catch (e) {
          throw new Error(
            `${stage}: read ${how} failed through the proxy: ${r.sql}: ${(e as Error).message}`,
          );
        }
        if (JSON.stringify(got) !== JSON.stringify(want)) {
          throw new Error(
            `${stage}: read ${how} through the proxy differs from Postgres: ${r.sql}\n` +
              `proxy:  ${JSON.stringify(got).slice(0, 600)}\ndirect: ${JSON.stringify(want).slice(0, 600)}`,
          );
        }
      }
    }
  } finally {
    await client.end();
  }
}

function shapeOf(r: pg.QueryResult) {
  return {
    fields: r.fields.map((f) => [f.name, f.dataTypeID]),
    rows: r.rows,
    command: r.command,
    rowCount: r.rowCount,
  };
}

export interface StageReport {
  stage: string;
  /** Wall time of the stage's workload, checks included. */
  ms?: number;
  workload?: WorkloadResult;
  newRows: number;
}

export interface LifecycleOptions {
  clients?: number;
  perClient?: number;
  seed?: number;
}

/**
 * The whole lifecycle for one case on its own database. Throws at the first
 * stage whose check fails, naming the stage.
 */
export async function runLifecycle(
  db: TestDatabase,
  c: MappingCase,
  opts: LifecycleOptions = {},
): Promise<StageReport[]> {
  const clients = opts.clients ?? 5;
  const perClient = opts.perClient ?? 40;
  let seed = opts.seed ?? 1;
  const keys = { next: c.seededKeys + 1 };
  const report: StageReport[] = [];

  await db.query(c.setup);
  await db.query(c.expand);
  const m = await compileMapping(db, c.mapping);
  const proxy = await startProxy(db, mappingConfig([c.mapping]));
  const url = proxy.url();
  const workload = () => runWorkload(url, c, keys, { clients, perClient, seed: seed++ });
  let t0 = performance.now();
  const push = (r: StageReport) => {
    report.push({ ...r, ms: Math.round(performance.now() - t0) });
    t0 = performance.now();
  };

  try {
    // dual-write: rows written through the proxy reach new; older rows are not there yet.
    const preexisting = new Set((await expectedAndActual(db, m)).expected.map((r) => keyOf(m, r)));
    let w = await workload();
    const written = await checkSubset(db, m, preexisting, 'dual-write');
    if (written === 0) throw new Error('dual-write: no row reached the new table');
    push({ stage: 'dual-write', workload: w, newRows: written });

    // backfill the rows that predate dual-write with the project's backfill, while the
    // application keeps writing through the proxy: its dual-written rows are fresher and kept.
    const backfill = new Backfill(
      m,
      { connectionString: db.url },
      { ...DEFAULT_OPTIONS, batchSize: 40, chunkRows: 100, workers: 2, maxLagMs: 0 },
      silentLogger,
    );
    const [stats, bw] = await Promise.all([backfill.run(), workload()]);
    if (stats.outcome !== 'done') throw new Error(`backfill ended ${stats.outcome}`);
    push({ stage: 'backfill', workload: bw, newRows: await checkEqual(db, m, 'backfill') });

    // reads new: reads are served by new and look exactly like reads of old; writes still mirror.
    await applyConfig(proxy, db, mappingConfig([c.mapping], { reads: 'new' }));
    await compareReads(db, url, c, 'reads new');
    w = await workload();
    push({ stage: 'reads new', workload: w, newRows: await checkEqual(db, m, 'reads new') });
    await compareReads(db, url, c, 'reads new after writes');

    // reads back to old (the rollback of a read switch).
    await applyConfig(proxy, db, mappingConfig([c.mapping], { reads: 'old' }));
    w = await workload();
    push({ stage: 'reads old', workload: w, newRows: await checkEqual(db, m, 'reads old') });
    await compareReads(db, url, c, 'reads old');

    // kill switch: writes reach old only; new keeps exactly its state from before.
    const before = (await expectedAndActual(db, m)).expected;
    await applyConfig(proxy, db, mappingConfig([c.mapping], { killSwitch: true }));
    w = await workload();
    const after = await expectedAndActual(db, m);
    const frozen = diffRows(m, before, after.actual);
    if (frozen.missing.length + frozen.extra.length + frozen.different.length > 0) {
      throw new Error(`kill switch: new changed although nothing may be mirrored: ${describeDiff(frozen)}`);
    }
    const drift = diffRows(m, after.expected, after.actual);
    if (w.ok > 0 && drift.missing.length + drift.extra.length + drift.different.length === 0) {
      throw new Error(`kill switch: ${w.ok} writes succeeded but old still equals new: were they mirrored?`);
    }
    push({ stage: 'kill switch', workload: w, newRows: after.actual.length });

    // dual-write again: repair the gap the kill switch left, then keep writing.
    await applyConfig(proxy, db, mappingConfig([c.mapping]));
    await db.query(upsertSql(m, `SELECT * FROM ${qualified(m.old)}`, 'update'));
    await db.query(deleteOrphansSql(m, `SELECT ${orderBy(m)} FROM ${qualified(m.new)}`));
    await checkEqual(db, m, 'gap repaired');
    w = await workload();
    push({
      stage: 'dual-write again',
      workload: w,
      newRows: await checkEqual(db, m, 'dual-write again'),
    });
  } finally {
    await proxy.close();
  }
  return report;
}

/** The plan cache counters of this test file's process, printed for the run's report. */
export async function printPlanCache(label: string): Promise<{ hit: number; miss: number }> {
  const metric = await registry.getSingleMetric('switchyard_plan_cache_total')!.get();
  const count = (result: string) =>
    metric.values.filter((v) => v.labels.result === result).reduce((s, v) => s + v.value, 0);
  const hit = count('hit');
  const miss = count('miss');
  const rate = hit + miss === 0 ? 'n/a' : `${((100 * hit) / (hit + miss)).toFixed(1)}%`;
  console.log(`plan cache [${label}]: hit ${hit} miss ${miss} rate ${rate}`);
  return { hit, miss };
}

/** One line per stage: statements sent, succeeded, failed by SQLSTATE, rows in new. */
export function describeReport(report: StageReport[]): string {
  return report
    .map((r) => {
      const w = r.workload;
      const work = w
        ? `${w.statements} writes, ${w.ok} ok, failed ${JSON.stringify(w.failed)}`
        : 'no workload';
      return `${r.stage.padEnd(17)} ${work}; new has ${r.newRows} rows (${r.ms} ms)`;
    })
    .join('\n');
}

/**
 * A staged migration run as a test file of its own on a fresh database (one
 * file per shape lets the runner spread the shapes over its workers): the
 * stages must come in order, and every stage with a workload must really
 * have written.
 */
export function stagedSuite(o: {
  prefix: string;
  title: string;
  stages: string[];
  /** Writes every stage with a workload must have had succeed, at least. */
  minOk: number;
  run(db: TestDatabase): Promise<StageReport[]>;
  /** More checks of the report. */
  check?(report: StageReport[]): void;
  after?(): Promise<unknown>;
}): void {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await freshDatabase(o.prefix);
  });
  afterAll(async () => {
    await o.after?.();
    await db?.drop();
  });
  it(o.title, async () => {
    const report = await o.run(db);
    console.log(describeReport(report));
    expect(report.map((r) => r.stage)).toEqual(o.stages);
    for (const r of report) if (r.workload) expect(r.workload.ok).toBeGreaterThan(o.minOk);
    o.check?.(report);
  }, 240_000);
}

/** One mapping shape through the whole lifecycle. */
export function lifecycleSuite(label: string, mappingCase: MappingCase, seed = 11): void {
  stagedSuite({
    prefix: 'lc',
    title: `${label}: expand, dual-write, backfill, reads new, reads old, kill switch, dual-write again`,
    stages: ['dual-write', 'backfill', 'reads new', 'reads old', 'kill switch', 'dual-write again'],
    minOk: 100,
    run: (db) => runLifecycle(db, mappingCase, { seed }),
    check: (report) => expect(report.at(-1)!.newRows).toBeGreaterThan(0),
    after: () => printPlanCache(`lifecycle-${label}`),
  });
}

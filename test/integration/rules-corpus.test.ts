// The ORM corpus, planned by the Planner and run straight on Postgres: database
// A gets the planned SQL, database B (identical data) the original. What the
// client would see (extra column stripped, tag restored the way the proxy
// does it) must match, A's old tables must match B's, and after every
// statement each new table must equal up(old).
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configSchema } from '../../src/config/schema.ts';
import type { CompiledMapping } from '../../src/rules/mapping.ts';
import { type Plan, type PlanContext, Planner } from '../../src/rules/planner.ts';
import { newUpColumnsSelect, qualified, upsertSql, upTypedSelect } from '../../src/rules/rowsql.ts';
import { compileRules, type RuleSet } from '../../src/rules/ruleset.ts';
import { CORPUS_MAPPINGS, CORPUS_SCHEMA, CORPUS_SEED, ORM_CORPUS } from '../fixtures/orm-corpus.ts';
import { freshDatabase, type TestDatabase } from '../support/db.ts';

interface View {
  command: string;
  rowCount: number | null;
  fields: [string, number][];
  rows: unknown[][];
}

type Outcome = { ok: true; views: View[] } | { ok: false; code: string; message: string };

function viewOf(r: pg.QueryResult): View {
  return {
    command: r.command,
    rowCount: r.rowCount,
    // A user-defined type (a table's row type) has a different OID in each database.
    fields: r.fields.map((f) => [f.name, f.dataTypeID >= 16384 ? -1 : f.dataTypeID]),
    rows: r.rows as unknown[][],
  };
}

/** What the proxy makes of the planned statement's results. */
export function clientViews(plan: Plan, results: pg.QueryResult[]): View[] {
  return results.map((r, i) => {
    const shape = plan.statements[i] ?? { kind: 'forward' };
    const v = viewOf(r);
    if (shape.kind === 'forward') return v;
    expect(v.command).toBe('SELECT');
    if (shape.returning) {
      expect(v.fields[v.fields.length - 1][0]).toBe('__sy_row');
      return {
        command: shape.tag,
        rowCount: v.rows.length,
        fields: v.fields.slice(0, -1),
        rows: v.rows.map((row) => row.slice(0, -1)),
      };
    }
    expect(v.rows).toHaveLength(1);
    expect(v.fields).toEqual([['count', 20]]);
    return { command: shape.tag, rowCount: Number(v.rows[0][0]), fields: [], rows: [] };
  });
}

async function run(client: pg.Client, sql: string, params?: unknown[]): Promise<pg.QueryResult[] | Error> {
  try {
    const r = await client.query({ text: sql, values: params, rowMode: 'array' });
    return Array.isArray(r) ? (r as pg.QueryResult[]) : [r];
  } catch (e) {
    return e as Error;
  }
}

function outcome(r: pg.QueryResult[] | Error, views: (x: pg.QueryResult[]) => View[]): Outcome {
  if (r instanceof Error) {
    const e = r as Error & { code?: string };
    return { ok: false, code: e.code ?? '', message: e.message };
  }
  return { ok: true, views: views(r) };
}

function canonical(o: Outcome, ordered: boolean): unknown {
  if (!o.ok) return o;
  return o.views.map((v) => ({
    ...v,
    rows: ordered ? v.rows : [...v.rows].map((x) => JSON.stringify(x)).sort(),
  }));
}

export async function assertNewEqualsUp(client: pg.Client, m: CompiledMapping, label: string): Promise<void> {
  const up = upTypedSelect(m, `SELECT * FROM ${qualified(m.old)}`);
  const cur = newUpColumnsSelect(m);
  const missing = await client.query(`${up} EXCEPT ALL ${cur}`);
  const extra = await client.query(`${cur} EXCEPT ALL ${up}`);
  expect({ label, mapping: m.name, missing: missing.rows, extra: extra.rows }).toEqual({
    label,
    mapping: m.name,
    missing: [],
    extra: [],
  });
}

async function tableRows(client: pg.Client, table: string): Promise<string[]> {
  const r = await client.query(`SELECT t::text AS r FROM ${table} t`);
  return r.rows.map((x) => x.r).sort();
}

for (const reads of ['old', 'new'] as const) {
  describe(`ORM corpus through the planner (reads: ${reads})`, () => {
    let a: TestDatabase;
    let b: TestDatabase;
    let rules: RuleSet;
    let planner: Planner;
    const ctx: PlanContext = {
      searchPath: ['$user', 'public'],
      user: 'postgres',
      killSwitch: false,
      onUnmirrorable: 'passthrough',
      version: 1,
    };
    const routes = new Map<string, number>();

    beforeAll(async () => {
      a = await freshDatabase('corpa');
      b = await freshDatabase('corpb');
      for (const db of [a, b]) {
        await db.query(CORPUS_SCHEMA);
        await db.query(CORPUS_SEED);
      }
      const config = configSchema.parse({
        upstream: { url: a.url },
        mappings: CORPUS_MAPPINGS.map((m) => ({ ...m, reads })),
      });
      rules = await compileRules(config);
      planner = new Planner(rules);
      for (const m of rules.mappings) await a.query(upsertSql(m, `SELECT * FROM ${qualified(m.old)}`));
    });

    afterAll(async () => {
      await a?.drop();
      await b?.drop();
    });

    it('holds at least 60 statements', () => {
      expect(ORM_CORPUS.length).toBeGreaterThanOrEqual(60);
      expect(new Set(ORM_CORPUS.map((e) => e.id)).size).toBe(ORM_CORPUS.length);
    });

    for (const entry of ORM_CORPUS) {
      it(entry.id, async () => {
        const plan = planner.plan(entry.sql, ctx);
        routes.set(plan.route, (routes.get(plan.route) ?? 0) + 1);
        expect(plan.unmirrored).toBeUndefined();
        const got = outcome(await run(a.direct, plan.sql, entry.params), (r) => clientViews(plan, r));
        const want = outcome(await run(b.direct, entry.sql, entry.params), (r) => r.map(viewOf));
        const ordered = /order by/i.test(entry.sql);
        expect(canonical(got, ordered)).toEqual(canonical(want, ordered));
        expect(want.ok).toBe(!entry.fails);
        for (const m of rules.mappings) {
          expect(await tableRows(a.direct, qualified(m.old))).toEqual(
            await tableRows(b.direct, qualified(m.old)),
          );
          await assertNewEqualsUp(a.direct, m, entry.id);
        }
      });
    }

    it('mirrored every write and switched reads as configured', () => {
      expect(routes.get('mirrored_write') ?? 0).toBeGreaterThanOrEqual(30);
      if (reads === 'new') expect(routes.get('read_new') ?? 0).toBeGreaterThanOrEqual(15);
      else expect(routes.get('read_new') ?? 0).toBe(0);
    });
  });
}

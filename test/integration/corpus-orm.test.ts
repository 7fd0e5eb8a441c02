// The ORM corpus, statement by statement, through the proxy against one
// database and straight to Postgres against an identical second one: the
// client must see the same columns, types, rows, command tag and count (or
// the same SQLSTATE), and afterwards every new table must equal up(old).
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { parseConfigText } from '../../src/config/load.ts';
import { quoteIdent } from '../../src/pg/ident.ts';
import type { CompiledMapping } from '../../src/rules/mapping.ts';
import { qualified, upsertSql } from '../../src/rules/rowsql.ts';
import { compileRules } from '../../src/rules/ruleset.ts';
import {
  CORPUS_MAPPINGS,
  CORPUS_SCHEMA,
  CORPUS_SEED,
  type CorpusEntry,
  ORM_CORPUS,
} from '../fixtures/orm-corpus.ts';
import { freshDatabase, type TestDatabase } from '../support/db.ts';
import {
  applyConfig,
  checkEqual,
  inlineParams,
  mappingConfig,
  printPlanCache,
} from '../support/lifecycle.ts';
import type { MappingDefinition } from '../support/mapping-cases.ts';
import { baseConfig, startProxy, type TestProxy } from '../support/proxy.ts';

const MAPPINGS = CORPUS_MAPPINGS as unknown as MappingDefinition[];

let viaProxy: TestDatabase;
let direct: TestDatabase;
let proxy: TestProxy;
let compiled: CompiledMapping[];

async function reset(db: TestDatabase, backfill: boolean): Promise<void> {
  const tables = await db.query<{ t: string }>(
    "SELECT format('%I.%I', schemaname, tablename) AS t FROM pg_tables WHERE schemaname = 'public'",
  );
  await db.query(`TRUNCATE ${tables.rows.map((r) => r.t).join(', ')} RESTART IDENTITY`);
  await db.query(CORPUS_SEED);
  if (backfill) for (const m of compiled) await db.query(upsertSql(m, `SELECT * FROM ${qualified(m.old)}`));
}

beforeAll(async () => {
  [viaProxy, direct] = await Promise.all([freshDatabase('cp'), freshDatabase('cd')]);
  for (const db of [viaProxy, direct]) await db.query(CORPUS_SCHEMA);
  const config = parseConfigText(stringify(baseConfig(viaProxy, mappingConfig(MAPPINGS))));
  compiled = (await compileRules(config)).mappings;
  proxy = await startProxy(viaProxy, mappingConfig(MAPPINGS));
});

afterAll(async () => {
  await printPlanCache('corpus-orm');
  await proxy?.close();
  await viaProxy?.drop();
  await direct?.drop();
});

type Mode = 'simple' | 'extended' | 'prepared';

interface Outcome {
  fields?: [string, number | string][];
  rows?: unknown[];
  command?: string;
  rowCount?: number | null;
  error?: string;
}

/** Types created by the schema have different OIDs in the two databases: compare them by name. */
async function typeName(db: TestDatabase, oid: number): Promise<number | string> {
  if (oid < 16384) return oid;
  const r = await db.query<{ t: string }>('SELECT $1::regtype::text AS t', [oid]);
  return r.rows[0].t;
}

async function outcome(db: TestDatabase, r: pg.QueryResult): Promise<Outcome> {
  const fields: [string, number | string][] = [];
  for (const f of r.fields) fields.push([f.name, await typeName(db, f.dataTypeID)]);
  return { fields, rows: r.rows, command: r.command, rowCount: r.rowCount };
}

async function run(db: TestDatabase, client: pg.Client, e: CorpusEntry, mode: Mode): Promise<Outcome[]> {
  const params = e.params ?? [];
  try {
    const r: pg.QueryResult | pg.QueryResult[] =
      mode === 'simple'
        ? await client.query(inlineParams({ sql: e.sql, params }))
        : mode === 'prepared'
          ? await client.query({ name: `c_${e.id}`, text: e.sql, values: params })
          : await client.query(e.sql, params);
    // A simple Query with several statements answers with one result per statement.
    const all = Array.isArray(r) ? r : [r];
    const out: Outcome[] = [];
    for (const x of all) out.push(await outcome(db, x));
    return out;
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (!code) throw err;
    return [{ error: code }];
  }
}

/** old tables of both databases, row for row. */
async function oldTablesDiffer(): Promise<string[]> {
  const out: string[] = [];
  for (const m of compiled) {
    const sql = `SELECT * FROM ${qualified(m.old)} ORDER BY ${m.oldColumns.map((c) => quoteIdent(c.name)).join(', ')}`;
    const [a, b] = await Promise.all([viaProxy.query(sql), direct.query(sql)]);
    if (JSON.stringify(a.rows) !== JSON.stringify(b.rows)) {
      out.push(
        `${m.old.name}: through the proxy ${JSON.stringify(a.rows)} vs direct ${JSON.stringify(b.rows)}`,
      );
    }
  }
  return out;
}

const PASSES: { mode: Mode; reads: 'old' | 'new' }[] = [
  { mode: 'extended', reads: 'old' },
  { mode: 'simple', reads: 'old' },
  { mode: 'prepared', reads: 'new' },
  { mode: 'simple', reads: 'new' },
];

describe('ORM corpus through the proxy equals Postgres', () => {
  it('has at least 60 statements in every style', () => {
    expect(ORM_CORPUS.length).toBeGreaterThanOrEqual(60);
    const styles = new Set(ORM_CORPUS.map((e) => e.style));
    for (const s of ['prisma', 'typeorm', 'knex', 'drizzle', 'hand']) expect(styles).toContain(s);
  });

  for (const pass of PASSES) {
    it(`${pass.mode} protocol, reads ${pass.reads}`, async () => {
      await Promise.all([reset(viaProxy, true), reset(direct, false)]);
      await applyConfig(proxy, viaProxy, mappingConfig(MAPPINGS, { reads: pass.reads }));
      const a = new pg.Client({ connectionString: proxy.url() });
      const b = new pg.Client({ connectionString: direct.url });
      await Promise.all([a.connect(), b.connect()]);
      const mismatches: string[] = [];
      try {
        for (const e of ORM_CORPUS) {
          const want = await run(direct, b, e, pass.mode);
          const got = await run(viaProxy, a, e, pass.mode);
          if (e.fails && !want[0].error) mismatches.push(`${e.id}: expected to fail on Postgres but did not`);
          if (JSON.stringify(got) !== JSON.stringify(want)) {
            mismatches.push(
              `${e.id}: ${e.sql} ${JSON.stringify(e.params ?? [])}\n    proxy:  ${JSON.stringify(got)}\n    direct: ${JSON.stringify(want)}`,
            );
          }
        }
      } finally {
        await Promise.all([a.end(), b.end()]);
      }
      mismatches.push(...(await oldTablesDiffer()));
      for (const m of compiled) {
        try {
          await checkEqual(viaProxy, m, `${pass.mode}/${pass.reads} ${m.name}`);
        } catch (err) {
          mismatches.push((err as Error).message);
        }
      }
      expect(mismatches, mismatches.join('\n')).toEqual([]);
    });
  }
});

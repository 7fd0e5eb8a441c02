// Simple-protocol statements whose literals change every time (psycopg2,
// Rails without prepares, psql scripts) are planned once per shape: the plan
// cache hits with the current literals put back, each answer is what Postgres
// answers directly, and the new table stays up(old). Runs on PG 15 too, where a
// key-moving UPDATE copies the client's WHERE (and its literal) into a pre-read.
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { registry } from '../../src/metrics.ts';
import type { CompiledMapping } from '../../src/rules/mapping.ts';
import { freshDatabase, type TestDatabase } from '../support/db.ts';
import { checkEqual, compileMapping, mappingConfig } from '../support/lifecycle.ts';
import type { MappingDefinition } from '../support/mapping-cases.ts';
import { startProxy, type TestProxy } from '../support/proxy.ts';

let viaProxy: TestDatabase;
let direct: TestDatabase;
let proxy: TestProxy;
let m: CompiledMapping;
let a: pg.Client;
let b: pg.Client;

const items: MappingDefinition = {
  name: 'items',
  old: 'items',
  new: 'items_v2',
  key: ['id'],
  up: { id: 'id', label: 'upper(name)', qty: 'qty::bigint * 10' },
  down: { id: 'id', name: 'lower(label)', qty: '(qty / 10)::int' },
};

const SCHEMA = `
  CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL, qty int NOT NULL);
  CREATE TABLE items_v2 (id int PRIMARY KEY, label text NOT NULL, qty bigint NOT NULL);`;

async function count(labels: Record<string, string>): Promise<number> {
  const metric = await registry.getSingleMetric('switchyard_plan_cache_total')!.get();
  return metric.values
    .filter((v) => Object.entries(labels).every(([k, want]) => String(v.labels[k]) === want))
    .reduce((s, v) => s + v.value, 0);
}

async function outcome(c: pg.Client, sql: string): Promise<unknown> {
  try {
    const r = await c.query(sql);
    return {
      command: r.command,
      rowCount: r.rowCount,
      fields: r.fields.map((f) => [f.name, f.dataTypeID]),
      rows: r.rows,
    };
  } catch (e) {
    return { error: (e as { code?: string }).code ?? (e as Error).message };
  }
}

beforeAll(async () => {
  [viaProxy, direct] = await Promise.all([freshDatabase('msc'), freshDatabase('mscd')]);
  for (const db of [viaProxy, direct]) await db.query(SCHEMA);
  m = await compileMapping(viaProxy, items);
  proxy = await startProxy(viaProxy, mappingConfig([items]));
  a = new pg.Client({ connectionString: proxy.url() });
  b = new pg.Client({ connectionString: direct.url });
  await Promise.all([a.connect(), b.connect()]);
});

afterAll(async () => {
  await Promise.all([a?.end(), b?.end()]);
  await proxy?.close();
  await viaProxy?.drop();
  await direct?.drop();
});

/** Six shapes; every literal changes from one round to the next. */
function round(i: number): string[] {
  const name = i % 3 === 0 ? `o''neil ${i}` : `item ${i}`;
  return [
    `INSERT INTO items (id, name, qty) VALUES (${i}, '${name}', ${i % 7}) RETURNING id, name, qty, 'ins ${i}'`,
    `UPDATE items SET qty = qty + ${i % 5}, name = name || E'\\'${i}' WHERE id = ${i} RETURNING qty, -${i}`,
    `SELECT id, name, qty FROM items WHERE id = ${i} AND name <> 'x${i}'`,
    `UPDATE items SET id = id + 100000 WHERE id = ${i - 3} AND qty >= ${i % 2}`,
    `DELETE FROM items WHERE id = ${i - 5} + 100000 RETURNING id, 'gone'`,
    `SELECT count(*), sum(qty) FROM items WHERE id < ${i * 1000}`,
  ];
}

describe('plan cache by statement shape, simple protocol', () => {
  it('plans each shape once and answers every statement as Postgres does directly', async () => {
    const ROUNDS = 40;
    const before = {
      hit: await count({ result: 'hit', key: 'shape' }),
      miss: await count({ result: 'miss' }),
      mirroredHits: await count({ result: 'hit', route: 'mirrored_write' }),
    };
    let statements = 0;
    for (let i = 10; i < 10 + ROUNDS; i++) {
      for (const sql of round(i)) {
        const want = await outcome(b, sql);
        expect(await outcome(a, sql), sql).toEqual(want);
        expect(want, sql).not.toHaveProperty('error');
        statements++;
      }
    }
    const shapes = round(0).length;
    expect(await count({ result: 'miss' })).toBe(before.miss + shapes);
    expect(await count({ result: 'hit', key: 'shape' })).toBe(before.hit + statements - shapes);
    expect(await count({ result: 'hit', route: 'mirrored_write' })).toBe(
      before.mirroredHits + 4 * (ROUNDS - 1),
    );
    await checkEqual(viaProxy, m, 'after the literal stream');
    const [olds, news] = await Promise.all([
      viaProxy.query('SELECT count(*)::int AS n FROM items'),
      viaProxy.query('SELECT count(*)::int AS n FROM items_v2'),
    ]);
    expect(olds.rows[0].n).toBeGreaterThan(0);
    expect(news.rows[0].n).toBe(olds.rows[0].n);
  });
});

// The plan cache keyed on statement shape: literals become slots, the cached
// rewrite is refilled by position, and the result is always the plan an
// uncached planner makes for the same text.
import { beforeAll, describe, expect, it } from 'vitest';
import { configSchema } from '../../src/config/schema.ts';
import { registry } from '../../src/metrics.ts';
import type { CompiledMapping } from '../../src/rules/mapping.ts';
import { type PlanContext, Planner } from '../../src/rules/planner.ts';
import { type RuleSet, relationKey } from '../../src/rules/ruleset.ts';
import { loadParser } from '../../src/sql/parse.ts';
import { shapeOf } from '../../src/sql/shape.ts';

function users(reads: 'old' | 'new' = 'old'): CompiledMapping {
  const cols = ['id', 'n', 'name'];
  const exprs = Object.fromEntries(cols.map((c) => [c, `"${c}"`]));
  const config = configSchema.parse({
    upstream: { host: 'x' },
    mappings: [
      {
        name: 'users',
        old: 'public.users',
        new: 'public.users_v2',
        key: ['id'],
        up: exprs,
        down: exprs,
        reads,
      },
    ],
  }).mappings[0];
  return {
    name: 'users',
    config,
    old: { schema: 'public', name: 'users' },
    new: { schema: 'public', name: 'users_v2' },
    key: ['id'],
    up: cols.map((c) => ({ column: c, expr: `"${c}"` })),
    down: cols.map((c) => ({ column: c, expr: `"${c}"` })),
    oldColumns: cols.map((c) => ({ name: c, type: c === 'name' ? 'text' : 'integer' })),
    newColumns: cols.map((c) => ({ name: c, type: c === 'name' ? 'text' : 'bigint' })),
  };
}

function rules(serverVersion: number, reads: 'old' | 'new' = 'old'): RuleSet {
  return {
    mappings: [users(reads)],
    database: 'app',
    serverVersion,
    relations: new Set([relationKey('public', 'users'), relationKey('public', 'users_v2')]),
  };
}

const ctx: PlanContext = {
  searchPath: ['$user', 'public'],
  user: 'bob',
  killSwitch: false,
  onUnmirrorable: 'passthrough',
  version: 1,
};

async function cacheCount(labels: Record<string, string>): Promise<number> {
  const m = await registry.getSingleMetric('switchyard_plan_cache_total')!.get();
  return m.values
    .filter((v) => Object.entries(labels).every(([k, want]) => String(v.labels[k]) === want))
    .reduce((s, v) => s + v.value, 0);
}

/** Plans `first`, then each of `rest` through the same planner; every plan must equal an uncached one. */
function planSeries(r: RuleSet, texts: string[], c: PlanContext = ctx) {
  const cached = new Planner(r);
  return texts.map((sql) => {
    const got = cached.plan(sql, c);
    const fresh = new Planner(r).plan(sql, c);
    expect(got, sql).toEqual(fresh);
    return { got, hits: cached.cache.hits, misses: cached.cache.misses };
  });
}

beforeAll(async () => {
  await loadParser();
});

describe('shapeOf', () => {
  it('slots numbers and plain and E strings, keeping their kind, and keeps the rest exact', () => {
    const s = shapeOf(
      `UPDATE users SET name = 'it''s', n = -5 WHERE id = 42 AND x = E'a\\'b' AND y = 1.5e3`,
    )!;
    expect(s.literals).toEqual([`'it''s'`, '5', '42', `E'a\\'b'`, '1.5e3']);
    expect(s.classes).toEqual(['s', 'i', 'i', 'e', 'f']);
    expect(s.key).toBe('UPDATE users SET name = \0s, n = -\0i WHERE id = \0i AND x = \0e AND y = \0f');
    expect(shapeOf('SELECT * FROM users WHERE id = 7')!.key).toBe(
      shapeOf('SELECT * FROM users WHERE id = 123456')!.key,
    );
    // Kind, identifiers, operators, spacing and comments stay in the key.
    const key = (sql: string) => shapeOf(sql)!.key;
    expect(key(`SELECT * FROM users WHERE id = '7'`)).not.toBe(key('SELECT * FROM users WHERE id = 7'));
    expect(key('SELECT * FROM users WHERE id > 7')).not.toBe(key('SELECT * FROM users WHERE id = 7'));
    expect(key('SELECT * FROM users WHERE n = 7')).not.toBe(key('SELECT * FROM users WHERE id = 7'));
    expect(key('SELECT * FROM users /* 7 */ WHERE id = 7')).toBe(
      'SELECT * FROM users /* 7 */ WHERE id = \0i',
    );
  });

  it('keeps the exact text where a literal can change the plan', () => {
    for (const sql of [
      "SET search_path = 'app'",
      "SET ROLE 'bob'",
      'RESET search_path',
      "SELECT set_config('search_path', 'app', false) FROM users WHERE id = 1",
      "SELECT pg_catalog.\"set_config\"('search_path', 'app', false)",
      "DO 'BEGIN UPDATE users SET n = 1; END'",
      'DO $$BEGIN UPDATE users SET n = 1; END$$',
      "CREATE FUNCTION f() RETURNS void LANGUAGE sql AS 'UPDATE users SET n = 1'",
      'PREPARE p AS UPDATE users SET n = 1',
      "COPY users FROM PROGRAM 'x'",
      'EXPLAIN ANALYZE UPDATE users SET n = 1',
      "UPDATE users SET n = 1; SET search_path = 'app'",
      "SELECT 'a'\n'b' FROM users",
      "SELECT U&'d\\0061t' UESCAPE '\\' FROM users",
      'SELECT * FROM users WHERE id = 0x1F',
      'SELECT * FROM users',
    ]) {
      expect(shapeOf(sql), sql).toBeUndefined();
    }
    // Dollar-quoted, bit, hex and national strings are left in the key as they are.
    expect(shapeOf("SELECT $q$x$q$, B'101', X'1F', N'x', 5 FROM users")!.key).toBe(
      "SELECT $q$x$q$, B'101', X'1F', N'x', \0i FROM users",
    );
  });
});

describe('plan cache by shape', () => {
  it('plans a pgbench-like stream once per shape, each plan as an uncached planner makes it', async () => {
    const h0 = await cacheCount({ result: 'hit', route: 'mirrored_write', key: 'shape' });
    const texts: string[] = [];
    for (let i = 0; i < 50; i++) {
      const id = (i * 7919) % 1000;
      texts.push(`UPDATE users SET n = n + ${i % 3} WHERE id = ${id}`);
      texts.push(`SELECT id, n FROM users WHERE id = ${id}`);
    }
    const out = planSeries(rules(18), texts);
    expect(out.at(-1)).toMatchObject({ misses: 2, hits: 98 });
    expect(out[0].got.route).toBe('mirrored_write');
    expect(out[1].got.route).toBe('read_old');
    expect(await cacheCount({ result: 'hit', route: 'mirrored_write', key: 'shape' })).toBe(h0 + 49);
  });

  it('puts back strings with quotes, E strings, negative numbers and literals in RETURNING', () => {
    const out = planSeries(rules(18, 'new'), [
      `INSERT INTO users (id, n, name) VALUES (1, -2, 'plain') RETURNING id, n + 10, 'r1'`,
      `INSERT INTO users (id, n, name) VALUES (3, -40, 'it''s') RETURNING id, n + 20, 'r''2'`,
      `INSERT INTO users (id, n, name) VALUES (5, -6, 'x') RETURNING id, n + 1, 'a'`,
      `UPDATE users SET name = E'tab\\there \\'q\\'' WHERE id = 3 RETURNING name, 7`,
      `UPDATE users SET name = E'\\\\' WHERE id = 99 RETURNING name, 8`,
      `SELECT name, 'lit' FROM users WHERE id = 1 AND name <> 'z'`,
      `SELECT name, 'o''k' FROM users WHERE id = 12 AND name <> ''`,
    ]);
    expect(out.map((o) => o.got.route)).toEqual([
      'mirrored_write',
      'mirrored_write',
      'mirrored_write',
      'mirrored_write',
      'mirrored_write',
      'read_new',
      'read_new',
    ]);
    expect(out[1].got.sql).toContain(`VALUES (3, -40, 'it''s') RETURNING id, n + 20, 'r''2'`);
    expect(out.at(-1)).toMatchObject({ misses: 3, hits: 4 });
  });

  it('fills a literal the PG 15 pre-read copies, in both places', () => {
    const out = planSeries(rules(15), [
      'UPDATE users SET id = id + 1 WHERE n = 17',
      'UPDATE users SET id = id + 1 WHERE n = 23',
    ]);
    const sql = out[1].got.sql;
    expect(sql.match(/n = 23/g)).toHaveLength(2);
    expect(sql).not.toContain('17');
    expect(sql).toContain('"__sy_pre"');
    expect(out[1]).toMatchObject({ misses: 1, hits: 1 });
  });

  it('keeps exact texts for dollar quotes, SET and the kill switch, search_path and role in the key', () => {
    const r = rules(18);
    const p = new Planner(r);
    p.plan('SELECT $a$x$a$ FROM users WHERE id = 1', ctx);
    p.plan('SELECT $a$y$a$ FROM users WHERE id = 1', ctx);
    p.plan('SELECT $a$y$a$ FROM users WHERE id = 2', ctx);
    expect([p.cache.hits, p.cache.misses]).toEqual([1, 2]);
    const q = new Planner(r);
    for (const c of [
      ctx,
      { ...ctx, killSwitch: true },
      { ...ctx, user: 'eve' },
      { ...ctx, searchPath: ['app'] },
    ]) {
      q.plan('UPDATE users SET n = 1 WHERE id = 2', c);
      expect(q.plan('UPDATE users SET n = 3 WHERE id = 4', c)).toEqual(
        new Planner(r).plan('UPDATE users SET n = 3 WHERE id = 4', c),
      );
    }
    expect([q.cache.hits, q.cache.misses]).toEqual([4, 4]);
  });

  it('serves a text that comes again from the recent texts, as the same plan', () => {
    const t = (id: number) => `UPDATE users SET n = n + 1 WHERE id = ${id} RETURNING n, ${id}`;
    const out = planSeries(rules(15), [t(1), t(1), t(2), t(2), t(2), t(1), t(3), t(2)]);
    expect(out[1].got).toBe(out[0].got);
    expect(out[4].got).toBe(out[3].got);
    expect(out[7].got).toBe(out[3].got);
    expect(out.at(-1)).toMatchObject({ misses: 1, hits: 7 });
  });

  it('falls back to the exact text when the rewrite carries a sentinel outside a token', () => {
    // The text already holds what looks like a sentinel: exact-text caching.
    const out = planSeries(rules(18), [
      'UPDATE users SET n = 1 WHERE id = 2 /* 1987650001 */',
      'UPDATE users SET n = 3 WHERE id = 4 /* 1987650001 */',
      'UPDATE users SET n = 3 WHERE id = 4 /* 1987650001 */',
    ]);
    expect(out.at(-1)).toMatchObject({ misses: 2, hits: 1 });
  });
});

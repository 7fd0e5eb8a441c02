import { beforeAll, describe, expect, it } from 'vitest';
import { loadParser, parseSql } from '../../src/sql/parse.ts';
import { collectRefs } from '../../src/sql/refs.ts';

beforeAll(async () => {
  await loadParser();
});

function refs(sql: string) {
  const p = parseSql(sql);
  return collectRefs(p.statements[0]).refs.map((r) => ({
    at: p.bytes.subarray(r.location).toString(),
    name: r.schema ? `${r.schema}.${r.name}` : r.name,
    alias: r.alias,
    use: r.use,
    cte: r.cte,
    form: r.form,
  }));
}

const brief = (sql: string) =>
  refs(sql).map((r) => `${r.name}:${r.use}${r.cte ? ':cte' : ''}${r.form ? `:${r.form}` : ''}`);

describe('collectRefs', () => {
  it('reads schema, case-preserved quoted names, aliases and byte locations', () => {
    const r = refs(`SELECT 'ü' FROM "Schéma"."Order" AS o JOIN users u ON true, public.Accounts`);
    expect(r.map((x) => [x.name, x.alias, x.use])).toEqual([
      ['Schéma.Order', 'o', 'read'],
      ['users', 'u', 'read'],
      ['public.accounts', undefined, 'read'],
    ]);
    expect(r[0].at.startsWith('"Schéma"."Order" AS o')).toBe(true);
    expect(r[2].at).toBe('public.Accounts');
  });

  it('tells CTE names from tables, with non-recursive CTEs not seeing themselves', () => {
    expect(brief('WITH users AS (SELECT * FROM users) SELECT * FROM users, orders')).toEqual([
      'users:read',
      'users:read:cte',
      'orders:read',
    ]);
    expect(brief('WITH RECURSIVE t AS (SELECT 1 UNION ALL SELECT * FROM t) SELECT * FROM t')).toEqual([
      't:read:cte',
      't:read:cte',
    ]);
    expect(brief('WITH x AS (SELECT 1) SELECT * FROM public.x')).toEqual(['public.x:read']);
  });

  it('marks write targets and the forms that cannot be wrapped', () => {
    expect(brief('INSERT INTO users SELECT * FROM users_old')).toEqual(['users:write:dml', 'users_old:read']);
    expect(brief('UPDATE users u SET n = 1 FROM orders o WHERE o.id = u.id')).toEqual([
      'users:write:dml',
      'orders:read',
    ]);
    expect(brief('DELETE FROM users USING orders WHERE true')).toEqual(['users:write:dml', 'orders:read']);
    expect(brief('WITH d AS (DELETE FROM users RETURNING id) SELECT * FROM d')).toEqual([
      'users:write:nested',
      'd:read:cte',
    ]);
    expect(brief('TRUNCATE users, orders')).toEqual(['users:write:truncate', 'orders:write:truncate']);
    expect(brief('COPY users FROM STDIN')).toEqual(['users:write:copy']);
    expect(brief('COPY users TO STDOUT')).toEqual(['users:other']);
    expect(brief('MERGE INTO users USING src ON true WHEN MATCHED THEN DELETE')).toEqual([
      'users:write:merge',
      'src:read',
    ]);
    expect(brief('EXPLAIN ANALYZE DELETE FROM users')).toEqual(['users:write:explain']);
    expect(brief('EXPLAIN DELETE FROM users')).toEqual(['users:other']);
    expect(brief('PREPARE p AS UPDATE users SET a = 1')).toEqual(['users:write:prepare']);
    expect(brief('ALTER TABLE users ADD COLUMN x int')).toEqual(['users:other']);
  });

  it('marks locking reads, by name or for the whole FROM list', () => {
    expect(brief('SELECT * FROM users u JOIN orders o ON true FOR UPDATE OF u')).toEqual([
      'users:lock',
      'orders:read',
    ]);
    expect(brief('SELECT * FROM users, (SELECT * FROM orders) s FOR SHARE')).toEqual([
      'users:lock',
      'orders:lock',
    ]);
    expect(brief('SELECT * FROM users WHERE id IN (SELECT id FROM orders) FOR NO KEY UPDATE')).toEqual([
      'users:lock',
      'orders:read',
    ]);
  });

  it('finds references in subqueries, lateral joins, set operations and sublinks', () => {
    expect(
      brief(
        'SELECT (SELECT 1 FROM a) FROM b LEFT JOIN LATERAL (SELECT * FROM c) x ON true WHERE EXISTS (SELECT 1 FROM d) UNION SELECT 1 FROM e',
      ).sort(),
    ).toEqual(['a:read', 'b:read', 'c:read', 'd:read', 'e:read']);
  });

  it('flags WHERE CURRENT OF, bare whole-row names and schema-qualified column references', () => {
    const p = parseSql('UPDATE users SET a = 1 WHERE CURRENT OF c');
    expect(collectRefs(p.statements[0]).whereCurrentOf).toBe(true);
    const q = parseSql('SELECT m, public.users.id FROM users m');
    const info = collectRefs(q.statements[0]);
    expect([...info.bareNames]).toEqual(['m']);
    expect(info.longColumnRefs.map((l) => l.parts)).toEqual([['public', 'users']]);
  });
});

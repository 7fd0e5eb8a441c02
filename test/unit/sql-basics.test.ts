import { beforeAll, describe, expect, it } from 'vitest';
import { loadParser, parseSql, SqlParseError } from '../../src/sql/parse.ts';
import { PlanCache } from '../../src/sql/plan-cache.ts';
import { Prefilter } from '../../src/sql/prefilter.ts';
import { effectiveSchemas, parseSearchPath } from '../../src/sql/search-path.ts';

beforeAll(async () => {
  await loadParser();
});

describe('parseSql', () => {
  it('gives each statement its byte range, multi-byte text included', () => {
    const sql = `SELECT 'é'; INSERT INTO "Ü" VALUES (1) ;SELECT 2`;
    const p = parseSql(sql);
    expect(p.statements.map((s) => s.kind)).toEqual(['SelectStmt', 'InsertStmt', 'SelectStmt']);
    const texts = p.statements.map((s) => p.bytes.subarray(s.start, s.end).toString('utf8').trim());
    expect(texts).toEqual([`SELECT 'é'`, 'INSERT INTO "Ü" VALUES (1)', 'SELECT 2']);
  });

  it('throws SqlParseError on bad SQL', () => {
    expect(() => parseSql('SELEC 1')).toThrow(SqlParseError);
  });
});

describe('Prefilter', () => {
  const f = new Prefilter(['users', 'Order', 'café', 'we"ird']);
  it('matches mapped names case-insensitively, wherever they appear', () => {
    expect(f.matches('select * from USERS')).toBe(true);
    expect(f.matches('select * from "Order"')).toBe(true);
    expect(f.matches('select * from "CAFÉ"')).toBe(true);
    expect(f.matches('select * from "we""ird"')).toBe(true);
  });
  it('rejects text naming none of them', () => {
    expect(f.matches('select 1')).toBe(false);
    expect(f.matches('select * from accounts')).toBe(false);
  });
  it('matches nothing when there are no names', () => {
    expect(new Prefilter([]).matches('select * from users')).toBe(false);
  });
});

describe('PlanCache', () => {
  it('evicts the least recently used entry and counts hits and misses', () => {
    const c = new PlanCache<number>(2);
    c.set('a', 1);
    c.set('b', 2);
    expect(c.get('a')).toBe(1);
    c.set('c', 3);
    expect(c.get('b')).toBeUndefined();
    expect(c.get('a')).toBe(1);
    expect(c.get('c')).toBe(3);
    expect([c.hits, c.misses, c.size]).toEqual([3, 1, 2]);
  });
  it('keys by context and text', () => {
    expect(PlanCache.key('select 1', 'v1')).not.toBe(PlanCache.key('select 1', 'v2'));
  });
});

describe('search_path', () => {
  it('parses quoted, unquoted and $user entries as Postgres does', () => {
    expect(parseSearchPath('"$user", public')).toEqual(['$user', 'public']);
    expect(parseSearchPath('"My Schema",Other ,  "a""b"')).toEqual(['My Schema', 'other', 'a"b']);
    expect(parseSearchPath('')).toEqual([]);
  });
  it('puts pg_catalog first unless listed and substitutes the role for $user', () => {
    expect(effectiveSchemas(['$user', 'public'], 'app')).toEqual(['pg_catalog', 'app', 'public']);
    expect(effectiveSchemas(['public', 'pg_catalog'], 'app')).toEqual(['public', 'pg_catalog']);
  });
});

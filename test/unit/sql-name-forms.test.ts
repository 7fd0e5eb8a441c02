// Every spelling of a name Postgres would resolve to a mapped table reaches
// the planner; the pieces of a statement a pre-read copies are checked for
// calls that could tell they ran twice; set_config and SET ROLE are read as
// the server reads them.
import { beforeAll, describe, expect, it } from 'vitest';
import { roleChanges, searchPathChange } from '../../src/rules/planner.ts';
import { loadParser, parseSql } from '../../src/sql/parse.ts';
import { decodeUnicodeIdentifiers, Prefilter } from '../../src/sql/prefilter.ts';
import { sideEffectIn } from '../../src/sql/side-effects.ts';

beforeAll(async () => {
  await loadParser();
});

describe('prefilter', () => {
  const p = new Prefilter(['acct', 'acct_v2']);
  const words = new Prefilter(['acct'], true);
  it('lets every Unicode-escaped identifier through to the parser', () => {
    for (const sql of [
      'INSERT INTO U&"\\0061cct" VALUES (1)',
      'INSERT INTO u&"!0061cct" UESCAPE \'!\' VALUES (1)',
      'DELETE FROM U&"\\+000061cct"',
    ]) {
      expect(p.matches(sql), sql).toBe(true);
      expect(words.matches(sql), sql).toBe(true);
    }
    expect(p.matches('SELECT 1')).toBe(false);
    // U& then a space is not an identifier: nothing to parse.
    expect(p.matches('SELECT U& "x"')).toBe(false);
    expect(words.matches('INSERT INTO U&"\\0062cct" VALUES (1)')).toBe(false);
  });

  it('decodes escapes as Postgres does', () => {
    expect(decodeUnicodeIdentifiers('U&"d\\0061t\\+000061"')).toBe('"data"');
    expect(decodeUnicodeIdentifiers('U&"d!0061t!!" UESCAPE \'!\'')).toBe('"dat!"');
    expect(decodeUnicodeIdentifiers('U&"a""\\0062"')).toBe('"a""b"');
    expect(decodeUnicodeIdentifiers('U&"\\zz"')).toBe('U&"\\zz"');
  });
});

describe('side effects in a copied WHERE', () => {
  const where = (sql: string) => parseSql(`UPDATE t SET id = 1 WHERE ${sql}`).statements[0].node.whereClause;
  it('flags any function not known to be side-effect free', () => {
    expect(sideEffectIn(where('id = 12 AND bump()'), { catalogFirst: true })).toBe('a call of bump()');
    expect(
      sideEffectIn(where('id = (SELECT max(x) FROM s WHERE random() > 0.5)'), { catalogFirst: true }),
    ).toBe('a call of random()');
    expect(sideEffectIn(where('x > clock_timestamp()'), { catalogFirst: true })).toBe(
      'a call of clock_timestamp()',
    );
    expect(sideEffectIn(where('app.lower(v) = 1'), { catalogFirst: true })).toBe('a call of app.lower()');
    expect(sideEffectIn(where("lower(v) = 'a'"), { catalogFirst: false })).toBe('a call of lower()');
  });
  it('accepts built-ins that cannot tell', () => {
    for (const w of [
      "lower(v) = 'a' AND id = ANY($1)",
      "pg_catalog.date_trunc('day', c) = now()",
      'coalesce(a, b) > 1 AND id IN (SELECT 1)',
    ]) {
      expect(sideEffectIn(where(w), { catalogFirst: true }), w).toBeUndefined();
    }
  });
});

describe('name-resolution changes', () => {
  it("reads set_config('search_path', ...) with literal arguments", () => {
    expect(searchPathChange("SELECT set_config('search_path', 'shadow, public', false)")).toEqual({
      value: ['shadow', 'public'],
      local: false,
    });
    expect(searchPathChange("SELECT pg_catalog.set_config('search_path', '\"$user\",x', true)")).toEqual({
      value: ['$user', 'x'],
      local: true,
    });
    expect(searchPathChange("SELECT set_config('search_path', $1, false)")).toBeUndefined();
    expect(searchPathChange("SELECT set_config('search_path', 'x', false) FROM t")).toBeUndefined();
    expect(searchPathChange('SET U&"\\0073earch_path" = app')).toEqual({ value: ['app'], local: false });
  });

  it('reads SET ROLE and SET SESSION AUTHORIZATION', () => {
    expect(roleChanges('SET ROLE evil; SET LOCAL ROLE "Mixed"; SET ROLE NONE; RESET ROLE')).toEqual([
      { what: 'role', role: 'evil', local: false },
      { what: 'role', role: 'Mixed', local: true },
      { what: 'role', role: null, local: false },
      { what: 'role', role: null, local: false },
    ]);
    expect(roleChanges('SET SESSION AUTHORIZATION bob; RESET SESSION AUTHORIZATION; DISCARD ALL')).toEqual([
      { what: 'session', role: 'bob', local: false },
      { what: 'session', role: null, local: false },
      { what: 'session', role: null, local: false },
    ]);
    expect(roleChanges('SELECT 1')).toEqual([]);
    // After comments and other statements too; a column named role is not a change.
    expect(roleChanges('/* app */ -- set by the pool\n  SET ROLE evil')).toEqual([
      { what: 'role', role: 'evil', local: false },
    ]);
    expect(roleChanges("SELECT role FROM users WHERE role = 'admin'; set role evil")).toEqual([
      { what: 'role', role: 'evil', local: false },
    ]);
    expect(roleChanges("SELECT role FROM users WHERE role = 'admin'")).toEqual([]);
  });
});

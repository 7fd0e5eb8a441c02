import { beforeAll, describe, expect, it } from 'vitest';
import { configSchema, type MappingConfig } from '../../src/config/schema.ts';
import type { CompiledMapping } from '../../src/rules/mapping.ts';
import { type PlanContext, Planner, parseSearchPath, searchPathChange } from '../../src/rules/planner.ts';
import { type RuleSet, relationKey } from '../../src/rules/ruleset.ts';
import { loadParser } from '../../src/sql/parse.ts';

function mapping(
  name: string,
  old: [string, string],
  neu: [string, string],
  cols: string[],
  patch: Partial<MappingConfig> = {},
): CompiledMapping {
  const exprs = Object.fromEntries(cols.map((c) => [c, `"${c}"`]));
  const config = configSchema.parse({
    upstream: { host: 'x' },
    mappings: [
      { name, old: old.join('.'), new: neu.join('.'), key: [cols[0]], up: exprs, down: exprs, ...patch },
    ],
  }).mappings[0];
  return {
    name,
    config,
    old: { schema: old[0], name: old[1] },
    new: { schema: neu[0], name: neu[1] },
    key: [cols[0]],
    up: cols.map((c) => ({ column: c, expr: `"${c}"` })),
    down: cols.map((c) => ({ column: c, expr: `"${c}"` })),
    oldColumns: cols.map((c) => ({ name: c, type: 'integer' })),
    newColumns: cols.map((c) => ({ name: c, type: 'bigint' })),
  };
}

function rules(mappings: CompiledMapping[], serverVersion = 18, extra: [string, string][] = []): RuleSet {
  const relations = new Set<string>();
  for (const m of mappings) {
    relations.add(relationKey(m.old.schema, m.old.name));
    relations.add(relationKey(m.new.schema, m.new.name));
  }
  for (const [s, n] of extra) relations.add(relationKey(s, n));
  return { mappings, database: 'app', serverVersion, relations };
}

const ctx: PlanContext = {
  searchPath: ['$user', 'public'],
  user: 'bob',
  killSwitch: false,
  onUnmirrorable: 'passthrough',
  version: 1,
};

const users = (patch: Partial<MappingConfig> = {}) =>
  mapping('users', ['public', 'users'], ['public', 'users_v2'], ['id', 'n'], patch);

beforeAll(async () => {
  await loadParser();
});

describe('Planner: writes', () => {
  it('never parses or caches a statement naming no mapped table', () => {
    const p = new Planner(rules([users()]));
    const plan = p.plan('SELECT * FROM accounts WHERE oops oops', ctx);
    expect(plan).toEqual({
      sql: 'SELECT * FROM accounts WHERE oops oops',
      rewritten: false,
      route: 'passthrough',
      mapping: '',
      statements: [{ kind: 'forward' }],
    });
    expect(p.cache.size).toBe(0);
  });

  it('wraps an INSERT in one statement, keeping the client text and adding one row column', () => {
    const p = new Planner(rules([users()]));
    const sql = 'INSERT INTO users (id, n) VALUES ($1, $2)';
    const plan = p.plan(sql, ctx);
    expect(plan.rewritten).toBe(true);
    expect(plan.route).toBe('mirrored_write');
    expect(plan.mapping).toBe('users');
    expect(plan.statements).toEqual([{ kind: 'mirror', tag: 'INSERT', returning: false }]);
    expect(
      plan.sql.startsWith(
        `WITH "__sy_w" AS (${sql} RETURNING CASE WHEN pg_catalog.pg_typeof("users".*) = '"public"."users"'::pg_catalog.regtype THEN ROW("users".*)::"public"."users" END AS "__sy_row")`,
      ),
    ).toBe(true);
    expect(plan.sql).toContain('INSERT INTO "public"."users_v2" ("id", "n")');
    expect(plan.sql.endsWith('SELECT count(*) FROM "__sy_w"')).toBe(true);
  });

  it('appends the row image to an existing RETURNING and hoists the statement WITH clause', () => {
    const p = new Planner(rules([users()]));
    const sql =
      'WITH v AS (SELECT 1 AS id) UPDATE users AS u SET n = n + 1 FROM v WHERE u.id = v.id RETURNING u.*, 1';
    const plan = p.plan(sql, ctx);
    expect(plan.statements).toEqual([{ kind: 'mirror', tag: 'UPDATE', returning: true }]);
    expect(plan.sql).toMatch(
      /^WITH v AS \(SELECT 1 AS id\) , "__sy_w" AS \(UPDATE users AS u SET n = n \+ 1 FROM v WHERE u.id = v.id RETURNING u.\*, 1, CASE WHEN pg_catalog\.pg_typeof\("u"\.\*\) = '"public"\."users"'::pg_catalog\.regtype THEN ROW\("u".\*\)::"public"."users" END AS "__sy_row"\), "__sy_m" AS \(INSERT INTO/,
    );
    expect(plan.sql.endsWith('SELECT * FROM "__sy_w"')).toBe(true);
  });

  it('gives one shape per statement of a multi-statement string', () => {
    const p = new Planner(rules([users()]));
    const plan = p.plan(
      'BEGIN; INSERT INTO users VALUES (1, 2); UPDATE users SET n = 3 RETURNING id; DELETE FROM users; SELECT 1; COMMIT',
      ctx,
    );
    expect(plan.statements).toEqual([
      { kind: 'forward' },
      { kind: 'mirror', tag: 'INSERT', returning: false },
      { kind: 'mirror', tag: 'UPDATE', returning: true },
      { kind: 'mirror', tag: 'DELETE', returning: false },
      { kind: 'forward' },
      { kind: 'forward' },
    ]);
    expect(plan.sql.startsWith('BEGIN; WITH "__sy_w" AS (INSERT INTO users VALUES (1, 2) RETURNING')).toBe(
      true,
    );
    expect(plan.sql.endsWith('; SELECT 1; COMMIT')).toBe(true);
  });

  it('splices around non-ASCII names and literals byte-exactly', () => {
    const cafe = mapping('cafe', ['public', 'café'], ['public', 'café_v2'], ['Id', 'prénom']);
    const p = new Planner(rules([cafe]));
    const sql = `/* ☃ */ INSERT INTO "café" ("Id", "prénom") VALUES (1, 'Zoë 🚀') RETURNING "prénom" -- fin`;
    const plan = p.plan(sql, ctx);
    expect(plan.sql).toBe(
      `/* ☃ */ WITH "__sy_w" AS (INSERT INTO "café" ("Id", "prénom") VALUES (1, 'Zoë 🚀') RETURNING "prénom", CASE WHEN pg_catalog.pg_typeof("café".*) = '"public"."café"'::pg_catalog.regtype THEN ROW("café".*)::"public"."café" END AS "__sy_row"), "__sy_m" AS (INSERT INTO "public"."café_v2" ("Id", "prénom") SELECT ("Id") AS "Id", ("prénom") AS "prénom" FROM (SELECT (w."__sy_row").* FROM "__sy_w" AS w WHERE w."__sy_row" IS DISTINCT FROM NULL) AS sy_old ON CONFLICT ("Id") DO UPDATE SET "prénom" = EXCLUDED."prénom") SELECT * FROM "__sy_w" -- fin`,
    );
  });

  it('forwards writes untouched under the kill switch or with dualWrite off', () => {
    const sql = 'UPDATE users SET n = 1';
    const off = new Planner(rules([users()])).plan(sql, { ...ctx, killSwitch: true });
    expect(off).toMatchObject({ sql, rewritten: false, route: 'passthrough', mapping: 'users' });
    expect(off.statements).toEqual([{ kind: 'forward' }]);
    const noDual = new Planner(rules([users({ dualWrite: false })])).plan(sql, ctx);
    expect(noDual).toMatchObject({ sql, rewritten: false, mapping: 'users' });
    expect(noDual.unmirrored).toBeUndefined();
  });

  it('moves key changes with RETURNING old on PG 18 and a locking pre-read before', () => {
    const sql = 'UPDATE users SET id = id + 1 WHERE n > 0';
    const v18 = new Planner(rules([users()], 18)).plan(sql, ctx);
    expect(v18.sql).toContain(
      `RETURNING CASE WHEN pg_catalog.pg_typeof("users".*) = '"public"."users"'::pg_catalog.regtype THEN ARRAY[ROW(old.*)::"public"."users", ROW("users".*)::"public"."users"] END`,
    );
    // The delete of moved keys runs in the helper function (fresh snapshot), joined by the outer query.
    expect(v18.sql).toMatch(
      /"__sy_d" AS MATERIALIZED \(SELECT "switchyard_mirror"\."sy_delete_public_users_v2_[0-9a-f]{8}"\(\(SELECT pg_catalog\.jsonb_agg\(pg_catalog\.jsonb_build_object\('id', sy_k\."id"\)\) FROM \(SELECT \("id"\) AS "id" FROM \(SELECT \(w\."__sy_row"\[1\]\)\.\* FROM "__sy_w" AS w WHERE w\."__sy_row" IS DISTINCT FROM NULL\) AS sy_old EXCEPT SELECT \("id"\) AS "id" FROM \(SELECT \(w\."__sy_row"\[2\]\)\.\* FROM "__sy_w" AS w WHERE w\."__sy_row" IS DISTINCT FROM NULL\) AS sy_old\) AS sy_k\)\) AS n\), "__sy_m" AS \(INSERT INTO/,
    );
    expect(v18.sql.endsWith('SELECT count(*) FROM "__sy_w", "__sy_d"')).toBe(true);
    const v15 = new Planner(rules([users()], 15)).plan(sql, ctx);
    expect(v15.sql).toMatch(
      /^WITH "__sy_pre" AS MATERIALIZED \(SELECT CASE WHEN pg_catalog\.pg_typeof\("users"\.\*\) = '"public"\."users"'::pg_catalog\.regtype THEN ROW\("users".\*\)::"public"."users" END AS r FROM users WHERE n > 0 FOR UPDATE OF "users"\), "__sy_w" AS \(UPDATE users SET id = id \+ 1 WHERE \(SELECT count\(\*\) FROM "__sy_pre"\) >= 0 AND \( n > 0\) RETURNING/,
    );
    expect(v15.sql).toContain(
      'FROM (SELECT (p.r).* FROM "__sy_pre" AS p WHERE p.r IS DISTINCT FROM NULL) AS sy_old EXCEPT',
    );
    expect(v15.sql.endsWith('SELECT count(*) FROM "__sy_w", "__sy_d"')).toBe(true);
    const notKey = new Planner(rules([users()], 15)).plan('UPDATE users SET n = n + 1', ctx);
    expect(notKey.sql).not.toContain('__sy_pre');
    expect(notKey.sql).not.toContain('__sy_d');
  });

  it('deletes in new through the helper function, referenced by the outer query', () => {
    const p = new Planner(rules([users()]));
    const plain = p.plan('DELETE FROM users WHERE n = 1', ctx);
    expect(plain.sql).toMatch(
      /^WITH "__sy_w" AS \(DELETE FROM users WHERE n = 1 RETURNING CASE WHEN pg_catalog\.pg_typeof\("users"\.\*\) = '"public"\."users"'::pg_catalog\.regtype THEN ROW\("users"\.\*\)::"public"\."users" END AS "__sy_row"\), "__sy_d" AS MATERIALIZED \(SELECT "switchyard_mirror"\."sy_delete_public_users_v2_[0-9a-f]{8}"\(\(SELECT pg_catalog\.jsonb_agg\(pg_catalog\.jsonb_build_object\('id', sy_k\."id"\)\) FROM \(SELECT \("id"\) AS "id" FROM \(SELECT \(w\."__sy_row"\)\.\* FROM "__sy_w" AS w WHERE w\."__sy_row" IS DISTINCT FROM NULL\) AS sy_old\) AS sy_k\)\) AS n\) SELECT count\(\*\) FROM "__sy_w", "__sy_d"$/,
    );
    const ret = p.plan('DELETE FROM users RETURNING id', ctx);
    expect(ret.statements).toEqual([{ kind: 'mirror', tag: 'DELETE', returning: true }]);
    expect(ret.sql.endsWith('SELECT "__sy_w".* FROM "__sy_w", "__sy_d"')).toBe(true);
    expect(ret.sql).not.toContain('__sy_m');
  });
});

describe('Planner: unmirrorable writes', () => {
  const cases: [string, string][] = [
    ['TRUNCATE users', 'truncate'],
    ['COPY users FROM STDIN', 'copy'],
    ['UPDATE users SET n = 1 WHERE CURRENT OF c', 'where_current_of'],
    ['INSERT INTO users VALUES (', 'parse_error'],
    ['WITH d AS (DELETE FROM users RETURNING *) SELECT * FROM d', 'unsupported'],
    ['MERGE INTO users u USING (SELECT 1 AS id) s ON s.id = u.id WHEN MATCHED THEN DELETE', 'unsupported'],
  ];
  for (const [sql, reason] of cases) {
    it(`${reason}: ${sql}`, () => {
      const p = new Planner(rules([users()]));
      const pass = p.plan(sql, ctx);
      expect(pass.sql).toBe(sql);
      expect(pass.rewritten).toBe(false);
      expect(pass.unmirrored).toMatchObject({ mapping: 'users', reason });
      expect(pass.reject).toBeUndefined();
      const rej = p.plan(sql, { ...ctx, onUnmirrorable: 'reject' });
      expect(rej.reject?.mapping).toBe('users');
      expect(rej.reject?.message).toMatch(/mapping users cannot mirror/);
    });
  }

  it('does not count a parse error that names only the new table', () => {
    const plan = new Planner(rules([users()])).plan('SELECT * FROM users_v2 WHERE', ctx);
    expect(plan.unmirrored).toBeUndefined();
  });

  it('refuses an ON CONFLICT DO UPDATE of key columns before PG 18', () => {
    const sql = 'INSERT INTO users VALUES (1, 1) ON CONFLICT (id) DO UPDATE SET id = 5';
    expect(new Planner(rules([users()], 15)).plan(sql, ctx).unmirrored?.reason).toBe('unsupported');
    expect(new Planner(rules([users()], 18)).plan(sql, ctx).rewritten).toBe(true);
  });
});

describe('Planner: reads', () => {
  const reading = () => new Planner(rules([users({ reads: 'new' })]));
  const sub = '(SELECT ("id")::integer AS "id", ("n")::integer AS "n" FROM "public"."users_v2")';

  it('replaces each read with a subquery over new under the original alias or name', () => {
    const plan = reading().plan(
      'SELECT u.n FROM users u JOIN public.users ON true WHERE u.id = $1 ORDER BY n',
      ctx,
    );
    expect(plan.route).toBe('read_new');
    expect(plan.statements).toEqual([{ kind: 'forward' }]);
    expect(plan.sql).toBe(
      `SELECT u.n FROM ${sub} u JOIN ${sub} AS "users" ON true WHERE u.id = $1 ORDER BY n`,
    );
  });

  it('keeps locking reads, whole-row references and reads: old on the old table', () => {
    for (const sql of ['SELECT * FROM users FOR UPDATE', 'SELECT u FROM users u']) {
      const plan = reading().plan(sql, ctx);
      expect(plan).toMatchObject({ sql, rewritten: false, route: 'read_old', mapping: 'users' });
    }
    const old = new Planner(rules([users()])).plan('SELECT * FROM users', ctx);
    expect(old).toMatchObject({ rewritten: false, route: 'read_old' });
  });

  it('drops the schema from schema.table.column when the table becomes a subquery', () => {
    // With an alias, schema.table.column is already an error on the old table: left alone.
    const sql = 'SELECT "public"."users"."id" FROM "public"."users" u';
    expect(reading().plan(sql, ctx).sql).toBe(sql);
    const plan2 = reading().plan('SELECT "public"."users"."id" FROM ONLY "public"."users"', ctx);
    expect(plan2.sql).toBe(`SELECT "users"."id" FROM ${sub} AS "users"`);
  });

  it('expands the TABLE shorthand, which takes only a name', () => {
    expect(reading().plan('TABLE users', ctx).sql).toBe(`SELECT * FROM ${sub} AS "users"`);
    expect(reading().plan('TABLE ONLY public.users', ctx).sql).toBe(`SELECT * FROM ${sub} AS "users"`);
  });

  it('switches reads inside a mirrored write', () => {
    const plan = reading().plan('INSERT INTO users SELECT id + 100, n FROM users', ctx);
    expect(plan.route).toBe('mirrored_write');
    expect(plan.sql).toContain(`FROM ${sub} AS "users" RETURNING`);
  });
});

describe('Planner: name resolution', () => {
  it('resolves unqualified names through the session search_path, with shadowing', () => {
    const p = new Planner(
      rules([users()], 18, [
        ['bob', 'users'],
        ['app', 'users'],
      ]),
    );
    expect(p.plan('DELETE FROM users', ctx).rewritten).toBe(false); // bob.users shadows public.users
    expect(p.plan('DELETE FROM users', { ...ctx, user: 'carol' }).rewritten).toBe(true);
    expect(p.plan('DELETE FROM users', { ...ctx, searchPath: ['app', 'public'] }).rewritten).toBe(false);
    expect(p.plan('DELETE FROM users', { ...ctx, searchPath: ['nothing_here'] }).rewritten).toBe(false);
    expect(p.plan('DELETE FROM public.users', { ...ctx, searchPath: ['app'] }).rewritten).toBe(true);
    expect(p.plan('DELETE FROM "Users"', { ...ctx, user: 'carol' }).rewritten).toBe(false);
    expect(p.plan('DELETE FROM USERS', { ...ctx, user: 'carol' }).rewritten).toBe(true);
  });

  it('applies a SET search_path inside the text to the statements after it only', () => {
    const p = new Planner(rules([users()], 18, [['app', 'users']]));
    const plan = p.plan(
      'DELETE FROM users; SET search_path = app; DELETE FROM users; RESET search_path; DELETE FROM users',
      {
        ...ctx,
        user: 'carol',
      },
    );
    expect(plan.statements.map((s) => s.kind)).toEqual(['mirror', 'forward', 'forward', 'forward', 'mirror']);
    const back = p.plan('SET search_path = public; DELETE FROM users; RESET ALL; DELETE FROM users', {
      ...ctx,
      searchPath: ['app'],
      defaultSearchPath: ['app'],
    });
    expect(back.statements.map((s) => s.kind)).toEqual(['forward', 'mirror', 'forward', 'forward']);
  });

  it('tells a CTE of the same name from the table', () => {
    const plan = new Planner(rules([users({ reads: 'new' })])).plan(
      'WITH users AS (SELECT 1) SELECT * FROM users',
      ctx,
    );
    expect(plan).toMatchObject({ rewritten: false, route: 'passthrough' });
  });
});

describe('Planner: cache', () => {
  it('hits for the same text and context, misses when the version or search_path changes', () => {
    const p = new Planner(rules([users()]));
    const sql = 'INSERT INTO users VALUES (1, 1)';
    const a = p.plan(sql, ctx);
    expect(p.plan(sql, ctx)).toBe(a);
    p.plan(sql, { ...ctx, version: 2 });
    p.plan(sql, { ...ctx, searchPath: ['public'] });
    expect([p.cache.hits, p.cache.misses]).toEqual([1, 3]);
  });
});

describe('searchPathChange', () => {
  it('recognises SET, SET LOCAL, RESET, DEFAULT, RESET ALL and DISCARD ALL', () => {
    expect(searchPathChange(`SET search_path TO "My S", Public, '$user'`)).toEqual({
      value: ['My S', 'public', '$user'],
      local: false,
    });
    expect(searchPathChange('SET LOCAL search_path = app')).toEqual({ value: ['app'], local: true });
    expect(searchPathChange('set session search_path to default')).toEqual({ value: null, local: false });
    expect(searchPathChange('RESET search_path')).toEqual({ value: null, local: false });
    expect(searchPathChange('RESET ALL')).toEqual({ value: null, local: false });
    expect(searchPathChange('DISCARD ALL')).toEqual({ value: null, local: false });
    expect(searchPathChange('SET search_path = a; SET search_path = b')).toEqual({
      value: ['b'],
      local: false,
    });
    expect(searchPathChange(`SET search_path = ''`)).toEqual({ value: [], local: false });
    expect(searchPathChange('SET work_mem = 1')).toBeUndefined();
    expect(searchPathChange('SELECT 1')).toBeUndefined();
  });
  it('parses startup and SHOW values', () => {
    expect(parseSearchPath('"$user", public')).toEqual(['$user', 'public']);
  });
});

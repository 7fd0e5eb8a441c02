import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/config/load.ts';
import { type Config, configSchema } from '../../src/config/schema.ts';
import { compileRules, relationKey } from '../../src/rules/ruleset.ts';
import { freshDatabase, type TestDatabase } from '../support/db.ts';

let db: TestDatabase;

function config(db: TestDatabase, mappings: unknown[]): Config {
  return configSchema.parse({ upstream: { url: db.url }, mappings });
}

const usersMapping = {
  name: 'users-full-name',
  old: 'users',
  new: 'public.users_v2',
  key: ['id'],
  up: { id: 'id', email: 'lower(email)', full_name: "first_name || ' ' || last_name" },
  down: {
    id: 'id',
    email: 'email',
    first_name: "split_part(full_name, ' ', 1)",
    last_name: "split_part(full_name, ' ', 2)",
  },
};

beforeAll(async () => {
  db = await freshDatabase('rc');
  await db.query(`
    CREATE TABLE users (id int PRIMARY KEY, email text NOT NULL, first_name text, last_name text);
    CREATE TABLE users_v2 (id bigint PRIMARY KEY, email text NOT NULL, full_name text);
    CREATE SCHEMA "Other Schema";
    CREATE TABLE "Other Schema".users (x int);
    CREATE TABLE "Other Schema"."Order" (id int);
    CREATE TABLE "Order" ("Id" int NOT NULL, "user-name" text, "select" int, "prénom" text);
    CREATE TABLE "Order_v2" ("Id" int NOT NULL, "user-name" text, "select" int, "prénom" text);
    CREATE UNIQUE INDEX ON "Order_v2" ("Id");
    CREATE TABLE nokey_v2 (id int, email text);
    INSERT INTO users VALUES (1, 'A@x', 'a', 'b');
  `);
});

afterAll(async () => {
  await db?.drop();
});

describe('compileRules', () => {
  it('compiles a config with no mappings without connecting', async () => {
    const c = configSchema.parse({ upstream: { host: '127.0.0.1', port: 1 } });
    const rs = await compileRules(c);
    expect(rs.mappings).toEqual([]);
    expect(rs.database).toBe('');
  });

  it('resolves schemas, columns in catalog order and the relations sharing mapped names', async () => {
    const rs = await compileRules(
      config(db, [
        usersMapping,
        {
          name: 'orders',
          old: '"Order"',
          new: 'public."Order_v2"',
          key: ['Id'],
          up: { Id: '"Id"', 'user-name': '"user-name"', select: '"select"', prénom: '"prénom"' },
        },
      ]),
    );
    expect(rs.database).toBe(db.name);
    const v = await db.query<{ server_version_num: string }>('SHOW server_version_num');
    expect(rs.serverVersion).toBe(Math.floor(Number(v.rows[0].server_version_num) / 10000));
    const [u, o] = rs.mappings;
    expect(u.old).toEqual({ schema: 'public', name: 'users' });
    expect(u.new).toEqual({ schema: 'public', name: 'users_v2' });
    expect(u.oldColumns).toEqual([
      { name: 'id', type: 'integer' },
      { name: 'email', type: 'text' },
      { name: 'first_name', type: 'text' },
      { name: 'last_name', type: 'text' },
    ]);
    expect(u.newColumns[0]).toEqual({ name: 'id', type: 'bigint' });
    expect(u.up.map((x) => x.column)).toEqual(['id', 'email', 'full_name']);
    expect(o.old).toEqual({ schema: 'public', name: 'Order' });
    expect(o.key).toEqual(['Id']);
    expect(rs.relations.has(relationKey('public', 'users'))).toBe(true);
    expect(rs.relations.has(relationKey('Other Schema', 'users'))).toBe(true);
    expect(rs.relations.has(relationKey('Other Schema', 'Order'))).toBe(true);
    expect(rs.relations.has(relationKey('public', 'Order_v2'))).toBe(true);
  });

  it('left the database untouched', async () => {
    const r = await db.query('SELECT count(*)::int AS n FROM users_v2');
    expect(r.rows[0].n).toBe(0);
  });

  const failures: [string, Record<string, unknown>, RegExp][] = [
    ['a missing old table', { old: 'nope' }, /mapping users-full-name: old table nope does not exist/],
    ['a missing new table', { new: 'public.nope' }, /new table public.nope does not exist/],
    [
      'an up column missing in new',
      { up: { ...usersMapping.up, nickname: 'email' } },
      /up column nickname does not exist in "public"."users_v2"/,
    ],
    [
      'a down column missing in old',
      { down: { ...usersMapping.down, nickname: 'email' } },
      /down column nickname does not exist in "public"."users"/,
    ],
    [
      'an up expression naming a missing column',
      { up: { ...usersMapping.up, email: 'lower(mail)' } },
      /^mapping users-full-name: up expression "lower\(mail\)" for column email: column "mail" does not exist$/,
    ],
    [
      'an up expression that does not parse',
      { up: { ...usersMapping.up, email: 'lower(email' } },
      /^mapping users-full-name: up expression "lower\(email" for column email is not valid SQL: syntax error at end of input$/,
    ],
    [
      'a down expression of the wrong type',
      { down: { ...usersMapping.down, id: 'gen_random_uuid()' } },
      /^mapping users-full-name: down expression "gen_random_uuid\(\)" for column id: cannot cast type uuid to integer$/,
    ],
    [
      'reads: new without a down expression for every old column',
      { reads: 'new', down: { id: 'id', email: 'email' } },
      /reads: new needs a down expression for every old column; missing first_name, last_name/,
    ],
    [
      'a key that is not unique in new',
      { new: 'nokey_v2', up: { id: 'id', email: 'email' } },
      /key \(id\) is not the primary key or a unique index of "public"."nokey_v2"/,
    ],
    [
      'dualWrite: both on an old table without a primary key',
      {
        old: '"Order"',
        new: '"Order_v2"',
        key: ['Id'],
        up: { Id: '"Id"', 'user-name': '"user-name"' },
        down: { Id: '"Id"', 'user-name': '"user-name"' },
        dualWrite: 'both',
      },
      /^mapping users-full-name: dualWrite: both mirrors writes on new into old by the old table's key, and "public"."Order" has no primary key; name the columns of a unique index in oldKey$/,
    ],
    [
      'an oldKey that is not unique in old',
      { dualWrite: 'both', oldKey: ['email'] },
      /oldKey \(email\) is not the primary key or a unique index of "public"."users"/,
    ],
    [
      'dualWrite: both leaving a NOT NULL old column without down',
      { dualWrite: 'both', down: { id: 'id', first_name: 'full_name' } },
      /dualWrite: both inserts rows written on new into "public"."users", whose column email is NOT NULL with no default and has no down expression/,
    ],
  ];
  for (const [what, patch, message] of failures) {
    it(`refuses ${what}`, async () => {
      const p = compileRules(config(db, [{ ...usersMapping, ...patch }]));
      await expect(p).rejects.toBeInstanceOf(ConfigError);
      await expect(p).rejects.toThrow(message);
    });
  }

  it('refuses an unreachable upstream with a ConfigError', async () => {
    const c = configSchema.parse({ upstream: { host: '127.0.0.1', port: 1 }, mappings: [usersMapping] });
    await expect(compileRules(c)).rejects.toThrow(/cannot connect to the upstream/);
  });
});

// A column migration inside one table (old and new the same table): writes
// keep the new columns equal to up(row) in the same statement, with no
// trigger; with dualWrite: both, writes by the new names fill the old columns
// by down; reads: new serves the old columns from the new ones. Checked
// straight on Postgres, with the client's replies held next to direct ones.
import pg from 'pg';
import postgres from 'postgres';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/config/load.ts';
import { configSchema } from '../../src/config/schema.ts';
import { compileRules } from '../../src/rules/ruleset.ts';
import { checkRoundTrip } from '../../src/verify/roundtrip.ts';
import { freshDatabase, type TestDatabase } from '../support/db.ts';
import { applyConfig, mappingConfig, type Switches } from '../support/lifecycle.ts';
import type { MappingDefinition } from '../support/mapping-cases.ts';
import { startProxy, type TestProxy } from '../support/proxy.ts';

// balance (numeric, dollars) -> balance_cents (bigint); first_name + last_name -> full_name.
const SCHEMA = `
CREATE TABLE accounts (
  id serial PRIMARY KEY, email text NOT NULL, balance numeric(10,2) NOT NULL DEFAULT 0,
  first_name text, last_name text, tag varchar(8),
  balance_cents bigint, full_name text);
CREATE TABLE staging (id int, email text, first_name text, last_name text, balance numeric);
`;

const accounts: MappingDefinition = {
  name: 'accounts-columns',
  old: 'accounts',
  new: 'accounts',
  key: ['id'],
  up: { balance_cents: 'round(balance * 100)::bigint', full_name: "first_name || ' ' || last_name" },
  down: {
    balance: 'balance_cents / 100.0',
    first_name: "split_part(full_name, ' ', 1)",
    last_name: "split_part(full_name, ' ', 2)",
  },
};

let db: TestDatabase;
let proxy: TestProxy;
let client: pg.Client;

async function configure(s: Switches): Promise<void> {
  await applyConfig(proxy, db, mappingConfig([accounts], s));
}

/** Rows whose new columns are not up(row): 0 means in step. */
async function outOfStep(): Promise<number> {
  const r = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM accounts
    WHERE balance_cents IS DISTINCT FROM round(balance * 100)::bigint
       OR full_name IS DISTINCT FROM first_name || ' ' || last_name`);
  return r.rows[0].n;
}

async function directly(sql: string, params: unknown[] = []) {
  await db.direct.query('BEGIN');
  try {
    const r = await db.direct.query({ text: sql, values: params, rowMode: 'array' });
    return { command: r.command, rowCount: r.rowCount, fields: r.fields.map((f) => [f.name, f.dataTypeID]) };
  } finally {
    await db.direct.query('ROLLBACK');
  }
}

async function through(sql: string, params: unknown[] = []) {
  const r = await client.query({ text: sql, values: params, rowMode: 'array' });
  return { command: r.command, rowCount: r.rowCount, fields: r.fields.map((f) => [f.name, f.dataTypeID]) };
}

beforeAll(async () => {
  db = await freshDatabase('cols');
  await db.query(SCHEMA);
  proxy = await startProxy(db, mappingConfig([accounts]));
  client = new pg.Client({ connectionString: proxy.url() });
  await client.connect();
});

afterAll(async () => {
  await client?.end();
  await proxy?.close();
  await db?.drop();
});

beforeEach(async () => {
  await configure({});
  await db.query('TRUNCATE accounts, staging RESTART IDENTITY');
});

describe('writes by the old names fill the new columns', () => {
  it('INSERT with omitted columns, defaults, DEFAULT items, several rows and RETURNING: tag and columns as direct', async () => {
    const sql =
      "INSERT INTO accounts (email, first_name, last_name, balance) VALUES ('a@x', 'Ada', 'Lovelace', DEFAULT), ($1, $2, $3, $4) RETURNING id, balance_cents, full_name";
    const params = ['g@x', 'Grace', 'Hopper', '12.345'];
    expect(await through(sql, params)).toEqual(await directly(sql, params));
    const rows = await db.query('SELECT id, balance, balance_cents, full_name FROM accounts ORDER BY id');
    expect(rows.rows).toEqual([
      { id: 1, balance: '0.00', balance_cents: '0', full_name: 'Ada Lovelace' },
      // Computed from the value as stored (numeric(10,2) rounds 12.345 to 12.35).
      { id: 2, balance: '12.35', balance_cents: '1235', full_name: 'Grace Hopper' },
    ]);
    expect(await outOfStep()).toBe(0);
  });

  it('parameters keep the types Postgres infers directly', async () => {
    const sql = 'INSERT INTO accounts (email, balance, tag) VALUES ($1, $2, $3)';
    const direct = postgres(db.url, { max: 1 });
    const viaProxy = postgres(proxy.url(), { max: 1 });
    try {
      const want = await direct.unsafe(sql).describe();
      const got = await viaProxy.unsafe(sql).describe();
      expect(got.types).toEqual(want.types);
      expect(got.types).toEqual([25, 1700, 1043]);
    } finally {
      await direct.end();
      await viaProxy.end();
    }
  });

  it('UPDATE recomputes from assigned values (evaluated once) and the row’s other columns', async () => {
    await client.query(
      "INSERT INTO accounts (email, first_name, last_name, balance) VALUES ('a@x', 'Ada', 'Lovelace', 1), ('b@x', 'Alan', 'Turing', 2)",
    );
    const upd = 'UPDATE accounts SET balance = balance + $1 WHERE id = $2';
    expect(await through(upd, ['1.005', 1])).toEqual({ command: 'UPDATE', rowCount: 1, fields: [] });
    await client.query("UPDATE accounts a SET first_name = upper(a.first_name) WHERE a.last_name = 'Turing'");
    // A volatile value is computed once: the stored balance and its cents agree.
    await client.query('UPDATE accounts SET balance = round((random() * 1000)::numeric, 2)');
    await client.query(
      'UPDATE accounts a SET balance = v.b FROM (VALUES (1, 5.5)) AS v(id, b) WHERE a.id = v.id RETURNING a.balance_cents',
    );
    expect(await outOfStep()).toBe(0);
    const turing = await db.query("SELECT full_name FROM accounts WHERE last_name = 'Turing'");
    expect(turing.rows[0].full_name).toBe('ALAN Turing');
    // An UPDATE that assigns nothing the new columns are made from leaves them alone.
    const plain = await client.query("UPDATE accounts SET email = 'c@x' WHERE id = 1");
    expect(plain.rowCount).toBe(1);
  });

  it('INSERT ... SELECT, ON CONFLICT DO UPDATE with EXCLUDED, DEFAULT VALUES-like rows', async () => {
    await db.query(
      "INSERT INTO staging VALUES (1, 's@x', 'Sam', 'Smith', 3.5), (2, 't@x', 'Tom', 'Jones', 4)",
    );
    const r = await client.query(
      'INSERT INTO accounts (id, email, first_name, last_name, balance) SELECT id, email, first_name, last_name, balance FROM staging',
    );
    expect(r.rowCount).toBe(2);
    const up = await client.query(
      "INSERT INTO accounts AS a (id, email, first_name, last_name, balance) VALUES (2, 't@x', 'Thomas', 'Jones', 9) ON CONFLICT (id) DO UPDATE SET first_name = EXCLUDED.first_name, balance = a.balance + EXCLUDED.balance",
    );
    expect(up.rowCount).toBe(1);
    expect(await outOfStep()).toBe(0);
    const tom = await db.query('SELECT balance_cents, full_name FROM accounts WHERE id = 2');
    expect(tom.rows[0]).toEqual({ balance_cents: '1300', full_name: 'Thomas Jones' });
  });

  it('the kill switch stops keeping columns in step', async () => {
    await configure({ killSwitch: true });
    await client.query(
      "INSERT INTO accounts (email, first_name, last_name) VALUES ('k@x', 'Kill', 'Switch')",
    );
    expect((await db.query('SELECT full_name FROM accounts')).rows).toEqual([{ full_name: null }]);
  });
});

describe('dualWrite: both and reads: new', () => {
  it('writes by the new names fill the old columns by down', async () => {
    await configure({ dualWrite: 'both' });
    await client.query(
      "INSERT INTO accounts (email, full_name, balance_cents) VALUES ('n@x', 'Grace Hopper', 1234)",
    );
    await client.query(
      "UPDATE accounts SET full_name = 'Ada Lovelace', balance_cents = balance_cents + 1 WHERE id = 1",
    );
    const row = await db.query(
      'SELECT first_name, last_name, balance, full_name, balance_cents FROM accounts',
    );
    expect(row.rows).toEqual([
      {
        first_name: 'Ada',
        last_name: 'Lovelace',
        balance: '12.35',
        full_name: 'Ada Lovelace',
        balance_cents: '1235',
      },
    ]);
    // Writes by the old names still fill the new ones.
    await client.query("UPDATE accounts SET last_name = 'Byron' WHERE id = 1");
    expect(await outOfStep()).toBe(0);
  });

  it('reads: new serves the old columns from the new ones, with the same columns and metadata', async () => {
    await client.query(
      "INSERT INTO accounts (email, first_name, last_name, balance) VALUES ('r@x', 'Rosa', 'Parks', 7)",
    );
    // Only the new columns change (as a second app version would write them).
    await db.query("UPDATE accounts SET full_name = 'Rosalind Franklin', balance_cents = 800");
    const sql = 'SELECT a.*, first_name AS f FROM accounts a WHERE last_name = $1 ORDER BY balance';
    const want = await db.direct.query(sql, ['Parks']);
    await configure({ reads: 'new' });
    const got = await client.query(sql, ['Franklin']);
    expect(got.rows).toEqual([
      {
        ...want.rows[0],
        first_name: 'Rosalind',
        last_name: 'Franklin',
        balance: '8.00',
        f: 'Rosalind',
        full_name: 'Rosalind Franklin',
        balance_cents: '800',
      },
    ]);
    const meta = (r: pg.QueryResult) => r.fields.map((f) => [f.name, f.tableID, f.columnID, f.dataTypeID]);
    expect(meta(got)).toEqual(meta(want));
  });
});

describe('config checks of a column migration', () => {
  const compile = (patch: Record<string, unknown>) =>
    compileRules(configSchema.parse({ upstream: { url: db.url }, mappings: [{ ...accounts, ...patch }] }));
  const cases: [string, Record<string, unknown>, RegExp][] = [
    [
      'a column both new and old',
      { up: { ...accounts.up, first_name: 'last_name' } },
      /old and new are the same table, so a column is either new \(up\) or old \(down\), not both: first_name/,
    ],
    [
      'a key with an expression',
      { up: { ...accounts.up, id: 'id' } },
      /the key takes no up or down expression/,
    ],
    [
      'a key that is not unique',
      { key: ['email'] },
      /key \(email\) is not the primary key or a unique index/,
    ],
    [
      'a new column that does not exist',
      { up: { nickname: 'first_name' } },
      /up column nickname does not exist in "public"."accounts"/,
    ],
    [
      'a new column NOT NULL without a default',
      { up: { ...accounts.up, email: 'lower(first_name)' }, down: { balance: 'balance_cents / 100.0' } },
      /new column email is NOT NULL without a default; add new columns nullable/,
    ],
    [
      'an expression that does not plan',
      { up: { ...accounts.up, full_name: 'first_name || nope' } },
      /up expression "first_name \|\| nope" for column full_name: column "nope" does not exist/,
    ],
  ];
  for (const [what, patch, message] of cases) {
    it(`refuses ${what}`, async () => {
      const p = compile(patch);
      await expect(p).rejects.toBeInstanceOf(ConfigError);
      await expect(p).rejects.toThrow(message);
    });
  }

  it('installs no helper function and keeps no reverse mapping', async () => {
    const rs = await compile({ dualWrite: 'both' });
    expect(rs.mappings[0].sameTable).toBeDefined();
    expect(rs.mappings[0].reverse).toBeUndefined();
    const fns = await db.query(
      "SELECT count(*)::int AS n FROM pg_namespace WHERE nspname = 'switchyard_mirror'",
    );
    expect(fns.rows[0].n).toBe(0);
  });
});

describe('round trip of a column migration', () => {
  it('finds the columns that do not survive down(up(row)) or up(down(row)), with examples', async () => {
    await db.query(
      "INSERT INTO accounts (email, first_name, last_name, balance) VALUES ('a@x', 'Mary Ann', 'Evans', 1.5), ('b@x', 'Ada', 'Lovelace', 2)",
    );
    await db.query(
      "UPDATE accounts SET full_name = first_name || ' ' || last_name, balance_cents = balance * 100",
    );
    const rs = await compileRules(
      configSchema.parse({ upstream: { url: db.url }, mappings: [{ ...accounts, dualWrite: 'both' }] }),
    );
    const c = new pg.Client({ connectionString: db.url });
    await c.connect();
    try {
      const r = await checkRoundTrip(c, rs.mappings[0], { sample: 100, examples: 5 });
      const side = (x: string) => r.sides.find((s) => s.side === x)!;
      const lossyOld = side('old').lossy.map((l) => l.column);
      expect(lossyOld).toEqual(['first_name', 'last_name']);
      expect(side('old').lossy[0].examples).toContainEqual({
        source: 'sample',
        key: { id: 1 },
        value: 'Mary Ann',
        back: 'Mary',
      });
      expect(side('new').lossy.map((l) => l.column)).toContain('full_name');
      expect(side('old').uncovered).toEqual([]);
      expect(r.lossy).toBe(true);
    } finally {
      await c.end();
    }
  });
});

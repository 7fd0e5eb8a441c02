// switchyard_mirror_failures_total counts only errors the mirror caused: the
// new table refusing the row. The application's own errors on a mirrored
// write (a duplicate key on the old table, a bad parameter) are counted apart,
// by SQLSTATE class, and reach the client exactly as they do directly.
import pg from 'pg';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { registry } from '../../src/metrics.ts';
import { freshDatabase, type TestDatabase } from '../support/db.ts';
import { mappingConfig } from '../support/lifecycle.ts';
import type { MappingDefinition } from '../support/mapping-cases.ts';
import { startProxy, type TestProxy } from '../support/proxy.ts';

let db: TestDatabase;
let proxy: TestProxy;
let client: pg.Client;
let direct: pg.Client;

const acct: MappingDefinition = {
  name: 'acct-v2',
  old: 'acct',
  new: 'acct_v2',
  key: ['id'],
  up: { id: 'id', email: 'email', title: 'title', slug: 'lower(title)' },
  down: { id: 'id', email: 'email', title: 'title' },
};

beforeAll(async () => {
  db = await freshDatabase('mea');
  // The new table refuses rows the old one accepts: a CHECK and a unique index that old lacks.
  await db.query(`
    CREATE TABLE acct (id int PRIMARY KEY, email text UNIQUE NOT NULL, title text NOT NULL);
    CREATE TABLE acct_v2 (id int PRIMARY KEY, email text NOT NULL,
                          title text NOT NULL CHECK (title <> 'forbidden'), slug text UNIQUE);
    CREATE TABLE acct_plain (id int PRIMARY KEY, email text UNIQUE NOT NULL, title text NOT NULL);`);
  proxy = await startProxy(db, mappingConfig([acct]));
  client = new pg.Client({ connectionString: proxy.url() });
  await client.connect();
  direct = new pg.Client({ connectionString: db.url });
  await direct.connect();
});

afterAll(async () => {
  await client?.end();
  await direct?.end();
  await proxy?.close();
  await db?.drop();
});

async function value(name: string, labels: Record<string, string> = {}): Promise<number> {
  const metric = registry.getSingleMetric(name);
  if (!metric) throw new Error(`no metric ${name}`);
  return (await metric.get()).values
    .filter((v) => Object.entries(labels).every(([k, want]) => String(v.labels[k]) === want))
    .reduce((s, v) => s + v.value, 0);
}

interface Counts {
  mirror: number;
  app23: number;
  app22: number;
  errors: number;
}

async function counts(): Promise<Counts> {
  return {
    mirror: await value('switchyard_mirror_failures_total', { mapping: acct.name }),
    app23: await value('switchyard_mirrored_statement_errors_total', { mapping: acct.name, class: '23' }),
    app22: await value('switchyard_mirrored_statement_errors_total', { mapping: acct.name, class: '22' }),
    errors: await value('switchyard_statement_errors_total', { route: 'mirrored_write', mapping: acct.name }),
  };
}

async function delta(run: () => Promise<unknown>): Promise<Counts> {
  const before = await counts();
  await run();
  const after = await counts();
  return {
    mirror: after.mirror - before.mirror,
    app23: after.app23 - before.app23,
    app22: after.app22 - before.app22,
    errors: after.errors - before.errors,
  };
}

/** The fields a client sees of an error, to hold the proxy's next to the server's own. */
function fields(e: pg.DatabaseError) {
  return {
    code: e.code,
    message: e.message,
    detail: e.detail,
    schema: e.schema,
    table: e.table,
    constraint: e.constraint,
  };
}

async function failure(c: pg.Client, sql: string, params?: unknown[]): Promise<pg.DatabaseError> {
  const e = await c.query(sql, params).then(
    () => undefined,
    (err: unknown) => err,
  );
  if (!(e instanceof Error)) throw new Error(`expected ${sql} to fail`);
  return e as pg.DatabaseError;
}

beforeEach(async () => {
  await direct.query('TRUNCATE acct, acct_v2, acct_plain');
  await client.query("INSERT INTO acct VALUES (1, 'a@x', 'Alpha')");
  await direct.query("INSERT INTO acct_plain VALUES (1, 'a@x', 'Alpha')");
});

describe("the application's own errors on a mirrored write", () => {
  it('a duplicate primary key on the old table counts 0 mirror failures and 1 error of class 23', async () => {
    let proxied: pg.DatabaseError | undefined;
    const d = await delta(async () => {
      proxied = await failure(client, "INSERT INTO acct VALUES (1, 'b@x', 'Beta')");
    });
    expect(d).toEqual({ mirror: 0, app23: 1, app22: 0, errors: 1 });
    // What the client sees is the server's own error for the same write on a plain table.
    const own = await failure(direct, "INSERT INTO acct_plain VALUES (1, 'b@x', 'Beta')");
    expect(fields(proxied!)).toEqual({
      ...fields(own),
      message: own.message.replace('acct_plain', 'acct'),
      table: 'acct',
      constraint: 'acct_pkey',
    });
    expect(proxied!.code).toBe('23505');
  });

  it('a unique violation on an old-only index, through the extended protocol, is the app error too', async () => {
    await client.query("INSERT INTO acct VALUES (2, 'b@x', 'Beta')");
    const d = await delta(async () => {
      const e = await failure(client, 'UPDATE acct SET email = $1 WHERE id = $2', ['a@x', 2]);
      expect(e.code).toBe('23505');
      expect(e.constraint).toBe('acct_email_key');
    });
    expect(d).toEqual({ mirror: 0, app23: 1, app22: 0, errors: 1 });
  });

  it('a parameter the server cannot read (at Bind, before the mirror runs) is not a mirror failure', async () => {
    const d = await delta(async () => {
      const e = await failure(client, 'UPDATE acct SET title = $1 WHERE id = $2', ['t', 'zz']);
      expect(e.code).toBe('22P02');
    });
    expect(d.mirror).toBe(0);
  });
});

describe('errors the mirror caused', () => {
  it('a CHECK constraint the new table has and the old lacks counts 1 mirror failure', async () => {
    const d = await delta(async () => {
      const e = await failure(client, "INSERT INTO acct VALUES (3, 'c@x', 'forbidden')");
      expect(e.code).toBe('23514');
      expect(e.table).toBe('acct_v2');
    });
    expect(d).toEqual({ mirror: 1, app23: 0, app22: 0, errors: 1 });
  });

  it('a unique index on the new table only counts 1 mirror failure', async () => {
    const d = await delta(async () => {
      // The slug is lower(title): old accepts both titles, new has one slug for them.
      const e = await failure(client, "INSERT INTO acct VALUES (4, 'd@x', 'ALPHA')");
      expect(e.code).toBe('23505');
      expect(e.constraint).toBe('acct_v2_slug_key');
    });
    expect(d).toEqual({ mirror: 1, app23: 0, app22: 0, errors: 1 });
    const r = await direct.query(
      'SELECT (SELECT count(*) FROM acct)::int AS o, (SELECT count(*) FROM acct_v2)::int AS n',
    );
    expect(r.rows[0]).toEqual({ o: 1, n: 1 });
  });
});

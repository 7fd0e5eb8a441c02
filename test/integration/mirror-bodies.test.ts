// Writes inside function bodies the client sends itself: Sequelize's
// findOrCreate (a pg_temp function with RETURNING ... INTO and an exception
// handler), DO blocks, SQL-language temp functions. They are mirrored like any
// write; what cannot be rewritten (dynamic SQL, a permanent function) is
// counted with its own reason and refused under onUnmirrorable: reject.
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { metrics } from '../../src/metrics.ts';
import { freshDatabase, type TestDatabase } from '../support/db.ts';
import { applyConfig, mappingConfig } from '../support/lifecycle.ts';
import type { MappingDefinition } from '../support/mapping-cases.ts';
import { startProxy, type TestProxy } from '../support/proxy.ts';

let db: TestDatabase;
let proxy: TestProxy;

const users: MappingDefinition = {
  name: 'users-full-name',
  old: 'users',
  new: 'users_v2',
  key: ['id'],
  up: {
    id: 'id',
    email: 'email',
    full_name: "first_name || ' ' || last_name",
    createdAt: '"createdAt"',
    updatedAt: '"updatedAt"',
  },
  down: {
    id: 'id',
    email: 'email',
    first_name: "split_part(full_name, ' ', 1)",
    last_name: "split_part(full_name, ' ', 2)",
    createdAt: '"createdAt"',
    updatedAt: '"updatedAt"',
  },
};

beforeAll(async () => {
  db = await freshDatabase('bodies');
  await db.query(`
    CREATE TABLE users (id serial PRIMARY KEY, email text NOT NULL UNIQUE, first_name text NOT NULL,
      last_name text NOT NULL, "createdAt" timestamptz NOT NULL, "updatedAt" timestamptz NOT NULL);
    CREATE TABLE users_v2 (id int PRIMARY KEY, email text NOT NULL UNIQUE, full_name text NOT NULL,
      "createdAt" timestamptz NOT NULL, "updatedAt" timestamptz NOT NULL);`);
  proxy = await startProxy(db, mappingConfig([users]));
});

afterAll(async () => {
  await proxy?.close();
  await db?.drop();
});

async function withClient<T>(f: (c: pg.Client) => Promise<T>, url = proxy.url()): Promise<T> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return await f(c);
  } finally {
    await c.end();
  }
}

async function unmirrored(reason: string): Promise<number> {
  const v = (await metrics.unmirroredWrites.get()).values.find(
    (x) => x.labels.mapping === users.name && x.labels.reason === reason,
  );
  return v?.value ?? 0;
}

/** new = up(old), row for row. */
async function expectInSync(): Promise<void> {
  const want = await db.query(
    `SELECT id, email, first_name || ' ' || last_name AS full_name, "createdAt", "updatedAt" FROM users ORDER BY id`,
  );
  const got = await db.query(
    'SELECT id, email, full_name, "createdAt", "updatedAt" FROM users_v2 ORDER BY id',
  );
  expect(got.rows).toEqual(want.rows);
}

async function counts(): Promise<{ old: number; new: number }> {
  const r = await db.query(
    'SELECT (SELECT count(*)::int FROM users) AS o, (SELECT count(*)::int FROM users_v2) AS n',
  );
  return { old: r.rows[0].o, new: r.rows[0].n };
}

const COLUMNS = '"id","email","first_name","last_name","createdAt","updatedAt"';

/** The text Sequelize v6's insertQuery sends for findOrCreate (options.exception) on PostgreSQL >= 9.2. */
function findOrCreateSql(email: string, first: string, last: string): string {
  const delimiter = '$func_3f2a9c1e7b8d4e6fa0c5b2d9e8f7a6b1$';
  const ts = "'2024-05-06 07:08:09.123 +00:00'";
  const valueQuery =
    `INSERT INTO "users" (${COLUMNS}) VALUES (DEFAULT,'${email}','${first}','${last}',${ts},${ts})` +
    ` RETURNING ${COLUMNS}`;
  return (
    `CREATE OR REPLACE FUNCTION pg_temp.testfunc(OUT response "users", OUT sequelize_caught_exception text) RETURNS RECORD AS ${delimiter}` +
    ` BEGIN ${valueQuery} INTO response; EXCEPTION WHEN unique_violation THEN GET STACKED DIAGNOSTICS sequelize_caught_exception = PG_EXCEPTION_DETAIL; END ${delimiter}` +
    ' LANGUAGE plpgsql; SELECT (testfunc.response).*, testfunc.sequelize_caught_exception FROM pg_temp.testfunc(); DROP FUNCTION IF EXISTS pg_temp.testfunc();'
  );
}

type Results = pg.QueryResult[];

function summary(rs: Results) {
  return rs.map((r) => ({
    command: r.command,
    rowCount: r.rowCount,
    fields: r.fields.map((f) => [f.name, f.dataTypeID]),
  }));
}

describe('onUnmirrorable: passthrough', () => {
  beforeAll(async () => {
    await applyConfig(proxy, db, mappingConfig([users], { onUnmirrorable: 'passthrough' }));
  });

  it('Sequelize findOrCreate: the INSERT inside the pg_temp function is mirrored, RETURNING INTO fills the OUT row', async () => {
    const direct = (await withClient(
      (c) => c.query(findOrCreateSql('direct@x', 'Dee', 'Rect')),
      db.url,
    )) as unknown as Results;
    // The direct insert is not mirrored: put its row in new by hand, as a backfill would.
    await db.query(
      `INSERT INTO users_v2 SELECT id, email, first_name || ' ' || last_name, "createdAt", "updatedAt" FROM users`,
    );
    const before = await unmirrored('function_body');
    const rs = (await withClient((c) =>
      c.query(findOrCreateSql('ada@x', 'Ada', 'Lovelace')),
    )) as unknown as Results;
    expect(summary(rs)).toEqual(summary(direct));
    const row = rs[1].rows[0];
    expect(row).toMatchObject({
      email: 'ada@x',
      first_name: 'Ada',
      last_name: 'Lovelace',
      sequelize_caught_exception: null,
    });
    const stored = await db.query('SELECT id FROM users WHERE email = $1', ['ada@x']);
    expect(row.id).toBe(stored.rows[0].id);
    await expectInSync();
    expect(await unmirrored('function_body')).toBe(before);
  });

  it('findOrCreate of an existing row: the unique_violation branch answers as direct, nothing changes', async () => {
    const before = await counts();
    const rs = (await withClient((c) =>
      c.query(findOrCreateSql('ada@x', 'Ada', 'Again')),
    )) as unknown as Results;
    const direct = (await withClient(
      (c) => c.query(findOrCreateSql('ada@x', 'Ada', 'Again')),
      db.url,
    )) as unknown as Results;
    expect(summary(rs)).toEqual(summary(direct));
    expect(rs[1].rows).toEqual(direct[1].rows);
    expect(rs[1].rows[0].id).toBeNull();
    expect(rs[1].rows[0].sequelize_caught_exception).toMatch(/Key \(email\)=\(ada@x\) already exists/);
    expect(await counts()).toEqual(before);
    await expectInSync();
  });

  it('under reads: new the created row is found, and created again it hits the existing one', async () => {
    await applyConfig(proxy, db, mappingConfig([users], { reads: 'new' }));
    try {
      await withClient(async (c) => {
        await c.query(findOrCreateSql('grace@x', 'Grace', 'Hopper'));
        const r = await c.query('SELECT id, email, first_name, last_name FROM users WHERE email = $1', [
          'grace@x',
        ]);
        expect(r.rows).toMatchObject([{ email: 'grace@x', first_name: 'Grace', last_name: 'Hopper' }]);
        const again = (await c.query(findOrCreateSql('grace@x', 'Grace', 'Hopper'))) as unknown as Results;
        expect(again[1].rows[0].sequelize_caught_exception).toMatch(/already exists/);
        // A read in a body is switched too, and still fills its INTO target.
        await c.query(`DO $$ DECLARE r users; BEGIN
            SELECT * INTO STRICT r FROM users WHERE email = 'grace@x';
            IF r.last_name <> 'Hopper' THEN RAISE EXCEPTION 'read %', r; END IF;
          END $$`);
      });
      await expectInSync();
    } finally {
      await applyConfig(proxy, db, mappingConfig([users], { onUnmirrorable: 'passthrough' }));
    }
  });

  it('a DO block: INSERT, UPDATE and DELETE mirrored, FOUND and ROW_COUNT as direct', async () => {
    const block = `DO $$
      DECLARE n bigint;
      BEGIN
        INSERT INTO users (email, first_name, last_name, "createdAt", "updatedAt")
          VALUES ('d1@x', 'Dan', 'One', now(), now()), ('d2@x', 'Dan', 'Two', now(), now());
        GET DIAGNOSTICS n = ROW_COUNT;
        IF n <> 2 OR NOT FOUND THEN RAISE EXCEPTION 'insert: % rows', n; END IF;
        UPDATE users SET last_name = 'Uno' WHERE email = 'd1@x';
        IF NOT FOUND THEN RAISE EXCEPTION 'update found nothing'; END IF;
        UPDATE users SET last_name = 'Nobody' WHERE email = 'nobody@x';
        IF FOUND THEN RAISE EXCEPTION 'update of nothing found something'; END IF;
        -- a key move
        UPDATE users SET id = id + 1000 WHERE email = 'd2@x';
        DELETE FROM users WHERE email = 'd1@x';
        GET DIAGNOSTICS n = ROW_COUNT;
        IF n <> 1 THEN RAISE EXCEPTION 'delete: % rows', n; END IF;
      END $$`;
    const r = await withClient((c) => c.query(block));
    expect(r.command).toBe('DO');
    const rows = await db.query("SELECT id, last_name FROM users WHERE email LIKE 'd_@x' ORDER BY email");
    expect(rows.rows).toHaveLength(1);
    expect(rows.rows[0].id).toBeGreaterThan(1000);
    await expectInSync();
  });

  it('a DO block with SELECT ... INTO and UPDATE ... RETURNING INTO', async () => {
    await withClient((c) =>
      c.query(`DO $body$
        DECLARE r users; i int;
        BEGIN
          SELECT * INTO r FROM users WHERE email = 'ada@x';
          UPDATE users SET last_name = 'King' WHERE id = r.id RETURNING id INTO STRICT i;
          IF i IS DISTINCT FROM r.id THEN RAISE EXCEPTION 'returned %', i; END IF;
        END $body$;`),
    );
    expect((await db.query("SELECT last_name FROM users WHERE email = 'ada@x'")).rows).toEqual([
      { last_name: 'King' },
    ]);
    await expectInSync();
  });

  it('a statement ending in a -- comment before its ;, with and without RETURNING INTO', async () => {
    await withClient((c) =>
      c.query(`DO $$ DECLARE i int; BEGIN
          UPDATE users SET last_name = 'Comment' WHERE email = 'ada@x' -- the name
          ;
          UPDATE users SET first_name = 'Ada' WHERE email = 'ada@x' RETURNING id INTO i -- the id
          ;
          IF i IS NULL THEN RAISE EXCEPTION 'no id'; END IF;
        END $$`),
    );
    expect((await db.query("SELECT last_name FROM users WHERE email = 'ada@x'")).rows).toEqual([
      { last_name: 'Comment' },
    ]);
    await expectInSync();
  });

  it("a body in an E'' literal is not rewritten: a write there is counted, a read is not", async () => {
    const before = await unmirrored('function_body');
    await withClient((c) =>
      c.query(`DO E'BEGIN UPDATE users SET last_name = \\'Escaped\\' WHERE email = \\'nobody@x\\'; END'`),
    );
    expect(await unmirrored('function_body')).toBe(before + 1);
    await withClient((c) => c.query(`DO E'BEGIN PERFORM count(*) FROM users; END'`));
    expect(await unmirrored('function_body')).toBe(before + 1);
  });

  it('a permanent BEGIN ATOMIC function that writes the mapped table is counted', async () => {
    const before = await unmirrored('function_body');
    await withClient((c) =>
      c.query(`CREATE FUNCTION public.touch_user(e text) RETURNS void LANGUAGE sql
        BEGIN ATOMIC UPDATE users SET "updatedAt" = now() WHERE email = e; END;
        DROP FUNCTION public.touch_user(text)`),
    );
    expect(await unmirrored('function_body')).toBe(before + 1);
  });

  it('a LANGUAGE sql function in pg_temp: its INSERT ... RETURNING is mirrored, the result unchanged', async () => {
    const r = await withClient((c) =>
      c.query(`CREATE FUNCTION pg_temp.add_user(e text) RETURNS SETOF users LANGUAGE sql AS '
          INSERT INTO users (email, first_name, last_name, "createdAt", "updatedAt")
          VALUES (e, ''Sql'', ''Fn'', now(), now()) RETURNING *';
        SELECT email, first_name FROM pg_temp.add_user('sql@x')`),
    );
    expect((r as unknown as Results)[1].rows).toEqual([{ email: 'sql@x', first_name: 'Sql' }]);
    await expectInSync();
  });

  it('dynamic SQL (EXECUTE) naming the mapped table: forwarded and counted as dynamic_sql', async () => {
    const before = await unmirrored('dynamic_sql');
    await withClient((c) =>
      c.query(`DO $$ BEGIN
        EXECUTE 'INSERT INTO users (email, first_name, last_name, "createdAt", "updatedAt") VALUES ($1, $2, $3, now(), now())'
          USING 'dyn1@x', 'Dyn', 'One';
      END $$`),
    );
    await withClient((c) =>
      c.query(`DO $$ BEGIN
        EXECUTE format('DELETE FROM %I WHERE email = %L', 'users', 'dyn1@x');
      END $$`),
    );
    expect(await unmirrored('dynamic_sql')).toBe(before + 2);
  });

  it('a permanent function whose body writes the mapped table: created, counted as function_body', async () => {
    const before = await unmirrored('function_body');
    await withClient((c) =>
      c.query(`CREATE FUNCTION public.archive_user(e text) RETURNS void LANGUAGE plpgsql AS $$
        BEGIN DELETE FROM users WHERE email = e; END $$`),
    );
    expect(await unmirrored('function_body')).toBe(before + 1);
    await db.query('DROP FUNCTION public.archive_user(text)');
  });

  it('a body that only reads the mapped table is not counted', async () => {
    const before = await unmirrored('function_body');
    await withClient((c) =>
      c.query(`CREATE FUNCTION public.count_users() RETURNS bigint LANGUAGE plpgsql AS $$
        DECLARE n bigint; BEGIN n := (SELECT count(*) FROM users); RETURN (SELECT count(*) FROM users) + n - n; END $$;
        DROP FUNCTION public.count_users()`),
    );
    expect(await unmirrored('function_body')).toBe(before);
  });
});

describe('SQL PREPARE and EXECUTE', () => {
  beforeAll(async () => {
    await applyConfig(proxy, db, mappingConfig([users], { onUnmirrorable: 'passthrough' }));
  });

  const prepare =
    'PREPARE add_user (text) AS INSERT INTO users (email, first_name, last_name, "createdAt", "updatedAt") ' +
    "VALUES ($1, 'Pre', 'Pared', now(), now())";

  /** Each EXECUTE through the proxy and directly: same command tag, rows and fields. */
  async function both(setup: string, executes: string[]) {
    const run = (url: string, suffix: string) =>
      withClient(async (c) => {
        await c.query(setup);
        const out = [];
        for (const e of executes) {
          const r = await c.query(e.replaceAll('%', suffix));
          out.push({
            command: r.command,
            rowCount: r.rowCount,
            rows: r.rows,
            fields: r.fields.map((f) => [f.name, f.dataTypeID]),
          });
        }
        return out;
      }, url);
    const direct = await run(db.url, 'direct');
    const proxied = await run(proxy.url(), 'proxy');
    return { direct, proxied };
  }

  it('five EXECUTEs of a prepared INSERT: all mirrored, tags as direct, nothing counted', async () => {
    const before = await unmirrored('unsupported');
    const old = (await counts()).old;
    const execs = [1, 2, 3, 4, 5].map((i) => `EXECUTE add_user('p${i}-%@x')`);
    const { direct, proxied } = await both(prepare, execs);
    expect(proxied).toEqual(direct);
    expect(proxied[0].command).toBe('INSERT');
    expect((await counts()).old).toBe(old + 10);
    // The direct rows are not mirrored: drop them, then new = up(old).
    await db.query("DELETE FROM users WHERE email LIKE '%-direct@x'");
    await expectInSync();
    expect(await unmirrored('unsupported')).toBe(before);
  });

  it('a prepared UPDATE ... RETURNING and DELETE: rows, fields and tags as direct, mirrored', async () => {
    await db.query(
      `INSERT INTO users (email, first_name, last_name, "createdAt", "updatedAt")
       VALUES ('u-direct@x', 'U', 'D', now(), now()), ('u-proxy@x', 'U', 'P', now(), now())`,
    );
    await db.query(
      `INSERT INTO users_v2 SELECT id, email, first_name || ' ' || last_name, "createdAt", "updatedAt" FROM users
       WHERE email LIKE 'u-%' ON CONFLICT DO NOTHING`,
    );
    const { direct, proxied } = await both(
      'PREPARE ren (text, text) AS UPDATE users SET last_name = $2 WHERE email = $1 RETURNING email, last_name; PREPARE del (text) AS DELETE FROM users WHERE email = $1',
      ["EXECUTE ren('u-%@x', 'Renamed')", "EXECUTE ren('none-%@x', 'X')", "EXECUTE del('u-%@x')"],
    );
    expect(
      proxied.map((r) => ({
        ...r,
        rows: r.rows.map((x) => ({ ...x, email: x.email.replace('proxy', 'direct') })),
      })),
    ).toEqual(direct);
    expect(proxied.map((r) => [r.command, r.rowCount])).toEqual([
      ['UPDATE', 1],
      ['UPDATE', 0],
      ['DELETE', 1],
    ]);
    await db.query("DELETE FROM users WHERE email LIKE 'u-direct@x'");
    await db.query("DELETE FROM users_v2 WHERE email LIKE 'u-direct@x'");
    await expectInSync();
  });

  it('EXECUTE in the extended protocol and after DEALLOCATE', async () => {
    await withClient(async (c) => {
      await c.query(prepare);
      const r = await c.query({ text: "EXECUTE add_user('ext@x')", values: [] });
      expect([r.command, r.rowCount, r.fields.length]).toEqual(['INSERT', 1, 0]);
      await c.query('DEALLOCATE add_user');
      await c.query('PREPARE add_user AS SELECT 1 AS one');
      const s = await c.query('EXECUTE add_user');
      expect([s.command, s.rows]).toEqual(['SELECT', [{ one: 1 }]]);
    });
    await expectInSync();
  });

  it('a PREPARE that cannot be mirrored is counted at each EXECUTE', async () => {
    const before = await unmirrored('unsupported');
    await withClient(async (c) => {
      await c.query(
        'PREPARE m (text) AS MERGE INTO users u USING (SELECT $1 AS email) s ON u.email = s.email ' +
          'WHEN NOT MATCHED THEN INSERT (email, first_name, last_name, "createdAt", "updatedAt") VALUES (s.email, \'M\', \'E\', now(), now())',
      );
      expect(await unmirrored('unsupported')).toBe(before);
      for (const i of [1, 2, 3]) await c.query(`EXECUTE m('merge${i}@x')`);
    });
    expect(await unmirrored('unsupported')).toBe(before + 3);
    await db.query("DELETE FROM users WHERE email LIKE 'merge%'");
  });
});

describe('onUnmirrorable: reject', () => {
  beforeAll(async () => {
    await applyConfig(proxy, db, mappingConfig([users], { onUnmirrorable: 'reject' }));
  });
  afterAll(async () => {
    await applyConfig(proxy, db, mappingConfig([users], { onUnmirrorable: 'passthrough' }));
  });

  const cases: [string, string, string][] = [
    ['EXECUTE of a built string', 'dynamic_sql', `DO $$ BEGIN EXECUTE 'DELETE FROM ' || 'users'; END $$`],
    [
      'a permanent function writing the mapped table',
      'function_body',
      `CREATE FUNCTION public.wipe() RETURNS void LANGUAGE sql AS $$ DELETE FROM users $$`,
    ],
  ];
  for (const [what, reason, sql] of cases) {
    it(`${what}: 0A000 naming the mapping, nothing changed, counted as ${reason}`, async () => {
      const before = await counts();
      const n = await unmirrored(reason);
      const err = await withClient((c) =>
        c.query(sql).then(
          () => undefined,
          (e) => e,
        ),
      );
      expect(err?.code, String(err?.message)).toBe('0A000');
      expect(err.message).toContain(users.name);
      expect(await counts()).toEqual(before);
      expect(await unmirrored(reason)).toBe(n + 1);
      const fn = await db.query("SELECT count(*)::int AS n FROM pg_proc WHERE proname = 'wipe'");
      expect(fn.rows[0].n).toBe(0);
    });
  }

  it('findOrCreate is mirrored, not rejected', async () => {
    const rs = (await withClient((c) =>
      c.query(findOrCreateSql('rej@x', 'Re', 'Ject')),
    )) as unknown as Results;
    expect(rs[1].rows[0].email).toBe('rej@x');
    await expectInSync();
  });
});

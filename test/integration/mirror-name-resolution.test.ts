// Which relation a write reaches is Postgres's decision, not the proxy's:
// a name spelled with Unicode escapes still names the mapped table and is
// mirrored; a name the session resolves to another relation (a search_path
// set through set_config or ALTER ROLE, "$user" after SET ROLE, a temporary
// table) never sends that relation's rows into new. Either way the client
// sees what it would see directly: the same rows, tag and row count.
import pg from 'pg';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { metrics } from '../../src/metrics.ts';
import { freshDatabase, type TestDatabase } from '../support/db.ts';
import { applyConfig, mappingConfig } from '../support/lifecycle.ts';
import type { MappingDefinition } from '../support/mapping-cases.ts';
import { startProxy, type TestProxy } from '../support/proxy.ts';

let db: TestDatabase;
let proxy: TestProxy;
let evil: string;
/** A role with no schema of its own: "$user" names nothing for it. */
let plain: string;

const acct: MappingDefinition = {
  name: 'acct-v2',
  old: 'public.acct',
  new: 'public.acct_v2',
  key: ['id'],
  up: { id: 'id', v: 'v' },
  down: { id: 'id', v: 'v' },
};

/** Mapped in a schema no default search_path names: only a role's default reaches it unqualified. */
const items: MappingDefinition = {
  name: 'app-items',
  old: 'app.items',
  new: 'app.items_v2',
  key: ['id'],
  up: { id: 'id', v: 'v' },
  down: { id: 'id', v: 'v' },
};

const config = (s: Parameters<typeof mappingConfig>[1] = {}) => mappingConfig([acct, items], s);

beforeAll(async () => {
  db = await freshDatabase('nres');
  evil = `evil_${db.name.slice(-10)}`;
  plain = `plain_${db.name.slice(-10)}`;
  await db.query(`
    CREATE TABLE acct (id int PRIMARY KEY, v text);
    CREATE TABLE acct_v2 (id int PRIMARY KEY, v text);
    -- Same name and row shape, other schemas: not the mapped table.
    CREATE SCHEMA shadow;
    CREATE TABLE shadow.acct (id int PRIMARY KEY, v text);
    CREATE ROLE ${evil} LOGIN;
    CREATE ROLE ${plain} LOGIN;
    CREATE SCHEMA ${evil} AUTHORIZATION ${evil};
    CREATE TABLE ${evil}.acct (id int PRIMARY KEY, v text);
    ALTER TABLE ${evil}.acct OWNER TO ${evil};
    CREATE SCHEMA app;
    CREATE TABLE app.items (id int PRIMARY KEY, v text);
    CREATE TABLE app.items_v2 (id int PRIMARY KEY, v text);
    CREATE TABLE public.items (id int PRIMARY KEY, v text);
    GRANT USAGE ON SCHEMA app TO ${plain};
    GRANT ALL ON app.items, app.items_v2, public.items TO ${plain};
    GRANT USAGE ON SCHEMA shadow TO ${evil}, ${plain};
    GRANT ALL ON shadow.acct, public.acct, public.acct_v2 TO ${plain};
    -- evil may not touch new: a write of its own table must not be made to.
    GRANT ALL ON shadow.acct TO ${evil};`);
  proxy = await startProxy(db, config());
});

afterAll(async () => {
  await proxy?.close();
  await db?.query(`DROP OWNED BY ${evil}, ${plain}`).catch(() => {});
  await db?.drop();
  const { url } = (await import('../support/db.ts')).serverInfo();
  const admin = new pg.Client({ connectionString: url });
  await admin.connect();
  await admin.query(`DROP ROLE IF EXISTS ${evil}, ${plain}`).catch(() => {});
  await admin.end();
});

beforeEach(async () => {
  await db.query(`TRUNCATE acct, acct_v2, shadow.acct, ${evil}.acct, app.items, app.items_v2, public.items`);
  await db.query(`ALTER ROLE ${plain} IN DATABASE ${db.name} RESET search_path`);
  await db.query(
    "INSERT INTO acct VALUES (1, 'one'), (2, 'two'); INSERT INTO acct_v2 VALUES (1, 'one'), (2, 'two')",
  );
});

async function withClient<T>(f: (c: pg.Client) => Promise<T>, user?: string): Promise<T> {
  const c = new pg.Client({ connectionString: proxy.url(user ? { user } : {}) });
  await c.connect();
  try {
    return await f(c);
  } finally {
    await c.end();
  }
}

async function ids(table: string): Promise<number[]> {
  const r = await db.query<{ id: number }>(`SELECT id FROM ${table} ORDER BY id`);
  return r.rows.map((x) => x.id);
}

async function state() {
  return {
    old: await ids('public.acct'),
    new: await ids('public.acct_v2'),
    shadow: await ids('shadow.acct'),
    evil: await ids(`${evil}.acct`),
  };
}

async function unmirrored(reason: string): Promise<number> {
  const v = (await metrics.unmirroredWrites.get()).values.find(
    (x) => x.labels.mapping === acct.name && x.labels.reason === reason,
  );
  return v?.value ?? 0;
}

const reply = (r: pg.QueryResult) => ({ command: r.command, rowCount: r.rowCount, rows: r.rows });

describe('Unicode-escaped names of the mapped table are mirrored', () => {
  const spellings: [string, string][] = [
    ['U&"\\0061cct"', 'backslash escape'],
    ['U&"!0061cct" UESCAPE \'!\'', 'UESCAPE'],
    ['U&"\\+000061cct"', 'six-digit escape'],
    ['public.U&"a\\0063ct"', 'qualified'],
    ['U&"\\0070ublic" UESCAPE \'\\\' . U&"!0061cct" UESCAPE \'!\'', 'both parts escaped'],
  ];
  for (const [name, what] of spellings) {
    it(`${what}: ${name}, simple and extended`, async () => {
      await withClient(async (c) => {
        const a = await c.query(`INSERT INTO ${name} (id, v) VALUES (10, 'ten') RETURNING id, v`);
        expect(reply(a)).toEqual({ command: 'INSERT', rowCount: 1, rows: [{ id: 10, v: 'ten' }] });
        await c.query(`INSERT INTO ${name} VALUES ($1, $2)`, [11, 'eleven']);
        await c.query(`UPDATE ${name} AS t SET v = 'TEN' WHERE t.id = 10`);
        // A key move: the PG 15 pre-read copies the target name, escape clause included.
        const m = await c.query(`UPDATE ${name} SET id = id + 100 WHERE id = $1`, [11]);
        expect(m.rowCount).toBe(1);
        await c.query(`DELETE FROM ${name} WHERE id = 1`);
      });
      const s = await state();
      expect(s.old).toEqual([2, 10, 111]);
      expect(s.new).toEqual(s.old);
      const v = await db.query('SELECT v FROM acct_v2 WHERE id = 10');
      expect(v.rows).toEqual([{ v: 'TEN' }]);
    });
  }

  it('a switched read of an escaped name reads new', async () => {
    await applyConfig(proxy, db, config({ reads: 'new' }));
    try {
      await db.query("INSERT INTO acct_v2 VALUES (50, 'only in new')");
      const r = await withClient((c) => c.query(`SELECT v FROM U&"!0061cct" UESCAPE '!' WHERE id = 50`));
      expect(r.rows).toEqual([{ v: 'only in new' }]);
    } finally {
      await applyConfig(proxy, db, config());
    }
  });

  it('onUnmirrorable: reject refuses TRUNCATE U&"\\0061cct" and counts it', async () => {
    await applyConfig(proxy, db, config({ onUnmirrorable: 'reject' }));
    try {
      const n = await unmirrored('truncate');
      const err = await withClient((c) => c.query(`TRUNCATE U&"!0061cct" UESCAPE '!'`).catch((e) => e));
      expect(err.code).toBe('0A000');
      expect(err.message).toContain(acct.name);
      expect(await unmirrored('truncate')).toBe(n + 1);
      expect((await state()).old).toEqual([1, 2]);
    } finally {
      await applyConfig(proxy, db, config());
    }
  });

  it('passthrough counts an unmirrorable write spelled with escapes', async () => {
    const n = await unmirrored('truncate');
    await withClient((c) => c.query('TRUNCATE U&"\\0061cct"'));
    expect(await unmirrored('truncate')).toBe(n + 1);
  });
});

describe('a name Postgres resolves to another relation never reaches new', () => {
  /** Runs the same writes on the other table, then checks new is untouched and the replies are as direct. */
  async function writesLandElsewhere(c: pg.Client, direct: pg.Client, other: string) {
    const run = async (cl: pg.Client, base: number) => [
      reply(await cl.query(`INSERT INTO acct VALUES (${base}, 'x'), (${base + 1}, 'y') RETURNING *`)),
      reply(await cl.query(`INSERT INTO acct VALUES ($1, 'z')`, [base + 2])),
      reply(await cl.query(`UPDATE acct SET v = v || '!' WHERE id >= ${base} RETURNING id, v`)),
      reply(await cl.query(`UPDATE acct SET id = id + 1000 WHERE id = ${base + 2}`)),
      // The ids 1 and 2 also exist in the mapped table: a delete by key must not reach them in new.
      reply(await cl.query(`INSERT INTO acct VALUES (1, 'shadow one'), (2, 'shadow two')`)),
      reply(await cl.query('DELETE FROM acct WHERE id IN (1, 2)')),
    ];
    const through = await run(c, 20);
    expect(await ids(other)).toEqual([20, 21, 1022]);
    await db.query(`TRUNCATE ${other}`);
    const straight = await run(direct, 20);
    expect(through).toEqual(straight);
    const s = await state();
    expect(s.old).toEqual([1, 2]);
    expect(s.new).toEqual([1, 2]);
  }

  async function directAs(setup: string, f: (c: pg.Client) => Promise<void>, user?: string) {
    const u = new URL(db.url);
    if (user) u.username = user;
    const c = new pg.Client({ connectionString: u.toString() });
    await c.connect();
    try {
      if (setup) await c.query(setup);
      await f(c);
    } finally {
      await c.end();
    }
  }

  it("set_config('search_path', 'shadow, public', false) then unqualified writes", async () => {
    const setup = "SELECT set_config('search_path', 'shadow, public', false)";
    await withClient(async (c) => {
      await c.query(setup);
      await directAs(setup, (d) => writesLandElsewhere(c, d, 'shadow.acct'));
    });
  });

  it('SET ROLE then unqualified writes through "$user"', async () => {
    const setup = `SET ROLE ${evil}`;
    await withClient(async (c) => {
      await c.query(setup);
      await directAs(setup, (d) => writesLandElsewhere(c, d, `${evil}.acct`));
    });
  });

  it('SET ROLE is followed for "$user" and undone by ROLLBACK; SET LOCAL ROLE lasts until the end of the transaction', async () => {
    await withClient(async (c) => {
      await c.query('BEGIN');
      await c.query(`SET ROLE ${evil}`);
      await c.query("INSERT INTO acct VALUES (70, 'evil')");
      await c.query('ROLLBACK');
      await c.query("INSERT INTO acct VALUES (71, 'mapped')");
      await c.query('BEGIN');
      await c.query(`SET LOCAL ROLE ${evil}`);
      await c.query("INSERT INTO acct VALUES (72, 'evil')");
      await c.query('COMMIT');
      await c.query("INSERT INTO acct VALUES (73, 'mapped')");
      await c.query(`SET SESSION AUTHORIZATION ${evil}`);
      await c.query("INSERT INTO acct VALUES (74, 'evil')");
      await c.query('RESET SESSION AUTHORIZATION');
      await c.query("INSERT INTO acct VALUES (75, 'mapped')");
    });
    const s = await state();
    expect(s.old).toEqual([1, 2, 71, 73, 75]);
    expect(s.new).toEqual([1, 2, 71, 73, 75]);
    expect(s.evil).toEqual([72, 74]);
  });

  it('ALTER ROLE ... SET search_path, then a session of that role', async () => {
    await db.query(`ALTER ROLE ${plain} IN DATABASE ${db.name} SET search_path = shadow, public`);
    await withClient((c) => directAs('', (d) => writesLandElsewhere(c, d, 'shadow.acct'), plain), plain);
  });

  it('a temporary table with the mapped name', async () => {
    const setup = 'CREATE TEMP TABLE acct (LIKE public.acct INCLUDING ALL)';
    await withClient(async (c) => {
      await c.query(setup);
      await directAs(setup, async (d) => {
        const run = async (cl: pg.Client) => [
          reply(await cl.query(`INSERT INTO acct VALUES (1, 'temp'), (30, 'temp') RETURNING *`)),
          reply(await cl.query(`UPDATE acct SET id = id + 1 WHERE id = 30 RETURNING id`)),
          reply(await cl.query('DELETE FROM acct WHERE id = 1')),
          reply(await cl.query('SELECT id, v FROM acct ORDER BY id')),
        ];
        expect(await run(c)).toEqual(await run(d));
      });
    });
    const s = await state();
    expect(s.old).toEqual([1, 2]);
    expect(s.new).toEqual([1, 2]);
  });

  it("a set_config('search_path', ...) back to the mapped table's schema is followed: mirrored", async () => {
    await withClient(async (c) => {
      await c.query('SET search_path = shadow, public');
      await c.query("INSERT INTO acct VALUES (60, 'shadow')");
      await c.query("SELECT pg_catalog.set_config('search_path', 'public', false)");
      await c.query("INSERT INTO acct VALUES (61, 'mapped')");
      await c.query('BEGIN');
      await c.query("SELECT set_config('search_path', 'shadow, public', true)");
      await c.query("INSERT INTO acct VALUES (62, 'shadow')");
      await c.query('COMMIT');
      await c.query(
        "INSERT INTO acct VALUES (63, 'mapped'); SELECT set_config('search_path', 'shadow', false)",
      );
      await c.query("INSERT INTO acct VALUES (64, 'shadow')");
    });
    const s = await state();
    expect(s.old).toEqual([1, 2, 61, 63]);
    expect(s.new).toEqual([1, 2, 61, 63]);
    expect(s.shadow).toEqual([60, 62, 64]);
  });

  it("ALTER ROLE ... SET search_path to the mapped table's schema: the role's sessions start there, mirrored", async () => {
    await db.query(`ALTER ROLE ${plain} IN DATABASE ${db.name} SET search_path = app`);
    // Role defaults are read with the catalog, when the mappings are compiled.
    const fresh = await startProxy(db, config());
    try {
      const c = new pg.Client({ connectionString: fresh.url({ user: plain }) });
      await c.connect();
      try {
        await c.query("INSERT INTO items VALUES (1, 'a')");
        await c.query('SET search_path = public');
        await c.query("INSERT INTO items VALUES (2, 'public')");
        await c.query('RESET search_path');
        await c.query("INSERT INTO items VALUES (3, 'c')");
      } finally {
        await c.end();
      }
      const app = await ids('app.items');
      expect(app).toEqual([1, 3]);
      expect(await ids('app.items_v2')).toEqual(app);
      expect(await ids('public.items')).toEqual([2]);
    } finally {
      await fresh.close();
    }
  });

  it('the mapped table itself, qualified, is still mirrored in the same session', async () => {
    await withClient(async (c) => {
      await c.query("SELECT set_config('search_path', 'shadow, public', false)");
      await c.query("INSERT INTO public.acct VALUES (40, 'real')");
      await c.query("INSERT INTO acct VALUES (41, 'shadow')");
    });
    const s = await state();
    expect(s.old).toEqual([1, 2, 40]);
    expect(s.new).toEqual([1, 2, 40]);
    expect(s.shadow).toEqual([41]);
  });
});

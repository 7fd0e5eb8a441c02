// dualWrite: both. Writes the application makes on the NEW table are mirrored
// into the old one by `down`, with the guarantees of the old -> new direction:
// one statement, row images of what was stored, tags and counts as direct,
// key moves, composite keys, the kill switch, prepared statements re-planned
// at a flip, unmirrorable writes counted or refused. Every check reads the
// tables straight on Postgres, never through the proxy.
import pg from 'pg';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { registry } from '../../src/metrics.ts';
import { freshDatabase, type TestDatabase } from '../support/db.ts';
import { applyConfig, mappingConfig, type Switches } from '../support/lifecycle.ts';
import type { MappingDefinition } from '../support/mapping-cases.ts';
import { startProxy, type TestProxy } from '../support/proxy.ts';

const SCHEMA = `
CREATE TABLE people (
  id serial PRIMARY KEY, first_name text NOT NULL, last_name text NOT NULL,
  balance int NOT NULL DEFAULT 0, CHECK (balance > -1000));
CREATE TABLE people_v2 (
  id int PRIMARY KEY DEFAULT nextval('people_id_seq'), full_name text NOT NULL,
  balance_cents bigint NOT NULL DEFAULT 0, touched timestamptz NOT NULL DEFAULT now());
-- Writes on old are counted per row: a mirrored write must reach old exactly once.
CREATE TABLE old_writes (n int NOT NULL);
INSERT INTO old_writes VALUES (0);
CREATE FUNCTION count_old_write() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN UPDATE old_writes SET n = n + 1; RETURN NULL; END $$;
CREATE TRIGGER people_writes AFTER INSERT OR UPDATE OR DELETE ON people
  FOR EACH ROW EXECUTE FUNCTION count_old_write();
-- A trigger on new changes what is stored: the mirror must carry the stored row.
CREATE FUNCTION tidy_name() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN NEW.full_name := btrim(NEW.full_name); RETURN NEW; END $$;
CREATE TRIGGER people_v2_tidy BEFORE INSERT OR UPDATE ON people_v2
  FOR EACH ROW EXECUTE FUNCTION tidy_name();

CREATE TABLE lines (order_id int, line_no int, qty int NOT NULL, PRIMARY KEY (order_id, line_no));
CREATE TABLE order_lines (order_ref int, position int, quantity int NOT NULL, UNIQUE (order_ref, position));
`;

const people: MappingDefinition = {
  name: 'people-v2',
  old: 'people',
  new: 'people_v2',
  key: ['id'],
  up: { id: 'id', full_name: "first_name || ' ' || last_name", balance_cents: 'balance * 100' },
  down: {
    id: 'id',
    first_name: "split_part(full_name, ' ', 1)",
    last_name: "split_part(full_name, ' ', 2)",
    balance: '(balance_cents / 100)::int',
  },
};

const lines: MappingDefinition = {
  name: 'order-lines',
  old: 'lines',
  new: 'order_lines',
  key: ['order_ref', 'position'],
  up: { order_ref: 'order_id', position: 'line_no', quantity: 'qty' },
  down: { order_id: 'order_ref', line_no: 'position', qty: 'quantity' },
};

let db: TestDatabase;
let proxy: TestProxy;
let client: pg.Client;

async function configure(s: Switches): Promise<void> {
  await applyConfig(proxy, db, mappingConfig([people, lines], s));
}

/** Rows of old that are not down(new), and rows of new that are not up(old): both must be 0. */
async function drift(): Promise<{ people: number; lines: number }> {
  const except = (a: string, b: string) => `(SELECT count(*)::int FROM (${a} EXCEPT ${b}) d)`;
  const r = await db.query<{ people: number; lines: number }>(`SELECT
    ${except(
      'SELECT id, first_name, last_name, balance FROM people',
      "SELECT id, split_part(full_name, ' ', 1), split_part(full_name, ' ', 2), (balance_cents / 100)::int FROM people_v2",
    )} + ${except(
      'SELECT id, full_name, balance_cents FROM people_v2',
      "SELECT id, first_name || ' ' || last_name, balance * 100 FROM people",
    )} AS people,
    ${except('SELECT order_id, line_no, qty FROM lines', 'SELECT order_ref, position, quantity FROM order_lines')} +
    ${except('SELECT order_ref, position, quantity FROM order_lines', 'SELECT order_id, line_no, qty FROM lines')} AS lines`);
  return r.rows[0];
}

async function oldWrites(): Promise<number> {
  return (await db.query<{ n: number }>('SELECT n FROM old_writes')).rows[0].n;
}

async function metric(name: string, labels: Record<string, string>): Promise<number> {
  const m = registry.getSingleMetric(name);
  if (!m) throw new Error(`no metric ${name}`);
  return (await m.get()).values
    .filter((v) => Object.entries(labels).every(([k, want]) => String(v.labels[k]) === want))
    .reduce((s, v) => s + v.value, 0);
}

/** The same statement straight on Postgres, rolled back: what a client sees without the proxy. */
async function directly(sql: string, params: unknown[] = [], before = '') {
  await db.direct.query('BEGIN');
  try {
    if (before) await db.direct.query(before);
    const r = await db.direct.query({ text: sql, values: params, rowMode: 'array' });
    return { command: r.command, rowCount: r.rowCount, rows: r.rows, fields: r.fields.map((f) => f.name) };
  } finally {
    await db.direct.query('ROLLBACK');
  }
}

async function through(c: pg.Client, sql: string, params: unknown[] = []) {
  const r = await c.query({ text: sql, values: params, rowMode: 'array' });
  return { command: r.command, rowCount: r.rowCount, rows: r.rows, fields: r.fields.map((f) => f.name) };
}

beforeAll(async () => {
  db = await freshDatabase('rev');
  await db.query(SCHEMA);
  proxy = await startProxy(db, mappingConfig([people, lines], { dualWrite: 'both' }));
  client = new pg.Client({ connectionString: proxy.url() });
  await client.connect();
});

afterAll(async () => {
  await client?.end();
  await proxy?.close();
  await db?.drop();
});

beforeEach(async () => {
  await configure({ dualWrite: 'both' });
  await db.query('TRUNCATE people, people_v2, lines, order_lines; UPDATE old_writes SET n = 0');
});

describe('writes on new reach old by down, as direct for the client', () => {
  it('INSERT with defaults, a sequence, a trigger and RETURNING', async () => {
    const sql =
      "INSERT INTO people_v2 (full_name, balance_cents) VALUES ('  Ada Lovelace ', 500) RETURNING full_name, balance_cents";
    const want = await directly(sql);
    const got = await through(client, sql);
    expect(got).toEqual(want);
    const old = await db.query('SELECT first_name, last_name, balance FROM people');
    expect(old.rows).toEqual([{ first_name: 'Ada', last_name: 'Lovelace', balance: 5 }]);
    // The sequence value new stored is the key old got.
    const ids = await db.query('SELECT (SELECT id FROM people) = (SELECT id FROM people_v2) AS same');
    expect(ids.rows[0].same).toBe(true);
    expect(await drift()).toEqual({ people: 0, lines: 0 });
  });

  it('multi-row INSERT, then UPDATE x = x + n of several rows, with the tag and count of direct', async () => {
    const ins = "INSERT INTO people_v2 (id, full_name) VALUES (1, 'A B'), (2, 'C D'), (3, 'E F')";
    const upd = 'UPDATE people_v2 SET balance_cents = balance_cents + 300 WHERE id <= $1';
    const wantIns = await directly(ins);
    const wantUpd = await directly(upd, [2], ins);
    expect(wantUpd.rowCount).toBe(2);
    expect(await through(client, ins)).toEqual(wantIns);
    expect(await through(client, upd, [2])).toEqual(wantUpd);
    const old = await db.query('SELECT id, balance FROM people ORDER BY id');
    expect(old.rows).toEqual([
      { id: 1, balance: 3 },
      { id: 2, balance: 3 },
      { id: 3, balance: 0 },
    ]);
    expect(await drift()).toEqual({ people: 0, lines: 0 });
  });

  it('an UPDATE of a row old does not have yet inserts it into old', async () => {
    await db.query("INSERT INTO people_v2 (id, full_name) VALUES (7, 'Grace Hopper')");
    await client.query('UPDATE people_v2 SET balance_cents = 1200 WHERE id = 7');
    const old = await db.query('SELECT id, first_name, last_name, balance FROM people');
    expect(old.rows).toEqual([{ id: 7, first_name: 'Grace', last_name: 'Hopper', balance: 12 }]);
  });

  it('upsert, DELETE with RETURNING, and a key move', async () => {
    await client.query("INSERT INTO people_v2 (id, full_name) VALUES (1, 'A B'), (2, 'C D')");
    const ups =
      "INSERT INTO people_v2 AS p (id, full_name) VALUES (2, 'X Y'), (3, 'Z W') ON CONFLICT (id) DO UPDATE SET full_name = EXCLUDED.full_name";
    const r = await client.query(ups);
    expect(r.command).toBe('INSERT');
    expect(r.rowCount).toBe(2);
    expect(await drift()).toEqual({ people: 0, lines: 0 });

    const del = await through(client, 'DELETE FROM people_v2 p WHERE p.id = $1 RETURNING p.full_name', [1]);
    expect(del).toEqual({ command: 'DELETE', rowCount: 1, rows: [['A B']], fields: ['full_name'] });
    expect((await db.query('SELECT id FROM people ORDER BY id')).rows).toEqual([{ id: 2 }, { id: 3 }]);

    const move = await client.query('UPDATE people_v2 SET id = id + 100 WHERE id = 3');
    expect(move.rowCount).toBe(1);
    expect((await db.query('SELECT id FROM people ORDER BY id')).rows).toEqual([{ id: 2 }, { id: 103 }]);
    expect(await drift()).toEqual({ people: 0, lines: 0 });
  });

  it('a composite key: insert, update, move and delete by both columns', async () => {
    await client.query('INSERT INTO order_lines VALUES (1, 1, 5), (1, 2, 6), (2, 1, 7)');
    await client.query('UPDATE order_lines SET quantity = quantity * 2 WHERE order_ref = 1');
    await client.query('UPDATE order_lines SET position = 3 WHERE order_ref = 2 AND position = 1');
    await client.query('DELETE FROM order_lines WHERE order_ref = 1 AND position = 2');
    const old = await db.query('SELECT order_id, line_no, qty FROM lines ORDER BY 1, 2');
    expect(old.rows).toEqual([
      { order_id: 1, line_no: 1, qty: 10 },
      { order_id: 2, line_no: 3, qty: 7 },
    ]);
    expect(await drift()).toEqual({ people: 0, lines: 0 });
  });
});

/** Resolves once the backend waits on a lock, or once `done()` says its statement finished. */
async function lockWait(pid: number, done: () => boolean): Promise<void> {
  const until = Date.now() + 30_000;
  while (!done()) {
    const r = await db.query("SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND wait_event_type = 'Lock'", [
      pid,
    ]);
    if (r.rowCount) return;
    if (Date.now() > until) throw new Error(`backend ${pid} neither finished nor waited on a lock in 30 s`);
    await new Promise((res) => setTimeout(res, 10));
  }
}

describe('no loops and no double writes', () => {
  it('a write on old reaches old once and new once; a write on new reaches old once', async () => {
    await client.query("INSERT INTO people (id, first_name, last_name) VALUES (1, 'A', 'B')");
    expect(await oldWrites()).toBe(1);
    await client.query('UPDATE people_v2 SET balance_cents = 100 WHERE id = 1');
    expect(await oldWrites()).toBe(2);
    await client.query('UPDATE people SET balance = 2 WHERE id = 1');
    expect(await oldWrites()).toBe(3);
    expect((await db.query('SELECT balance_cents FROM people_v2')).rows).toEqual([{ balance_cents: '200' }]);
    expect(await drift()).toEqual({ people: 0, lines: 0 });
  });

  // Two transactions on one key, one through each name, in fixed interleavings.
  // Each step is [client, sql]; a step may block until the other commits.
  const A = 'UPDATE people SET balance = balance + 1 WHERE id = 1';
  const B = 'UPDATE people_v2 SET balance_cents = balance_cents + 1000 WHERE id = 1';
  const cases: { name: string; steps: [0 | 1, string][]; balance?: number }[] = [
    {
      name: 'old then new',
      steps: [
        [0, 'BEGIN'],
        [0, A],
        [0, 'COMMIT'],
        [1, 'BEGIN'],
        [1, B],
        [1, 'COMMIT'],
      ],
      balance: 21,
    },
    {
      name: 'new then old',
      steps: [
        [1, 'BEGIN'],
        [1, B],
        [1, 'COMMIT'],
        [0, 'BEGIN'],
        [0, A],
        [0, 'COMMIT'],
      ],
      balance: 21,
    },
    {
      name: 'overlapping, old first',
      steps: [
        [0, 'BEGIN'],
        [1, 'BEGIN'],
        [0, A],
        [1, B],
        [0, 'COMMIT'],
        [1, 'COMMIT'],
      ],
      balance: 21,
    },
    {
      name: 'overlapping, new first',
      steps: [
        [0, 'BEGIN'],
        [1, 'BEGIN'],
        [1, B],
        [0, A],
        [1, 'COMMIT'],
        [0, 'COMMIT'],
      ],
      balance: 21,
    },
    {
      name: 'old updates while new deletes',
      steps: [
        [1, 'BEGIN'],
        [0, 'BEGIN'],
        [1, 'DELETE FROM people_v2 WHERE id = 1'],
        [0, A],
        [1, 'COMMIT'],
        [0, 'COMMIT'],
      ],
    },
    {
      name: 'both insert the same new key',
      steps: [
        [0, 'BEGIN'],
        [1, 'BEGIN'],
        [
          0,
          "INSERT INTO people (id, first_name, last_name) VALUES (2, 'Old', 'Side') ON CONFLICT (id) DO UPDATE SET first_name = 'Old'",
        ],
        [
          1,
          "INSERT INTO people_v2 (id, full_name) VALUES (2, 'New Side') ON CONFLICT (id) DO UPDATE SET full_name = 'New Side'",
        ],
        [0, 'COMMIT'],
        [1, 'COMMIT'],
      ],
    },
  ];
  for (const c of cases) {
    it(`${c.name}: every committed row has old = down(new) and new = up(old)`, async () => {
      await client.query("INSERT INTO people (id, first_name, last_name, balance) VALUES (1, 'A', 'B', 10)");
      const other = new pg.Client({ connectionString: proxy.url() });
      await other.connect();
      const clients = [client, other];
      try {
        // Each client's server backend (one per session through the proxy), to see it wait on a lock.
        const pids = await Promise.all(
          clients.map(async (x) => (await x.query('SELECT pg_backend_pid() AS p')).rows[0].p as number),
        );
        const pending: Promise<unknown>[] = [undefined, undefined].map(() => Promise.resolve());
        for (const [who, sql] of c.steps) {
          // A client's steps run in order; the next step goes once this one is done or waits on a lock.
          let done = false;
          const run = pending[who]
            .then(() => clients[who].query(sql))
            .finally(() => {
              done = true;
            });
          pending[who] = run;
          await Promise.race([run, lockWait(pids[who], () => done)]);
        }
        await Promise.all(pending);
      } finally {
        await other.end();
      }
      expect(await drift()).toEqual({ people: 0, lines: 0 });
      if (c.balance !== undefined) {
        expect((await db.query('SELECT balance FROM people WHERE id = 1')).rows).toEqual([
          { balance: c.balance },
        ]);
      }
    });
  }
});

describe('switches', () => {
  it('dualWrite: true mirrors old -> new only; the kill switch stops both directions', async () => {
    await configure({ dualWrite: true });
    await client.query("INSERT INTO people_v2 (id, full_name) VALUES (1, 'Only New')");
    expect((await db.query('SELECT count(*)::int AS n FROM people')).rows[0].n).toBe(0);
    await configure({ dualWrite: 'both', killSwitch: true });
    await client.query("INSERT INTO people_v2 (id, full_name) VALUES (2, 'Still New')");
    await client.query("INSERT INTO people (id, first_name, last_name) VALUES (3, 'Only', 'Old')");
    expect((await db.query('SELECT id FROM people ORDER BY id')).rows).toEqual([{ id: 3 }]);
    expect((await db.query('SELECT id FROM people_v2 ORDER BY id')).rows).toEqual([{ id: 1 }, { id: 2 }]);
  });

  it('a prepared write on new is re-planned at the flip to both and back', async () => {
    await configure({ dualWrite: true });
    const ins = (id: number) => ({
      name: 'ins_v2',
      text: 'INSERT INTO people_v2 (id, full_name) VALUES ($1, $2)',
      values: [id, `P ${id}`],
    });
    await client.query(ins(1));
    await configure({ dualWrite: 'both' });
    const r = await client.query(ins(2));
    expect(r.command).toBe('INSERT');
    expect(r.rowCount).toBe(1);
    await configure({ dualWrite: true });
    await client.query(ins(3));
    expect((await db.query('SELECT id FROM people ORDER BY id')).rows).toEqual([{ id: 2 }]);
  });

  it('an unmirrorable write on new is counted, and refused under reject', async () => {
    const labels = { mapping: people.name, reason: 'truncate' };
    const before = await metric('switchyard_unmirrored_writes_total', labels);
    await client.query('TRUNCATE people_v2');
    expect(await metric('switchyard_unmirrored_writes_total', labels)).toBe(before + 1);
    await configure({ dualWrite: 'both', onUnmirrorable: 'reject' });
    const e = await client.query('TRUNCATE people_v2').catch((x: unknown) => x as pg.DatabaseError);
    expect((e as pg.DatabaseError).code).toBe('0A000');
    expect((e as pg.DatabaseError).message).toContain(people.name);
  });

  it('old refusing a mirrored row is a mirror failure, not the application’s error', async () => {
    const before = await metric('switchyard_mirror_failures_total', { mapping: people.name });
    const e = await client
      .query("INSERT INTO people_v2 (id, full_name, balance_cents) VALUES (9, 'Deep Debt', -500000)")
      .catch((x: unknown) => x as pg.DatabaseError);
    expect((e as pg.DatabaseError).code).toBe('23514');
    expect(await metric('switchyard_mirror_failures_total', { mapping: people.name })).toBe(before + 1);
    expect((await db.query('SELECT count(*)::int AS n FROM people_v2')).rows[0].n).toBe(0);
  });
});

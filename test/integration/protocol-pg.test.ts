// node-postgres through the real proxy to a real Postgres: simple and extended
// protocol, prepared statements, pipelining, row-limited Execute, LISTEN/NOTIFY,
// notices, ParameterStatus, cancel, multi-statement strings and error recovery.
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freshDatabase, type TestDatabase } from '../support/db.ts';
import { startProxy, type TestProxy } from '../support/proxy.ts';

let db: TestDatabase;
let proxy: TestProxy;
const clients: pg.Client[] = [];

async function connect(opts: Partial<pg.ClientConfig> = {}): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: proxy.url(), ...opts });
  c.on('error', () => {});
  await c.connect();
  clients.push(c);
  return c;
}

/** Runs a pg.Query object (submitted queries are event emitters, not promises). */
function submit(c: pg.Client, q: pg.Query): Promise<pg.QueryResult> {
  return new Promise((resolve, reject) => {
    const rows: unknown[] = [];
    q.on('row', (row: unknown) => rows.push(row));
    q.on('end', (res: pg.QueryResult) =>
      resolve({ ...res, rows: res.rows?.length ? res.rows : (rows as pg.QueryResult['rows']) }),
    );
    q.on('error', reject);
    c.query(q as unknown as pg.QueryConfig);
  });
}

beforeAll(async () => {
  db = await freshDatabase('ppg');
  proxy = await startProxy(db);
  await db.query('CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL)');
  await db.query("INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 100) g");
});

afterAll(async () => {
  await Promise.all(clients.map((c) => c.end().catch(() => {})));
  await proxy?.close();
  await db?.drop();
});

describe('simple and extended protocol', () => {
  it('runs simple queries and parameterised (extended) queries', async () => {
    const c = await connect();
    const simple = await c.query('SELECT 1 AS one, $$x$$::text AS s');
    expect(simple.rows).toEqual([{ one: 1, s: 'x' }]);
    expect(simple.fields.map((f) => f.name)).toEqual(['one', 's']);
    const ext = await c.query('SELECT id, name FROM items WHERE id = ANY($1::int[]) ORDER BY id', [[3, 5]]);
    expect(ext.rows).toEqual([
      { id: 3, name: 'item 3' },
      { id: 5, name: 'item 5' },
    ]);
    const ins = await c.query('INSERT INTO items VALUES ($1, $2), ($3, $4)', [1001, 'a', 1002, 'b']);
    expect(ins.command).toBe('INSERT');
    expect(ins.rowCount).toBe(2);
    const del = await c.query('DELETE FROM items WHERE id > $1', [1000]);
    expect(del.rowCount).toBe(2);
  });

  it('binary results come through intact', async () => {
    const c = await connect();
    const r = await c.query({
      text: 'SELECT $1::int8 AS n, $2::text AS t',
      values: [42, 'café ✓'],
      binary: true,
    } as pg.QueryConfig);
    expect(String(r.rows[0].n)).toBe('42');
    expect(r.rows[0].t).toBe('café ✓');
  });

  it('executes one named prepared statement 1,000 times', async () => {
    const c = await connect();
    const results = [];
    for (let i = 1; i <= 1000; i++) {
      results.push(
        c.query({
          name: 'by_id',
          text: 'SELECT id, name, $2::int * 2 AS twice FROM items WHERE id = $1',
          values: [(i % 100) + 1, i],
        }),
      );
    }
    const done = await Promise.all(results);
    done.forEach((r, idx) => {
      const i = idx + 1;
      expect(r.rows).toEqual([{ id: (i % 100) + 1, name: `item ${(i % 100) + 1}`, twice: i * 2 }]);
    });
    // Parsed once by the server: the statement exists under the client's own name.
    const prepared = await c.query("SELECT name, statement FROM pg_prepared_statements WHERE name = 'by_id'");
    expect(prepared.rows).toHaveLength(1);
  });

  it('pipelines hundreds of queries issued without waiting, answers in order', async () => {
    const c = await connect();
    const pending = [];
    for (let i = 0; i < 300; i++) {
      pending.push(i % 2 ? c.query('SELECT $1::int AS v', [i]) : c.query(`SELECT ${i} AS v`));
    }
    const rows = (await Promise.all(pending)).map((r) => r.rows[0].v);
    expect(rows).toEqual([...Array(300).keys()]);
  });

  it('Execute with a row limit: PortalSuspended and more Executes fetch every row', async () => {
    const c = await connect();
    await c.query('BEGIN');
    // pg sends Execute with `rows` as the limit and keeps executing on PortalSuspended.
    const q = new pg.Query({
      text: 'SELECT g FROM generate_series(1, 95) g WHERE g > $1',
      values: [0],
      rows: 10,
    } as pg.QueryConfig);
    const suspended: number[] = [];
    const origin = (q as unknown as { handlePortalSuspended: (c: unknown) => void }).handlePortalSuspended;
    (q as unknown as { handlePortalSuspended: (c: unknown) => void }).handlePortalSuspended = function (con) {
      suspended.push(1);
      origin.call(this, con);
    };
    const r = await submit(c, q);
    await c.query('COMMIT');
    expect(r.rows.map((x) => x.g)).toEqual([...Array(95).keys()].map((i) => i + 1));
    expect(suspended.length).toBe(9);
  });
});

describe('large messages', () => {
  it('a 20 MB parameter and a 20 MB result value cross the proxy intact', async () => {
    const c = await connect();
    const big = 'abcdefghij'.repeat(2_000_000);
    const r = await c.query('SELECT md5($1::text) AS h, length($1::text) AS n, $1::text AS v', [big]);
    expect(r.rows[0].n).toBe(big.length);
    expect(r.rows[0].v === big).toBe(true);
    const direct = await db.query('SELECT md5($1::text) AS h', [big]);
    expect(r.rows[0].h).toBe(direct.rows[0].h);
  });
});

describe('multi-statement strings and errors', () => {
  it('runs a multi-statement string and returns every result', async () => {
    const c = await connect();
    const r = (await c.query(
      'CREATE TEMP TABLE m (x int); INSERT INTO m VALUES (1), (2); SELECT sum(x) AS s FROM m; DROP TABLE m',
    )) as unknown as pg.QueryResult[];
    expect(r.map((x) => x.command)).toEqual(['CREATE', 'INSERT', 'SELECT', 'DROP']);
    expect(r[1].rowCount).toBe(2);
    expect(r[2].rows).toEqual([{ s: '3' }]);
  });

  it('answers empty queries', async () => {
    const c = await connect();
    const r = await c.query('');
    expect(r.rows).toEqual([]);
    expect(r.command).toBeNull();
    const r2 = await c.query(';;');
    expect(r2.rows).toEqual([]);
    expect((await c.query('SELECT 7 AS v')).rows).toEqual([{ v: 7 }]);
  });

  it('an error in the middle of a string stops it; the connection stays usable', async () => {
    const c = await connect();
    await c.query('CREATE TABLE mid (x int)');
    const err = await c
      .query('INSERT INTO mid VALUES (1); SELECT 1/0; INSERT INTO mid VALUES (2)')
      .catch((e) => e);
    expect(err).toBeInstanceOf(Error);
    expect(err.code).toBe('22012');
    // One implicit transaction: the first insert is rolled back, the last never ran.
    expect((await c.query('SELECT count(*)::int AS n FROM mid')).rows).toEqual([{ n: 0 }]);
    expect((await c.query('SELECT 2 AS v')).rows).toEqual([{ v: 2 }]);
  });

  it('an error in the extended protocol skips to Sync, and the next statements work', async () => {
    const c = await connect();
    const pending = [
      c.query('SELECT $1::int AS v', [1]),
      c.query('SELECT $1::int / 0 AS v', [1]),
      c.query('SELECT $1::int AS v', ['not a number']),
      c.query({ name: 'broken', text: 'SELEC oops' }),
      c.query('SELECT $1::int AS v', [4]),
    ];
    const settled = await Promise.allSettled(pending);
    expect(settled.map((s) => s.status)).toEqual([
      'fulfilled',
      'rejected',
      'rejected',
      'rejected',
      'fulfilled',
    ]);
    expect((settled[1] as PromiseRejectedResult).reason.code).toBe('22012');
    expect((settled[2] as PromiseRejectedResult).reason.code).toBe('22P02');
    expect((settled[3] as PromiseRejectedResult).reason.code).toBe('42601');
    expect((settled[4] as PromiseFulfilledResult<pg.QueryResult>).value.rows).toEqual([{ v: 4 }]);
  });

  it('an error after some rows were sent: rows, then the error, then the next query works', async () => {
    const c = await connect();
    const rows: number[] = [];
    const q = new pg.Query({
      text: 'SELECT 100 / (50 - g) AS v FROM generate_series(1, 100) g WHERE g > $1',
      values: [0],
    });
    q.on('row', (row: { v: number }) => rows.push(row.v));
    const err = await submit(c, q).catch((e) => e);
    expect(err.code).toBe('22012');
    expect(rows).toHaveLength(49);
    expect((await c.query('SELECT $1::int AS v', [9])).rows).toEqual([{ v: 9 }]);
  });

  it('an error inside a transaction aborts it until ROLLBACK, like Postgres', async () => {
    const c = await connect();
    await c.query('BEGIN');
    await expect(c.query('SELECT $1::int / 0', [1])).rejects.toMatchObject({ code: '22012' });
    await expect(c.query('SELECT 1')).rejects.toMatchObject({ code: '25P02' });
    await c.query('ROLLBACK');
    expect((await c.query('SELECT $1::text AS v', ['ok'])).rows).toEqual([{ v: 'ok' }]);
  });
});

describe('asynchronous messages', () => {
  it('delivers LISTEN/NOTIFY notifications, also between statements', async () => {
    const listener = await connect();
    const notifier = await connect();
    await listener.query('LISTEN sy_events');
    const got: { channel: string; payload?: string }[] = [];
    const three = new Promise<void>((resolve) =>
      listener.on('notification', (n) => {
        got.push({ channel: n.channel, payload: n.payload });
        if (got.length === 3) resolve();
      }),
    );
    await notifier.query("NOTIFY sy_events, 'one'");
    await notifier.query("SELECT pg_notify('sy_events', 'two')");
    await notifier.query('BEGIN');
    await notifier.query("NOTIFY sy_events, 'three'");
    await notifier.query('COMMIT');
    // The listener is idle: the notifications arrive on their own, not as query replies.
    await three;
    expect(got).toEqual([
      { channel: 'sy_events', payload: 'one' },
      { channel: 'sy_events', payload: 'two' },
      { channel: 'sy_events', payload: 'three' },
    ]);
  });

  it('relays NoticeResponse (RAISE NOTICE) and the statement still completes', async () => {
    const c = await connect();
    const notices: { message: string; severity?: string }[] = [];
    c.on('notice', (n) =>
      notices.push({ message: n.message ?? '', severity: (n as { severity?: string }).severity }),
    );
    const r = await c.query("DO $$BEGIN RAISE NOTICE 'hello %', 42; RAISE WARNING 'careful'; END$$");
    expect(r.command).toBe('DO');
    expect(notices).toEqual([
      { message: 'hello 42', severity: 'NOTICE' },
      { message: 'careful', severity: 'WARNING' },
    ]);
  });

  it('relays ParameterStatus on SET application_name and TimeZone', async () => {
    const c = await connect();
    const params = new Map<string, string>();
    (c as unknown as { connection: NodeJS.EventEmitter }).connection.on(
      'parameterStatus',
      (m: { parameterName: string; parameterValue: string }) => params.set(m.parameterName, m.parameterValue),
    );
    await c.query("SET application_name = 'sy-param-test'");
    await c.query("SET TimeZone = 'Asia/Tokyo'");
    expect(params.get('application_name')).toBe('sy-param-test');
    expect(params.get('TimeZone')).toBe('Asia/Tokyo');
    const r = await c.query("SELECT current_setting('TimeZone') AS tz");
    expect(r.rows[0].tz).toBe('Asia/Tokyo');
  });
});

describe('cancel', () => {
  it('a CancelRequest sent to the proxy cancels pg_sleep(30) with 57014, quickly', async () => {
    const c = await connect();
    const other = await connect();
    const q = new pg.Query('SELECT pg_sleep(30)');
    const running = submit(c, q).then(
      () => undefined,
      (e) => e,
    );
    // Wait until the backend is really sleeping, then cancel through a second connection to the proxy.
    const pid = (c as unknown as { processID: number }).processID;
    const deadline = Date.now() + 30_000;
    for (;;) {
      const r = await db.query("SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND wait_event = 'PgSleep'", [
        pid,
      ]);
      if (r.rowCount) break;
      if (Date.now() > deadline) throw new Error('the query never started sleeping');
      await new Promise((r) => setTimeout(r, 20));
    }
    const canceller = new pg.Client({ connectionString: proxy.url() });
    canceller.on('error', () => {});
    (canceller as unknown as { cancel(target: pg.Client, query: pg.Query): void }).cancel(c, q);
    const err = await running;
    expect(err?.code).toBe('57014');
    expect(err.message).toMatch(/canceling statement due to user request/);
    // The cancel hit that backend only: the session and its neighbour go on.
    expect((await c.query('SELECT 1 AS v')).rows).toEqual([{ v: 1 }]);
    expect((await other.query('SELECT 2 AS v')).rows).toEqual([{ v: 2 }]);
  });
});

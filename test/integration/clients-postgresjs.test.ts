// postgres.js through the proxy: it prepares every statement by default and
// pipelines everything it is given on one connection.
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freshDatabase, type TestDatabase } from '../support/db.ts';
import { startProxy, type TestProxy } from '../support/proxy.ts';

let db: TestDatabase;
let proxy: TestProxy;
let sql: postgres.Sql;

beforeAll(async () => {
  db = await freshDatabase('cpjs');
  proxy = await startProxy(db);
  await db.query('CREATE TABLE accounts (id int PRIMARY KEY, balance int NOT NULL)');
  await db.query('INSERT INTO accounts SELECT g, 100 FROM generate_series(1, 50) g');
  // One connection: every concurrent query below is pipelined on it.
  sql = postgres(proxy.url(), { max: 1, onnotice: () => {} });
});

afterAll(async () => {
  await sql?.end({ timeout: 5 });
  await proxy?.close();
  await db?.drop();
});

describe('postgres.js', () => {
  it('uses named prepared statements by default, reused across executions', async () => {
    for (let i = 1; i <= 20; i++) {
      const [row] = await sql`SELECT id, balance, ${i}::int AS i FROM accounts WHERE id = ${i}`;
      expect(row).toEqual({ id: i, balance: 100, i });
    }
    const prepared = await sql`
      SELECT count(*)::int AS n FROM pg_prepared_statements
      WHERE statement LIKE 'SELECT id, balance, $1::int AS i FROM accounts%'`;
    expect(prepared[0].n).toBe(1);
  });

  it('pipelines hundreds of queries at once and answers each one correctly', async () => {
    const results = await Promise.all(
      Array.from({ length: 500 }, (_, i) =>
        i % 3 === 0
          ? sql`SELECT ${i}::int AS v, 'a' AS kind`
          : i % 3 === 1
            ? sql`SELECT ${i}::int + 0 AS v, 'b' AS kind`
            : sql.unsafe(`SELECT ${i} AS v, 'c' AS kind`),
      ),
    );
    expect(results.map((r) => r[0].v)).toEqual([...Array(500).keys()]);
    expect(results.map((r) => r[0].kind).slice(0, 3)).toEqual(['a', 'b', 'c']);
  });

  it('pipelined queries with failures in between: each failure is its own, the rest succeed', async () => {
    const settled = await Promise.allSettled(
      Array.from({ length: 60 }, (_, i) =>
        i % 10 === 5 ? sql`SELECT 1 / ${i - i}::int AS v` : sql`SELECT ${i}::int AS v`,
      ),
    );
    settled.forEach((s, i) => {
      if (i % 10 === 5) {
        expect(s.status).toBe('rejected');
        expect((s as PromiseRejectedResult).reason.code).toBe('22012');
      } else {
        expect((s as PromiseFulfilledResult<postgres.RowList<postgres.Row[]>>).value[0].v).toBe(i);
      }
    });
  });

  it('transactions commit, roll back on error, and keep their own snapshot', async () => {
    await sql.begin(async (tx) => {
      await tx`UPDATE accounts SET balance = balance - 30 WHERE id = 1`;
      await tx`UPDATE accounts SET balance = balance + 30 WHERE id = 2`;
    });
    const err = await sql
      .begin(async (tx) => {
        await tx`UPDATE accounts SET balance = balance - 1000 WHERE id = 3`;
        await tx`SELECT 1 / 0`;
      })
      .catch((e) => e);
    expect(err.code).toBe('22012');
    const rows = await sql`SELECT id, balance FROM accounts WHERE id <= 3 ORDER BY id`;
    expect(rows.map((r) => [r.id, r.balance])).toEqual([
      [1, 70],
      [2, 130],
      [3, 100],
    ]);
    // Savepoints inside a transaction.
    await sql.begin(async (tx) => {
      await tx`UPDATE accounts SET balance = 0 WHERE id = 4`;
      await tx
        .savepoint(async (sp) => {
          await sp`UPDATE accounts SET balance = -1 WHERE id = 4`;
          throw new Error('undo');
        })
        .catch(() => {});
    });
    expect((await sql`SELECT balance FROM accounts WHERE id = 4`)[0].balance).toBe(0);
  });

  it('cursor(): rows in batches through Execute with a row limit', async () => {
    const batches: number[][] = [];
    await sql`SELECT g FROM generate_series(1, 95) g WHERE g > ${0}`.cursor(10, (rows) => {
      batches.push(rows.map((r) => r.g));
    });
    expect(batches).toHaveLength(10);
    expect(batches[0]).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    expect(batches.flat()).toEqual([...Array(95).keys()].map((i) => i + 1));
    // An early break closes the portal; the connection goes on.
    let seen = 0;
    for await (const rows of sql`SELECT g FROM generate_series(1, 1000) g`.cursor(7)) {
      seen += rows.length;
      if (seen >= 21) break;
    }
    expect(seen).toBe(21);
    expect((await sql`SELECT 1 AS one`)[0].one).toBe(1);
  });

  it('forEach() streams every row', async () => {
    let sum = 0;
    let count = 0;
    const res = await sql`SELECT id, balance FROM accounts ORDER BY id`.forEach((row) => {
      sum += row.balance;
      count++;
    });
    expect(count).toBe(50);
    expect(sum).toBe(5000 - 1000 + 1000 - 100);
    expect(res.count).toBe(50);
  });

  it('LISTEN/NOTIFY', async () => {
    const got: string[] = [];
    let arrived!: () => void;
    const both = new Promise<void>((resolve) => {
      arrived = resolve;
    });
    // Resolves once the LISTEN has been executed on its own connection.
    const listening = await sql.listen('sy_pjs', (payload) => {
      got.push(payload);
      if (got.length === 2) arrived();
    });
    await sql`SELECT pg_notify('sy_pjs', 'a')`;
    await sql.notify('sy_pjs', 'b');
    await both;
    expect(got).toEqual(['a', 'b']);
    await listening.unlisten();
  });

  it('cancel() of a running pg_sleep(30) through the proxy gives 57014', async () => {
    const q = sql`SELECT pg_sleep(30)`;
    const running = q.then(
      () => undefined,
      (e) => e,
    );
    const deadline = Date.now() + 20_000;
    for (;;) {
      const r = await db.query(
        "SELECT 1 FROM pg_stat_activity WHERE datname = $1 AND wait_event = 'PgSleep'",
        [db.name],
      );
      if (r.rowCount) break;
      if (Date.now() > deadline) throw new Error('pg_sleep never started');
      await new Promise((r) => setTimeout(r, 25));
    }
    await q.cancel();
    const err = await running;
    expect(err?.code).toBe('57014');
    expect((await sql`SELECT 1 AS one`)[0].one).toBe(1);
  });
});

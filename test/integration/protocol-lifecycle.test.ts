// Either side going away closes the other: an unreachable upstream, a client
// that vanishes, a backend terminated by an administrator, a clean Terminate;
// and the connection/statement metrics those sessions leave behind.
import net from 'node:net';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { metrics } from '../../src/metrics.ts';
import { freshDatabase, type TestDatabase } from '../support/db.ts';
import { startProxy, type TestProxy } from '../support/proxy.ts';

let db: TestDatabase;
let proxy: TestProxy;

beforeAll(async () => {
  db = await freshDatabase('plife');
  proxy = await startProxy(db);
});

afterAll(async () => {
  await proxy?.close();
  await db?.drop();
});

async function until(check: () => Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not reached in time');
    await new Promise((r) => setTimeout(r, 25));
  }
}

async function backendAlive(pid: number): Promise<boolean> {
  const r = await db.query('SELECT 1 FROM pg_stat_activity WHERE pid = $1', [pid]);
  return (r.rowCount ?? 0) > 0;
}

async function closedPort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const { port } = srv.address() as net.AddressInfo;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

async function gauge(): Promise<number> {
  return (await metrics.clientConnections.get()).values[0]?.value ?? 0;
}

async function connect(): Promise<{ c: pg.Client; pid: number; errors: Error[] }> {
  const c = new pg.Client({ connectionString: proxy.url() });
  const errors: Error[] = [];
  c.on('error', (e) => errors.push(e));
  await c.connect();
  const pid = (await c.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0].pid;
  return { c, pid, errors };
}

describe('disconnects', () => {
  it('an unreachable upstream gives the client a FATAL ErrorResponse of class 08', async () => {
    const port = await closedPort();
    const nowhere = await startProxy({
      host: '127.0.0.1',
      port,
      url: `postgres://postgres@127.0.0.1:${port}/postgres`,
      name: 'postgres',
    });
    try {
      const c = new pg.Client({ connectionString: nowhere.url() });
      c.on('error', () => {});
      const err = (await c.connect().then(
        () => undefined,
        (e) => e,
      )) as pg.DatabaseError;
      expect(err).toBeInstanceOf(Error);
      expect(err.code).toMatch(/^08/);
      expect(err.severity).toBe('FATAL');
      expect(err.message).toMatch(/could not connect to upstream 127\.0\.0\.1:\d+: ECONNREFUSED/);
    } finally {
      await nowhere.close();
    }
  });

  it('a client that disconnects abruptly takes its backend with it', async () => {
    const { c, pid } = await connect();
    expect(await backendAlive(pid)).toBe(true);
    // No Terminate: the socket just goes away.
    (c as unknown as { connection: { stream: net.Socket } }).connection.stream.destroy();
    await until(async () => !(await backendAlive(pid)));
  });

  it('a client that disconnects in the middle of a transaction: the backend goes and the transaction rolls back', async () => {
    await db.query('CREATE TABLE IF NOT EXISTS half (x int)');
    const { c, pid } = await connect();
    await c.query('BEGIN');
    await c.query('INSERT INTO half VALUES (1)');
    (c as unknown as { connection: { stream: net.Socket } }).connection.stream.destroy();
    await until(async () => !(await backendAlive(pid)));
    expect((await db.query('SELECT count(*)::int AS n FROM half')).rows).toEqual([{ n: 0 }]);
  });

  it('a backend terminated by an administrator closes the client with the server’s 57P01', async () => {
    /** Terminates the backend of an idle client and returns what the client saw. */
    const terminateIdle = async (url: string) => {
      const c = new pg.Client({ connectionString: url });
      const errors: { code?: string; severity?: string; message: string }[] = [];
      c.on('error', (err) => {
        const e = err as pg.DatabaseError;
        errors.push({ code: e.code, severity: e.severity, message: e.message });
      });
      await c.connect();
      const pid = (await c.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0].pid;
      const ended = new Promise<void>((resolve) => c.on('end', () => resolve()));
      await db.query('SELECT pg_terminate_backend($1)', [pid]);
      await ended;
      return errors;
    };
    const through = await terminateIdle(proxy.url());
    expect(through[0]).toEqual({
      code: '57P01',
      severity: 'FATAL',
      // The server's own words, not the proxy's.
      message: 'terminating connection due to administrator command',
    });
    // Exactly what the same client sees without the proxy.
    expect(through).toEqual(await terminateIdle(db.url));
    await until(async () => (await gauge()) === 0);
  });

  it('a backend terminated during a query fails that query with 57P01', async () => {
    const { c, pid } = await connect();
    const running = c.query('SELECT pg_sleep(30)').then(
      () => undefined,
      (e) => e,
    );
    await until(async () => {
      const r = await db.query("SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND wait_event = 'PgSleep'", [
        pid,
      ]);
      return (r.rowCount ?? 0) > 0;
    });
    await db.query('SELECT pg_terminate_backend($1)', [pid]);
    const err = await running;
    expect(err?.code).toBe('57P01');
  });

  it('Terminate (client.end) closes both sides cleanly', async () => {
    const { c, pid, errors } = await connect();
    await c.end();
    await until(async () => !(await backendAlive(pid)));
    expect(errors).toEqual([]);
    await until(async () => (await gauge()) === 0);
  });
});

describe('metrics after traffic', () => {
  it('connection gauge back to 0; passthrough statements counted and timed', async () => {
    // get() hands out the live values: read the numbers at once.
    const count = async () =>
      (await metrics.statements.get()).values.find((x) => x.labels.route === 'passthrough')?.value ?? 0;
    const before = await count();
    const c = new pg.Client({ connectionString: proxy.url() });
    await c.connect();
    expect(await gauge()).toBe(1);
    await c.query('SELECT 1');
    await c.query('SELECT $1::int', [2]);
    await c.query('SELECT 1; SELECT 2');
    await c.end();
    await until(async () => (await gauge()) === 0);
    expect((await count()) - before).toBeGreaterThanOrEqual(3);
    const hist = await metrics.statementLatency.get();
    const n = hist.values.find(
      (x) =>
        x.labels.route === 'passthrough' && x.metricName === 'switchyard_statement_duration_seconds_count',
    );
    expect(n?.value).toBeGreaterThan(0);
    const total = (await metrics.clientConnectionsTotal.get()).values[0].value;
    expect(total).toBeGreaterThanOrEqual(7);
  });
});

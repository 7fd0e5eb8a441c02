// Limits (connections, startup timeout, message size, upstream connect timeout)
// and graceful shutdown (drain, 57P01), through the real proxy.
import net from 'node:net';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { metrics } from '../../src/metrics.ts';
import { freshDatabase, type TestDatabase } from '../support/db.ts';
import { startProxy, startProxyProcess } from '../support/proxy.ts';

let db: TestDatabase;

beforeAll(async () => {
  db = await freshDatabase('limits');
});
afterAll(async () => {
  await db?.drop();
});

async function counter(name: string, labels: Record<string, string>): Promise<number> {
  const m = (await metrics[name as keyof typeof metrics].get()) as {
    values: { labels: Record<string, string>; value: number }[];
  };
  return m.values
    .filter((v) => Object.entries(labels).every(([k, x]) => v.labels[k] === x))
    .reduce((a, v) => a + v.value, 0);
}

function connect(url: string) {
  const c = new pg.Client({ connectionString: url });
  return c.connect().then(() => c);
}

describe('limits', () => {
  it('refuses clients beyond maxClientConnections with 53300 and a metric', async () => {
    const p = await startProxy(db, { limits: { maxClientConnections: 2 } });
    const before = await counter('connectionsRejected', { reason: 'max_connections' });
    const a = await connect(p.url());
    const b = await connect(p.url());
    const err = await connect(p.url()).catch((e) => e);
    expect(err.code).toBe('53300');
    expect(err.message).toMatch(/too many client connections \(limit 2\)/);
    expect(await counter('connectionsRejected', { reason: 'max_connections' })).toBe(before + 1);
    await a.end();
    // A slot frees up once the proxy has seen the client leave (on its own time: retry until then).
    const deadline = Date.now() + 30_000;
    let c: pg.Client | undefined;
    while (!c) {
      c = await connect(p.url()).catch((e) => {
        if (e.code !== '53300' || Date.now() > deadline) throw e;
        return new Promise<undefined>((r) => setTimeout(() => r(undefined), 20));
      });
    }
    expect((await c.query('SELECT 1 AS x')).rows[0].x).toBe(1);
    await Promise.all([b.end(), c.end()]);
    await p.close();
  });

  it('closes a client that connects and sends nothing after startupTimeoutMs, without a reply (as Postgres)', async () => {
    const p = await startProxy(db, { limits: { startupTimeoutMs: 300 } });
    const before = await counter('connectionsRejected', { reason: 'startup_timeout' });
    const got = await new Promise<Buffer>((resolve) => {
      const s = net.connect({ host: '127.0.0.1', port: p.port });
      let buf = Buffer.alloc(0);
      s.on('data', (d) => {
        buf = Buffer.concat([buf, d]);
      });
      s.on('close', () => resolve(buf));
    });
    // Postgres's startup-packet timeout exits without a word; the metric still counts it.
    expect(got.length).toBe(0);
    expect(await counter('connectionsRejected', { reason: 'startup_timeout' })).toBe(before + 1);
    expect(p.runtime.proxy.connections).toBe(0);
    await p.close();
  });

  it('closes only the offending connection when a message exceeds maxMessageBytes', async () => {
    const p = await startProxy(db, { limits: { maxMessageBytes: 4096 } });
    const good = await connect(p.url());
    const bad = await connect(p.url());
    bad.on('error', () => {});
    const err = await bad.query(`SELECT '${'x'.repeat(10_000)}'`).catch((e) => e);
    expect(err.message).toMatch(/exceeds the limit of 4096/);
    expect(err.code).toBe('08P01');
    expect((await good.query('SELECT 2 AS x')).rows[0].x).toBe(2);
    expect(await counter('protocolErrors', { reason: 'message_too_large' })).toBeGreaterThan(0);
    await good.end();
    await bad.end().catch(() => {});
    await p.close();
  });

  it('gives up on an upstream that does not complete its connection within connectTimeoutMs, with 08001', async () => {
    // Accepts TCP and then says nothing: the TLS answer never comes.
    const silent = net.createServer(() => {});
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', () => r()));
    const port = (silent.address() as net.AddressInfo).port;
    const p = await startProxy(db, {
      upstream: { url: `postgres://postgres@127.0.0.1:${port}/x`, sslmode: 'require', connectTimeoutMs: 300 },
    });
    const before = await counter('upstreamConnectErrors', { reason: 'timeout' });
    const t0 = Date.now();
    const err = await connect(p.url()).catch((e) => e);
    expect(err.code).toBe('08001');
    expect(err.message).toMatch(/timeout after 300 ms/);
    expect(Date.now() - t0).toBeLessThan(5000);
    expect(await counter('upstreamConnectErrors', { reason: 'timeout' })).toBe(before + 1);
    await p.close();
    silent.close();
  });

  it('answers a refused upstream connection with 08001 naming the address', async () => {
    const closed = net.createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', () => r()));
    const port = (closed.address() as net.AddressInfo).port;
    await new Promise<void>((r) => closed.close(() => r()));
    const p = await startProxy(db, { upstream: { url: `postgres://postgres@127.0.0.1:${port}/x` } });
    const err = await connect(p.url()).catch((e) => e);
    expect(err.code).toBe('08001');
    expect(err.message).toContain(`127.0.0.1:${port}`);
    expect(err.message).toMatch(/ECONNREFUSED/);
    await p.close();
  });
});

describe('graceful shutdown', () => {
  it('on SIGTERM: readiness goes false, open transactions finish, idle sessions end with 57P01, new clients are refused', async () => {
    const proc = await startProxyProcess(db, { shutdown: { drainTimeoutMs: 10_000 } });
    const idle = await connect(proc.url());
    const idleErr = new Promise<Error>((resolve) => idle.on('error', resolve));
    const busy = await connect(proc.url());
    busy.on('error', () => {});
    await busy.query('CREATE TABLE IF NOT EXISTS drained (n int)');
    await busy.query('BEGIN');
    await busy.query('INSERT INTO drained VALUES (1)');
    expect((await fetch(`http://127.0.0.1:${proc.adminPort}/readyz`)).status).toBe(200);
    proc.child.kill('SIGTERM');
    // Readiness turns false at once; new clients are refused.
    await expect
      .poll(
        async () =>
          (await fetch(`http://127.0.0.1:${proc.adminPort}/readyz`).catch(() => ({ status: 0 }))).status,
      )
      .toBe(503);
    const late = await connect(proc.url()).catch((e) => e);
    expect(late).toBeInstanceOf(Error);
    // The idle session is ended with the administrator-command error.
    const e = (await idleErr) as Error & { code?: string };
    expect(e.message).toMatch(/terminating connection due to administrator command/);
    expect(e.code).toBe('57P01');
    // The open transaction can still finish and commit.
    await busy.query('INSERT INTO drained VALUES (2)');
    await busy.query('COMMIT');
    const code = await proc.stop('SIGTERM');
    expect(code).toBe(0);
    const rows = await db.query('SELECT count(*)::int AS n FROM drained');
    expect(rows.rows[0].n).toBe(2);
  });

  it('ends sessions still in a transaction when the drain timeout passes', async () => {
    const proc = await startProxyProcess(db, { shutdown: { drainTimeoutMs: 500 } });
    const c = await connect(proc.url());
    const gotErr = new Promise<Error>((resolve) => c.on('error', resolve));
    await c.query('BEGIN');
    proc.child.kill('SIGTERM');
    const err = await gotErr;
    expect(err.message).toMatch(/administrator command/);
    expect(await proc.stop()).toBe(0);
  });

  it('a second SIGTERM ends the drain at once', async () => {
    const proc = await startProxyProcess(db, { shutdown: { drainTimeoutMs: 60_000 } });
    const c = await connect(proc.url());
    c.on('error', () => {});
    await c.query('BEGIN');
    proc.child.kill('SIGTERM');
    // The second signal must find the drain under way, not coalesce with the first.
    const deadline = Date.now() + 30_000;
    while (!/shutting down: draining sessions/.test(proc.output())) {
      if (Date.now() > deadline) throw new Error('the proxy never started draining');
      await new Promise((r) => setTimeout(r, 20));
    }
    const t0 = Date.now();
    expect(await proc.stop('SIGTERM')).toBe(0);
    expect(Date.now() - t0).toBeLessThan(10_000);
  });
});

// TLS on both sides: clients to the proxy (listen.tls) and the proxy to
// Postgres (upstream.sslmode), with SCRAM still working when TLS ends at the proxy.
import { execFile, execFileSync } from 'node:child_process';
import { chmodSync, copyFileSync, mkdtempSync, readFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalCluster } from '../../src/demo/cluster.ts';
import { makeCerts, type TestCerts } from '../support/certs.ts';
import { serverInfo } from '../support/db.ts';
import { startProxy, type TestProxy } from '../support/proxy.ts';

let certs: TestCerts;

/** psql run asynchronously: the proxy under test lives in this process's event loop. */
function psql(
  args: string[],
  env: NodeJS.ProcessEnv,
): Promise<{ status: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile('psql', args, { env, encoding: 'utf8', timeout: 20_000 }, (err, stdout, stderr) => {
      resolve({ status: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}
let cluster: LocalCluster;
const proxies: TestProxy[] = [];

/** The cluster's own copy of the server key: Postgres insists on owning it with mode 0600. */
function serverKeyFiles(c: TestCerts): { cert: string; key: string } {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'sy-pgtls-'));
  const cert = path.join(dir, 'server.crt');
  const key = path.join(dir, 'server.key');
  copyFileSync(c.cert, cert);
  copyFileSync(c.key, key);
  chmodSync(key, 0o600);
  chmodSync(dir, 0o755);
  if (process.getuid?.() === 0) execFileSync('chown', ['-R', 'postgres', dir]);
  return { cert, key };
}

beforeAll(async () => {
  certs = makeCerts();
  const files = serverKeyFiles(certs);
  cluster = await LocalCluster.start({
    binDir: serverInfo().binDir || undefined,
    settings: { ssl: 'on', ssl_cert_file: `'${files.cert}'`, ssl_key_file: `'${files.key}'` },
  });
  await cluster.psqlSuper(
    "CREATE ROLE tls_scram LOGIN PASSWORD 'secret-scram'; GRANT sy_auth_scram TO tls_scram",
  );
  await cluster.createDatabase('tlsdb');
});

afterAll(async () => {
  for (const p of proxies) await p.close();
  await cluster?.stop();
});

async function proxyWith(upstream: Record<string, unknown>, listenTls = true): Promise<TestProxy> {
  const db = { host: cluster.host, port: cluster.port, url: cluster.url('tlsdb'), name: 'tlsdb' };
  const p = await startProxy(db, {
    upstream: { url: cluster.url('tlsdb'), ...upstream },
    listen: {
      host: '127.0.0.1',
      port: 0,
      ...(listenTls ? { tls: { cert: certs.cert, key: certs.key } } : {}),
    },
  });
  proxies.push(p);
  return p;
}

async function queryOne(config: pg.ClientConfig, sql: string) {
  const c = new pg.Client(config);
  await c.connect();
  try {
    return (await c.query(sql)).rows[0];
  } finally {
    await c.end();
  }
}

describe('client TLS terminated at the proxy', () => {
  it('answers SSLRequest with S and serves queries over a verified TLS connection', async () => {
    const p = await proxyWith({});
    const c = new pg.Client({
      connectionString: p.url({ database: 'tlsdb' }),
      ssl: { ca: readFileSync(certs.ca), servername: 'localhost' },
    });
    await c.connect();
    const stream = (
      c as unknown as {
        connection: { stream: { encrypted?: boolean; getPeerCertificate(): { subject: { CN: string } } } };
      }
    ).connection.stream;
    expect(stream.encrypted).toBe(true);
    expect(stream.getPeerCertificate().subject.CN).toBe('localhost');
    expect((await c.query('SELECT 41 + 1 AS n')).rows[0].n).toBe(42);
    await c.end();
  });

  it('refuses a client that trusts another CA', async () => {
    const p = await proxyWith({});
    const c = new pg.Client({
      connectionString: p.url({ database: 'tlsdb' }),
      ssl: { ca: readFileSync(certs.otherCa), servername: 'localhost' },
    });
    await expect(c.connect()).rejects.toThrow(/certificate/i);
  });

  it('still accepts plain clients (sslmode=disable) when TLS is offered', async () => {
    const p = await proxyWith({});
    const row = await queryOne({ connectionString: p.url({ database: 'tlsdb' }) }, 'SELECT 1 AS one');
    expect(row.one).toBe(1);
  });

  it('answers N to SSLRequest when listen.tls is not configured', async () => {
    const p = await proxyWith({}, false);
    const c = new pg.Client({
      connectionString: p.url({ database: 'tlsdb' }),
      ssl: { rejectUnauthorized: false },
    });
    await expect(c.connect()).rejects.toThrow(/does not support SSL/i);
  });
});

describe('upstream TLS', () => {
  it('sslmode require encrypts the link to Postgres', async () => {
    const p = await proxyWith({ sslmode: 'require' }, false);
    const row = await queryOne(
      { connectionString: p.url({ database: 'tlsdb' }) },
      'SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()',
    );
    expect(row.ssl).toBe(true);
  });

  it('sslmode verify-full checks the server certificate against the CA', async () => {
    const p = await proxyWith({ sslmode: 'verify-full', ca: certs.ca }, false);
    const row = await queryOne(
      { connectionString: p.url({ database: 'tlsdb' }) },
      'SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()',
    );
    expect(row.ssl).toBe(true);
  });

  it('sslmode verify-full with the wrong CA gives the client a class 08 error', async () => {
    // A generous connect timeout: the failure must be the certificate, not a slow handshake on a busy machine.
    const p = await proxyWith({ sslmode: 'verify-full', ca: certs.otherCa, connectTimeoutMs: 60_000 }, false);
    const err = await queryOne({ connectionString: p.url({ database: 'tlsdb' }) }, 'SELECT 1').catch(
      (e) => e,
    );
    expect(err).toBeInstanceOf(Error);
    expect(err.code).toMatch(/^08/);
    expect(err.message).toMatch(/upstream TLS failed/);
  });

  it('plain (disabled) upstream is not encrypted', async () => {
    const p = await proxyWith({ sslmode: 'disable' }, false);
    const row = await queryOne(
      { connectionString: p.url({ database: 'tlsdb' }) },
      'SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()',
    );
    expect(row.ssl).toBe(false);
  });
});

describe('SCRAM through a proxy that terminates TLS', () => {
  it('hides SCRAM-SHA-256-PLUS, which the TLS upstream offers, from the client', async () => {
    const p = await proxyWith({ sslmode: 'require' }, false);
    const mechanisms = await saslMechanisms(p.port, 'tls_scram', 'tlsdb');
    expect(mechanisms).toEqual(['SCRAM-SHA-256']);
  });

  it('node-postgres authenticates with SCRAM over TLS on both links', async () => {
    const p = await proxyWith({ sslmode: 'verify-full', ca: certs.ca });
    const row = await queryOne(
      {
        connectionString: p.url({ user: 'tls_scram', password: 'secret-scram', database: 'tlsdb' }),
        ssl: { ca: readFileSync(certs.ca), servername: 'localhost' },
      },
      'SELECT current_user AS u, (SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()) AS upstream_ssl',
    );
    expect(row).toEqual({ u: 'tls_scram', upstream_ssl: true });
    const bad = await queryOne(
      {
        connectionString: p.url({ user: 'tls_scram', password: 'wrong', database: 'tlsdb' }),
        ssl: { ca: readFileSync(certs.ca), servername: 'localhost' },
      },
      'SELECT 1',
    ).catch((e) => e);
    expect(bad.code).toBe('28P01');
  });

  it('psql over TLS with a plain upstream link authenticates with its default channel_binding=prefer', async () => {
    const p = await proxyWith({ sslmode: 'disable' });
    const env = {
      ...process.env,
      PGPASSWORD: 'secret-scram',
      PGSSLMODE: 'verify-full',
      PGSSLROOTCERT: certs.ca,
    };
    const r = await psql(
      [
        '-h',
        'localhost',
        '-p',
        String(p.port),
        '-U',
        'tls_scram',
        '-d',
        'tlsdb',
        '-Atc',
        'SELECT current_user',
      ],
      env,
    );
    expect(r.stderr).toBe('');
    expect(r.stdout.trim()).toBe('tls_scram');
  });

  it('psql over TLS with a TLS upstream authenticates with channel_binding=disable (documented)', async () => {
    const p = await proxyWith({ sslmode: 'require' });
    const env = {
      ...process.env,
      PGPASSWORD: 'secret-scram',
      PGSSLMODE: 'verify-full',
      PGSSLROOTCERT: certs.ca,
      PGCHANNELBINDING: 'disable',
    };
    const r = await psql(
      [
        '-h',
        'localhost',
        '-p',
        String(p.port),
        '-U',
        'tls_scram',
        '-d',
        'tlsdb',
        '-Atc',
        'SELECT current_user',
      ],
      env,
    );
    expect(r.stderr).toBe('');
    expect(r.stdout.trim()).toBe('tls_scram');
    const bad = await psql(
      ['-h', 'localhost', '-p', String(p.port), '-U', 'tls_scram', '-d', 'tlsdb', '-Atc', 'SELECT 1'],
      {
        ...env,
        PGPASSWORD: 'wrong',
      },
    );
    expect(bad.status).not.toBe(0);
    expect(bad.stderr).toMatch(/password authentication failed/);
  });

  it('psql demanding channel_binding=require is refused, since TLS ends at the proxy', async () => {
    const p = await proxyWith({ sslmode: 'require' });
    const env = {
      ...process.env,
      PGPASSWORD: 'secret-scram',
      PGSSLMODE: 'require',
      PGCHANNELBINDING: 'require',
    };
    const r = await psql(
      ['-h', '127.0.0.1', '-p', String(p.port), '-U', 'tls_scram', '-d', 'tlsdb', '-Atc', 'SELECT 1'],
      env,
    );
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/channel binding/i);
  });
});

/** Sends a startup packet on a plain socket and returns the SASL mechanisms the client is offered. */
function saslMechanisms(port: number, user: string, database: string): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: '127.0.0.1', port });
    const body = Buffer.from(`user\0${user}\0database\0${database}\0\0`);
    const head = Buffer.alloc(8);
    head.writeInt32BE(body.length + 8, 0);
    head.writeInt32BE(196608, 4);
    let buf = Buffer.alloc(0);
    sock.on('connect', () => sock.write(Buffer.concat([head, body])));
    sock.on('error', reject);
    sock.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      if (buf.length < 5) return;
      const len = buf.readInt32BE(1);
      if (buf.length < len + 1) return;
      sock.destroy();
      if (buf[0] !== 0x52 || buf.readInt32BE(5) !== 10) {
        reject(new Error(`expected AuthenticationSASL, got ${String.fromCharCode(buf[0])}`));
        return;
      }
      resolve(
        buf
          .toString('utf8', 9, len + 1)
          .split('\0')
          .filter((m) => m.length > 0),
      );
    });
  });
}

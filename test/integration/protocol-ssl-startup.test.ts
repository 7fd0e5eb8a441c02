// Bytes sent in plain text behind an SSLRequest, when the proxy terminates TLS,
// must not be processed as if they had come over TLS (the CVE-2021-23214 class
// of man-in-the-middle injection). Postgres refuses them with 08P01 before
// answering S; the proxy must do the same.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { StartupCode } from '../../src/wire/codes.ts';
import { fields, RawConn, requestPacket, serialize, startupPacket } from '../fixtures/wire/raw-client.ts';
import { makeCerts } from '../support/certs.ts';
import { freshDatabase, type TestDatabase } from '../support/db.ts';
import { startProxy, type TestProxy } from '../support/proxy.ts';

let db: TestDatabase;
let proxy: TestProxy;

beforeAll(async () => {
  db = await freshDatabase('pssl');
  const certs = makeCerts();
  proxy = await startProxy(db, {
    listen: { host: '127.0.0.1', port: 0, tls: { cert: certs.cert, key: certs.key } },
  });
});

afterAll(async () => {
  await proxy?.close();
  await db?.drop();
});

describe('SSLRequest with TLS offered', () => {
  it('refuses plain-text data pipelined behind the SSLRequest, and runs none of it', async () => {
    const c = await RawConn.connect(proxy.port);
    c.send(
      requestPacket(StartupCode.SSLRequest),
      startupPacket({ user: 'postgres', database: db.name, application_name: 'sy_injected' }),
      serialize.query('CREATE TABLE injected (x int)'),
    );
    // An ErrorResponse in place of the S, then the connection closes.
    expect(await c.byte()).toBe('E');
    await c.waitClosed();
    const r = await db.query(
      "SELECT (SELECT count(*) FROM pg_stat_activity WHERE application_name = 'sy_injected')::int AS sessions, to_regclass('injected') IS NOT NULL AS created",
    );
    expect(r.rows).toEqual([{ sessions: 0, created: false }]);
  });

  it('the error is a FATAL 08P01 naming the problem', async () => {
    const c = await RawConn.connect(proxy.port);
    c.send(requestPacket(StartupCode.SSLRequest), startupPacket({ user: 'postgres', database: db.name }));
    // The ErrorResponse goes out in plain text, in place of the S.
    const m = await c.next();
    expect(m.type).toBe('E');
    const f = fields(m.body);
    expect(f.S).toBe('FATAL');
    expect(f.C).toBe('08P01');
    expect(f.M).toMatch(/unencrypted data after SSL request/);
    await c.waitClosed();
  });
});

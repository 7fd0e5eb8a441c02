// Startup-phase protocol violations: the same bytes go to Postgres directly and
// through the proxy, and the client must hear the same thing from both: the
// same bytes (ErrorResponse fields compared without F/L/R, which name the
// server's source lines), or a close without any reply. Postgres closes
// silently on a bad length, an incomplete packet or a bad cancel request
// (ProcessStartupPacket), and answers FATAL for an unsupported protocol
// version, a repeated SSLRequest/GSSENCRequest or clear text behind one.
import net from 'node:net';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { metrics } from '../../src/metrics.ts';
import { StartupCode } from '../../src/wire/codes.ts';
import { fields, requestPacket, serialize, startupPacket } from '../fixtures/wire/raw-client.ts';
import { freshDatabase, type TestDatabase } from '../support/db.ts';
import { startProxy, type TestProxy } from '../support/proxy.ts';

let db: TestDatabase;
let proxy: TestProxy;

beforeAll(async () => {
  db = await freshDatabase('pstv');
  proxy = await startProxy(db);
});

afterAll(async () => {
  await proxy?.close();
  await db?.drop();
});

/** Generous: these bound a hang, they do not measure speed. */
const DEADLINE_MS = 15_000;

interface Step {
  /** Send only once this many bytes have come back (the answer to an earlier request). */
  afterBytes?: number;
  send?: Buffer;
  /** Half-close the socket after sending (EOF for the server). */
  end?: boolean;
}

/**
 * Plays the steps on a fresh socket and returns what came back: single-byte
 * answers (N, S, G), messages (an ErrorResponse as its fields), and how the
 * conversation ended. After a ReadyForQuery the client says Terminate.
 */
async function converse(port: number, steps: Step[]): Promise<string[]> {
  const sock = net.connect({ host: '127.0.0.1', port });
  sock.setNoDelay(true);
  let buf = Buffer.alloc(0);
  let ending: string | undefined;
  let wake: () => void = () => {};
  sock.on('data', (d: Buffer) => {
    buf = Buffer.concat([buf, d]);
    wake();
  });
  sock.on('error', (e: NodeJS.ErrnoException) => {
    ending ??= `error ${e.code}`;
    wake();
  });
  sock.on('close', () => {
    ending ??= 'closed';
    wake();
  });
  await new Promise<void>((resolve, reject) => {
    sock.once('connect', resolve);
    sock.once('error', reject);
  });
  const deadline = Date.now() + DEADLINE_MS;
  const sleep = () =>
    new Promise<void>((resolve) => {
      const t = setTimeout(resolve, Math.max(0, deadline - Date.now()));
      wake = () => {
        clearTimeout(t);
        resolve();
      };
    });
  for (const s of steps) {
    while (s.afterBytes !== undefined && buf.length < s.afterBytes && !ending && Date.now() < deadline) {
      await sleep();
    }
    if (ending) break;
    if (s.send) sock.write(s.send);
    if (s.end) sock.end();
  }
  const heard: string[] = [];
  let pos = 0;
  let saidTerminate = false;
  for (;;) {
    // Decode what is complete so far.
    for (;;) {
      if (pos >= buf.length) break;
      const b = buf[pos];
      // A message length starts with a zero byte; an answer to an encryption request is alone.
      if (pos + 1 === buf.length || buf[pos + 1] !== 0) {
        if (pos + 1 === buf.length && !ending) break;
        heard.push(String.fromCharCode(b));
        pos++;
        continue;
      }
      if (buf.length - pos < 5) break;
      const len = buf.readInt32BE(pos + 1);
      if (buf.length - pos < 1 + len) break;
      heard.push(describe1(String.fromCharCode(b), buf.subarray(pos + 5, pos + 1 + len)));
      pos += 1 + len;
      if (b === 0x5a && !saidTerminate) {
        saidTerminate = true;
        sock.end(serialize.end());
      }
    }
    if (ending) break;
    if (Date.now() >= deadline) {
      ending = 'still open';
      break;
    }
    await sleep();
  }
  if (pos < buf.length) heard.push(`partial ${buf.subarray(pos).toString('hex')}`);
  sock.destroy();
  return [...heard, ending];
}

/** Every byte sent back until the peer closes. */
async function rawReply(port: number, packet: Buffer): Promise<string> {
  const sock = net.connect({ host: '127.0.0.1', port }, () => sock.write(packet));
  const got: Buffer[] = [];
  sock.on('data', (d: Buffer) => got.push(d));
  sock.on('error', () => {});
  const closed = await new Promise<boolean>((resolve) => {
    const t = setTimeout(() => resolve(false), DEADLINE_MS);
    sock.on('close', () => {
      clearTimeout(t);
      resolve(true);
    });
  });
  sock.destroy();
  expect(closed, 'the peer kept the connection open').toBe(true);
  return Buffer.concat(got).toString('latin1');
}

function describe1(type: string, body: Buffer): string {
  switch (type) {
    case 'E': {
      const { F: _f, L: _l, R: _r, ...rest } = fields(body);
      return `E ${JSON.stringify(rest)}`;
    }
    case 'R':
      return `R${body.readInt32BE(0)}`;
    case 'S':
      return `S ${body.toString('utf8', 0, body.indexOf(0))}`;
    case 'K':
      return `K${body.length}`;
    case 'Z':
      return `Z${String.fromCharCode(body[0])}`;
    default:
      return `${type} ${body.toString('hex')}`;
  }
}

/** What the server said and what the client heard through the proxy, for the same bytes. */
async function both(steps: Step[]): Promise<{ direct: string[]; proxied: string[] }> {
  const [direct, proxied] = await Promise.all([converse(db.port, steps), converse(proxy.port, steps)]);
  return { direct, proxied };
}

async function violations(): Promise<number> {
  const v = (await metrics.protocolErrors.get()).values.find((x) => x.labels.reason === 'bad_startup');
  return v?.value ?? 0;
}

const startup = () => startupPacket({ user: 'postgres', database: db.name });
const int32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeInt32BE(n);
  return b;
};
const SILENT = ['closed'];

/** Packets sent one by one, each after the one-byte answer to the one before. */
function inTurn(...packets: Buffer[]): Step[] {
  return packets.map((send, i) => ({ send, afterBytes: i }));
}

describe('violations Postgres answers with a close and no reply', () => {
  const cases: [string, () => Step[]][] = [
    ['Terminate as the first bytes (node-postgres end() before startup)', () => [{ send: serialize.end() }]],
    ['Terminate, then a startup packet', () => [{ send: Buffer.concat([serialize.end(), startup()]) }]],
    ['length 4', () => [{ send: Buffer.concat([int32(4), int32(196608)]) }]],
    ['length 7', () => [{ send: Buffer.concat([int32(7), int32(196608)]) }]],
    ['negative length', () => [{ send: Buffer.concat([int32(-1), int32(196608)]) }]],
    ['length 10005 (one past the limit)', () => [{ send: Buffer.concat([int32(10005), int32(196608)]) }]],
    [
      'a TLS ClientHello without SSLRequest (direct SSL, not offered)',
      () => [{ send: Buffer.from('160301020001000000', 'hex') }],
    ],
    ['nothing, then EOF', () => [{ end: true }]],
    ['two bytes of a length, then EOF', () => [{ send: Buffer.from([0, 0]), end: true }]],
    ['half a startup packet, then EOF', () => [{ send: startup().subarray(0, 12), end: true }]],
    ['a CancelRequest without a key', () => [{ send: requestPacket(StartupCode.CancelRequest, 4242) }]],
    [
      'a CancelRequest with a 300-byte key',
      () => {
        const p = Buffer.alloc(8 + 4 + 300);
        p.writeInt32BE(p.length, 0);
        p.writeInt32BE(StartupCode.CancelRequest, 4);
        return [{ send: p }];
      },
    ],
    [
      'a CancelRequest for no backend, then a startup packet behind it',
      () => [{ send: Buffer.concat([requestPacket(StartupCode.CancelRequest, 1, 2), startup()]) }],
    ],
    ['SSLRequest answered N, then EOF', () => [{ send: requestPacket(StartupCode.SSLRequest), end: true }]],
    [
      'SSLRequest answered N, then Terminate',
      () => inTurn(requestPacket(StartupCode.SSLRequest), serialize.end()),
    ],
  ];

  it.each(cases)('%s', async (_name, steps) => {
    const before = await violations();
    const { direct, proxied } = await both(steps());
    expect(proxied).toEqual(direct);
    if (_name.startsWith('SSLRequest')) expect(direct).toEqual(['N', 'closed']);
    else expect(direct).toEqual(SILENT);
    if (/Terminate|length|ClientHello|bytes|half/.test(_name)) {
      // Operators still see it.
      expect(await violations()).toBeGreaterThan(before);
    }
  });

  it('a startup packet of exactly 10004 bytes (the limit) is accepted', async () => {
    const base = startupPacket({ user: 'postgres', database: db.name, application_name: '' });
    const p = startupPacket(
      { user: 'postgres', database: db.name, application_name: 'a'.repeat(10004 - base.length) },
      196608,
    );
    expect(p.length).toBe(10004);
    const { direct, proxied } = await both([{ send: p }]);
    expect(proxied).toEqual(direct);
    expect(direct.at(-2)).toBe('ZI');
  });
});

describe('violations Postgres answers with a FATAL', () => {
  const cases: [string, () => Step[]][] = [
    ['protocol 4.1', () => [{ send: startupPacket({ user: 'postgres', database: db.name }, (4 << 16) | 1) }]],
    ['protocol 0.0, no parameters', () => [{ send: Buffer.concat([int32(8), int32(0)]) }]],
    [
      'SSLRequest twice',
      () => inTurn(requestPacket(StartupCode.SSLRequest), requestPacket(StartupCode.SSLRequest)),
    ],
    [
      'SSLRequest with a startup packet behind it in the same write',
      () => [{ send: Buffer.concat([requestPacket(StartupCode.SSLRequest), startup()]) }],
    ],
    [
      'a startup packet without its final terminator',
      () => {
        const good = startup();
        const p = Buffer.from(good.subarray(0, good.length - 1));
        p.writeInt32BE(p.length, 0);
        return [{ send: p }];
      },
    ],
    [
      'a startup packet whose last name has no value',
      () => {
        const body = Buffer.from(`user\0postgres\0database\0`);
        return [{ send: Buffer.concat([int32(8 + body.length), int32(196608), body]) }];
      },
    ],
    ['a startup packet without a user', () => [{ send: startupPacket({ database: db.name }) }]],
  ];

  it.each(cases)('%s', async (_name, steps) => {
    const { direct, proxied } = await both(steps());
    expect(proxied).toEqual(direct);
    expect(direct.at(-2)).toMatch(/^E .*"S":"FATAL"/);
    expect(direct.at(-1)).toBe('closed');
  });

  it.each([
    ['1.0', 1 << 16],
    ['2.0', 2 << 16],
    ['2.5', (2 << 16) | 5],
  ])(
    'protocol %s: refused in the old protocol’s framing, the same bytes as from Postgres',
    async (_v, code) => {
      const packet = startupPacket({ user: 'postgres', database: db.name }, code);
      const [direct, proxied] = await Promise.all([rawReply(db.port, packet), rawReply(proxy.port, packet)]);
      expect(direct).toMatch(
        /^EFATAL: {2}unsupported frontend protocol \d\.\d: server supports 3\.0 to 3\.\d+\n\0$/,
      );
      expect(proxied).toBe(direct);
    },
  );

  it('SSLRequest twice: the second is protocol 1234.5679 in the server’s own words', async () => {
    const { proxied } = await both(
      inTurn(requestPacket(StartupCode.SSLRequest), requestPacket(StartupCode.SSLRequest)),
    );
    expect(proxied[0]).toBe('N');
    expect(proxied[1]).toMatch(
      /"C":"0A000","M":"unsupported frontend protocol 1234\.5679: server supports 3\.0 to 3\.\d+"/,
    );
  });
});

describe('GSSENCRequest', () => {
  // A server built with GSSAPI answers G over TCP (Debian's PG 15 is); the proxy
  // offers no GSS encryption and answers N, as a server built without it does.
  // The sequences after that answer are compared where the server says N too.
  let serverSaysN = false;
  beforeAll(async () => {
    const r = await converse(db.port, [{ send: requestPacket(StartupCode.GSSENCRequest), end: true }]);
    serverSaysN = r[0] === 'N';
  });

  const gss = () => requestPacket(StartupCode.GSSENCRequest);
  const ssl = () => requestPacket(StartupCode.SSLRequest);
  const cases: [string, () => Step[], string[]][] = [
    ['GSSENCRequest twice', () => inTurn(gss(), gss()), ['N', 'E', 'closed']],
    [
      'GSSENCRequest with a startup packet behind it in the same write',
      () => [{ send: Buffer.concat([gss(), startup()]) }],
      ['N', 'E', 'closed'],
    ],
    [
      'SSL and GSS refused in turn, then the startup goes through',
      () => inTurn(ssl(), gss(), startup()),
      ['N', 'N', 'R0'],
    ],
    ['SSL, GSS, then SSL again is a FATAL', () => inTurn(ssl(), gss(), ssl()), ['N', 'N', 'E', 'closed']],
    ['GSS, SSL, then GSS again is a FATAL', () => inTurn(gss(), ssl(), gss()), ['N', 'N', 'E', 'closed']],
  ];

  it.each(cases)('%s', async (_name, steps, shape) => {
    const proxied = await converse(proxy.port, steps());
    expect(proxied.slice(0, shape.length).map((t) => t.split(' ')[0])).toEqual(shape);
    if (!serverSaysN) return;
    expect(proxied).toEqual(await converse(db.port, steps()));
  });

  it('GSSENCRequest twice: protocol 1234.5680', async () => {
    const proxied = await converse(proxy.port, inTurn(gss(), gss()));
    expect(proxied[1]).toMatch(
      /"C":"0A000","M":"unsupported frontend protocol 1234\.5680: server supports 3\.0 to 3\.\d+"/,
    );
  });
});

describe('node-postgres', () => {
  /** connect() then end() at once: what the application sees. */
  async function connectThenEnd(url: string): Promise<string[]> {
    const events: string[] = [];
    const c = new pg.Client({ connectionString: url });
    c.on('error', (e) => events.push(`error event: ${e.message}`));
    c.connect().then(
      () => events.push('connected'),
      (e: Error) => events.push(`connect rejected: ${e.message}`),
    );
    await c.end();
    // The reply, if any, came before the close: its callbacks are queued by now.
    await new Promise((r) => setImmediate(r));
    await new Promise((r) => setImmediate(r));
    return events;
  }

  it('connect() then end() at once raises no error through the proxy, as directly', async () => {
    for (let i = 0; i < 5; i++) {
      const direct = await connectThenEnd(db.url);
      const proxied = await connectThenEnd(proxy.url());
      expect(proxied).toEqual(direct);
      expect(proxied).toEqual([]);
    }
  });
});

describe('startup timeout', () => {
  it('before a whole startup packet, the proxy hangs up without a reply (Postgres exits silently)', async () => {
    const p = await startProxy(db, { limits: { startupTimeoutMs: 300 } });
    try {
      const counted = async () =>
        (await metrics.connectionsRejected.get()).values.find((x) => x.labels.reason === 'startup_timeout')
          ?.value ?? 0;
      const before = await counted();
      expect(await converse(p.port, [])).toEqual(SILENT);
      expect(await converse(p.port, [{ send: startup().subarray(0, 10) }])).toEqual(SILENT);
      expect(await converse(p.port, [{ send: requestPacket(StartupCode.SSLRequest) }])).toEqual([
        'N',
        'closed',
      ]);
      expect(await counted()).toBe(before + 3);
    } finally {
      await p.close();
    }
  });
});

// Exact message sequences through the proxy on a bare socket: Describe/Close
// of named statements and portals, Flush, row-limited Execute, errors in a
// pipeline, and the startup-phase branches (SSLRequest, GSSENCRequest,
// NegotiateProtocolVersion, CancelRequest) and protocol violations.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { StartupCode } from '../../src/wire/codes.ts';
import {
  columnNames,
  cstrings,
  dataRow,
  fields,
  type Msg,
  RawConn,
  requestPacket,
  serialize,
  startupPacket,
  typed,
  types,
} from '../fixtures/wire/raw-client.ts';
import { freshDatabase, type TestDatabase } from '../support/db.ts';
import { startProxy, type TestProxy } from '../support/proxy.ts';

let db: TestDatabase;
let proxy: TestProxy;
const conns: RawConn[] = [];

beforeAll(async () => {
  db = await freshDatabase('praw');
  proxy = await startProxy(db);
  await db.query('CREATE TABLE kv (k int PRIMARY KEY, v text)');
});

afterAll(async () => {
  for (const c of conns) c.destroy();
  await proxy?.close();
  await db?.drop();
});

async function open(): Promise<RawConn> {
  const c = await RawConn.connect(proxy.port);
  conns.push(c);
  return c;
}

/** A connection through the proxy, past startup; returns it with its BackendKeyData body. */
async function ready(params: Record<string, string> = {}): Promise<{ c: RawConn; key: Buffer }> {
  const c = await open();
  const msgs = await c.startup({ user: 'postgres', database: db.name, ...params });
  expect(msgs.at(-1)?.type).toBe('Z');
  const key = msgs.find((m) => m.type === 'K');
  expect(key).toBeDefined();
  return { c, key: key!.body };
}

function pidOf(key: Buffer): number {
  return key.readInt32BE(0);
}

async function backendAlive(pid: number): Promise<boolean> {
  const r = await db.query('SELECT 1 FROM pg_stat_activity WHERE pid = $1', [pid]);
  return (r.rowCount ?? 0) > 0;
}

async function until(check: () => Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not reached in time');
    await new Promise((r) => setTimeout(r, 25));
  }
}

const only = (msgs: Msg[], t: string) => msgs.filter((m) => m.type === t);

describe('extended protocol, message by message', () => {
  it('Describe and Close of a named statement and a named portal', async () => {
    const { c } = await ready();
    c.send(
      serialize.parse({ name: 's1', text: "SELECT $1::int AS a, 'x'::text AS b" }),
      serialize.describe({ type: 'S', name: 's1' }),
      serialize.bind({ portal: 'p1', statement: 's1', values: ['5'] }),
      serialize.describe({ type: 'P', name: 'p1' }),
      serialize.execute({ portal: 'p1' }),
      serialize.close({ type: 'P', name: 'p1' }),
      serialize.close({ type: 'S', name: 's1' }),
      serialize.sync(),
    );
    const msgs = await c.until('Z');
    expect(types(msgs)).toBe('1 t T 2 T D C 3 3 Z');
    const [paramDesc] = only(msgs, 't');
    expect(paramDesc.body.readInt16BE(0)).toBe(1);
    expect(paramDesc.body.readInt32BE(2)).toBe(23); // int4
    expect(only(msgs, 'T').map((m) => columnNames(m.body))).toEqual([
      ['a', 'b'],
      ['a', 'b'],
    ]);
    expect(dataRow(only(msgs, 'D')[0].body)).toEqual(['5', 'x']);
    expect(cstrings(only(msgs, 'C')[0].body)).toEqual(['SELECT 1']);
    // Both are gone on the server: using them now fails.
    c.send(serialize.bind({ portal: '', statement: 's1', values: ['1'] }), serialize.sync());
    const err = await c.until('Z');
    expect(types(err)).toBe('E Z');
    expect(fields(err[0].body).C).toBe('26000');
    c.send(serialize.describe({ type: 'P', name: 'p1' }), serialize.sync());
    const err2 = await c.until('Z');
    expect(types(err2)).toBe('E Z');
    expect(fields(err2[0].body).C).toBe('34000');
  });

  it('Describe of a statement without rows answers NoData; Flush delivers replies before Sync', async () => {
    const { c } = await ready();
    c.send(
      serialize.parse({ name: 'ins', text: 'INSERT INTO kv VALUES ($1, $2)', types: [23, 25] }),
      serialize.describe({ type: 'S', name: 'ins' }),
      serialize.flush(),
    );
    // No Sync yet: Flush alone makes the server (and the proxy) deliver these.
    expect(types([await c.next(), await c.next(), await c.next()])).toBe('1 t n');
    c.send(
      serialize.bind({ statement: 'ins', values: ['1', 'one'] }),
      serialize.execute({}),
      serialize.bind({ statement: 'ins', values: ['2', 'two'] }),
      serialize.execute({}),
      serialize.sync(),
    );
    const msgs = await c.until('Z');
    expect(types(msgs)).toBe('2 C 2 C Z');
    expect(only(msgs, 'C').map((m) => cstrings(m.body)[0])).toEqual(['INSERT 0 1', 'INSERT 0 1']);
  });

  it('Execute with a row limit returns PortalSuspended until the portal is exhausted', async () => {
    const { c } = await ready();
    c.send(
      serialize.query('BEGIN'),
      serialize.parse({ text: 'SELECT g FROM generate_series(1, 5) g' }),
      serialize.bind({ portal: 'cur' }),
      serialize.execute({ portal: 'cur', rows: 2 }),
      serialize.execute({ portal: 'cur', rows: 2 }),
      serialize.execute({ portal: 'cur', rows: 2 }),
      serialize.sync(),
      serialize.query('COMMIT'),
    );
    const begin = await c.until('Z');
    expect(types(begin)).toBe('C Z');
    const msgs = await c.until('Z');
    expect(types(msgs)).toBe('1 2 D D s D D s D C Z');
    expect(only(msgs, 'D').map((m) => dataRow(m.body)[0])).toEqual(['1', '2', '3', '4', '5']);
    expect(msgs.at(-1)!.body.toString()).toBe('T');
    expect(types(await c.until('Z'))).toBe('C Z');
  });

  it('an error in a pipeline skips to Sync; the next pipeline runs normally', async () => {
    const { c } = await ready();
    const good = (v: string) => [
      serialize.parse({ text: 'SELECT $1::int AS v' }),
      serialize.bind({ values: [v] }),
      serialize.execute({}),
    ];
    c.send(
      ...good('1'),
      serialize.parse({ text: 'SELEKT 1' }),
      serialize.bind({}),
      serialize.execute({}),
      ...good('3'),
      serialize.sync(),
      ...good('4'),
      ...good('5'),
      serialize.sync(),
    );
    const first = await c.until('Z');
    expect(types(first)).toBe('1 2 D C E Z');
    expect(fields(first[4].body).C).toBe('42601');
    expect(first.at(-1)!.body.toString()).toBe('I');
    const second = await c.until('Z');
    expect(types(second)).toBe('1 2 D C 1 2 D C Z');
    expect(only(second, 'D').map((m) => dataRow(m.body)[0])).toEqual(['4', '5']);
  });

  it('an error inside an explicit transaction: status E until ROLLBACK', async () => {
    const { c } = await ready();
    c.send(serialize.query('BEGIN'));
    await c.until('Z');
    c.send(
      // Fails while executing (a constant 1/0 would already fail at Bind).
      serialize.parse({ text: 'SELECT 1 / g FROM generate_series(0, 1) g' }),
      serialize.bind({}),
      serialize.execute({}),
      serialize.sync(),
    );
    const msgs = await c.until('Z');
    expect(types(msgs)).toBe('1 2 E Z');
    expect(msgs.at(-1)!.body.toString()).toBe('E');
    c.send(serialize.query('ROLLBACK'));
    const rb = await c.until('Z');
    expect(rb.at(-1)!.body.toString()).toBe('I');
  });

  it('an empty query and COPY in the extended protocol', async () => {
    const { c } = await ready();
    c.send(serialize.parse({ text: '' }), serialize.bind({}), serialize.execute({}), serialize.sync());
    expect(types(await c.until('Z'))).toBe('1 2 I Z');
    c.send(
      serialize.parse({ text: 'COPY kv (k, v) FROM STDIN' }),
      serialize.bind({}),
      serialize.execute({}),
      serialize.flush(),
    );
    expect(types(await c.until('G'))).toBe('1 2 G');
    c.send(
      serialize.copyData(Buffer.from('100\thundred\n101\tmore\n')),
      serialize.copyDone(),
      serialize.sync(),
    );
    const done = await c.until('Z');
    expect(types(done)).toBe('C Z');
    expect(cstrings(done[0].body)).toEqual(['COPY 2']);
  });

  it('FunctionCall (the fast-path interface) is answered with FunctionCallResponse', async () => {
    const { c } = await ready();
    const oid = (await db.query<{ oid: number }>("SELECT 'int4abs'::regproc::oid::int AS oid")).rows[0].oid;
    const arg = Buffer.alloc(4);
    arg.writeInt32BE(-17);
    const body = Buffer.alloc(4 + 2 + 2 + 2 + 4 + 4 + 2);
    let o = body.writeInt32BE(oid, 0);
    o = body.writeInt16BE(1, o); // one argument format
    o = body.writeInt16BE(1, o); // binary
    o = body.writeInt16BE(1, o); // one argument
    o = body.writeInt32BE(4, o);
    arg.copy(body, o);
    body.writeInt16BE(1, o + 4); // binary result
    c.send(typed('F', body));
    const msgs = await c.until('Z');
    expect(types(msgs)).toBe('V Z');
    expect(msgs[0].body.readInt32BE(0)).toBe(4);
    expect(msgs[0].body.readInt32BE(4)).toBe(17);
  });

  it('messages pipelined right behind the startup packet are answered after startup, as by Postgres', async () => {
    const run = async (port: number) => {
      const c = await RawConn.connect(port);
      conns.push(c);
      c.send(startupPacket({ user: 'postgres', database: db.name }), serialize.query('SELECT 1 AS one'));
      const msgs = [...(await c.until('Z')), ...(await c.until('Z'))];
      return types(msgs.filter((m) => m.type !== 'S' && m.type !== 'K'));
    };
    const through = await run(proxy.port);
    expect(through).toBe('R Z T D C Z');
    expect(through).toBe(await run(db.port));
  });

  it('simple query: several statements, an empty query, and an error in the middle', async () => {
    const { c } = await ready();
    c.send(serialize.query('SELECT 1; SELECT 2'));
    expect(types(await c.until('Z'))).toBe('T D C T D C Z');
    c.send(serialize.query(''));
    expect(types(await c.until('Z'))).toBe('I Z');
    c.send(serialize.query('SELECT 1; SELECT 1/0; SELECT 3'));
    const msgs = await c.until('Z');
    expect(types(msgs)).toBe('T D C E Z');
    expect(fields(msgs[3].body).C).toBe('22012');
  });
});

describe('asynchronous messages amid replies', () => {
  it('a NotificationResponse arriving between the replies of a pipeline leaves the pipeline intact', async () => {
    const { c } = await ready();
    const { c: other } = await ready();
    c.send(serialize.query('LISTEN sy_raw'));
    await c.until('Z');
    const round = [
      serialize.parse({ text: 'SELECT pg_sleep(0.3), $1::int AS v' }),
      serialize.bind({ values: ['1'] }),
      serialize.execute({}),
      serialize.sync(),
      serialize.parse({ text: 'SELECT $1::int AS v' }),
      serialize.bind({ values: ['2'] }),
      serialize.execute({}),
      serialize.sync(),
    ];
    c.send(...round);
    other.send(serialize.query("NOTIFY sy_raw, 'mid'"));
    await other.until('Z');
    const first = await c.until('Z');
    const second = await c.until('Z');
    const all = [...first, ...second];
    const notes = only(all, 'A');
    const late = notes.length ? [] : [await c.next()];
    const notification = [...notes, ...late];
    expect(notification).toHaveLength(1);
    expect(cstrings(notification[0].body, 4)).toEqual(['sy_raw', 'mid']);
    expect(types(all.filter((m) => m.type !== 'A'))).toBe('1 2 D C Z 1 2 D C Z');
    expect(only(all, 'D').map((m) => dataRow(m.body).at(-1))).toEqual(['1', '2']);
  });
});

describe('startup branches', () => {
  it('answers SSLRequest with N, then the startup goes through', async () => {
    const c = await open();
    c.send(requestPacket(StartupCode.SSLRequest));
    expect(await c.byte()).toBe('N');
    const msgs = await c.startup({ user: 'postgres', database: db.name });
    expect(msgs.at(-1)?.type).toBe('Z');
    expect(only(msgs, 'R')[0].body.readInt32BE(0)).toBe(0);
    expect(only(msgs, 'S').length).toBeGreaterThan(3);
  });

  it('answers GSSENCRequest with N, then SSLRequest with N, then the startup goes through', async () => {
    const c = await open();
    c.send(requestPacket(StartupCode.GSSENCRequest));
    expect(await c.byte()).toBe('N');
    c.send(requestPacket(StartupCode.SSLRequest));
    expect(await c.byte()).toBe('N');
    const msgs = await c.startup({ user: 'postgres', database: db.name });
    expect(msgs.at(-1)?.type).toBe('Z');
  });

  it('relays the server’s NegotiateProtocolVersion for protocol 3.2 with an unknown _pq_ option', async () => {
    const c = await open();
    const msgs = await c.startup({ user: 'postgres', database: db.name, '_pq_.sy_unknown': 'on' }, 196610);
    expect(msgs[0].type).toBe('v');
    const newest = msgs[0].body.readInt32BE(0);
    // PG 18 speaks 3.2; older servers offer 3.0. Either way the client hears the server itself.
    expect(newest >> 16).toBe(3);
    expect(newest & 0xffff).toBe(db.serverVersion >= 18 ? 2 : 0);
    expect(msgs[0].body.readInt32BE(4)).toBe(1);
    expect(cstrings(msgs[0].body, 8)).toEqual(['_pq_.sy_unknown']);
    expect(msgs.at(-1)?.type).toBe('Z');
    const key = only(msgs, 'K')[0].body;
    // Protocol 3.2 (PG 18) has 256-bit cancel keys, 3.0 has 32-bit ones.
    expect(key.length).toBe(db.serverVersion >= 18 ? 4 + 32 : 8);
    c.send(serialize.query('SELECT 42'));
    const q = await c.until('Z');
    expect(dataRow(only(q, 'D')[0].body)).toEqual(['42']);
  });

  it('protocol 3.2 and 3.9999 startups: the client sees what Postgres itself answers', async () => {
    const run = async (port: number, version: number) => {
      const c = await RawConn.connect(port);
      conns.push(c);
      const msgs = await c.startup({ user: 'postgres', database: db.name }, version);
      c.send(serialize.end());
      return msgs
        .filter((m) => m.type !== 'S')
        .map((m) =>
          m.type === 'v'
            ? `v${m.body.readInt32BE(0) & 0xffff}`
            : m.type === 'K'
              ? `K${m.body.length}`
              : m.type,
        )
        .join(' ');
    };
    for (const version of [196610, 196608 + 9999]) {
      const through = await run(proxy.port, version);
      expect(through).toBe(await run(db.port, version));
      expect(through.endsWith('Z')).toBe(true);
    }
    // PG 18 accepts 3.2 as is (256-bit cancel key); PG 15 negotiates down to 3.0.
    expect(await run(proxy.port, 196610)).toBe(db.serverVersion >= 18 ? 'R K36 Z' : 'v0 R K8 Z');
  });

  it('relays a CancelRequest carrying the key the client received (any key length)', async () => {
    const c = await open();
    const msgs = await c.startup(
      { user: 'postgres', database: db.name },
      db.serverVersion >= 18 ? 196610 : 196608,
    );
    const key = only(msgs, 'K')[0].body;
    c.send(serialize.query('SELECT pg_sleep(30)'));
    await until(async () => {
      const r = await db.query("SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND wait_event = 'PgSleep'", [
        pidOf(key),
      ]);
      return (r.rowCount ?? 0) > 0;
    });
    const cancel = await open();
    const packet = Buffer.alloc(8 + key.length);
    packet.writeInt32BE(packet.length, 0);
    packet.writeInt32BE(StartupCode.CancelRequest, 4);
    key.copy(packet, 8);
    cancel.send(packet);
    await cancel.waitClosed();
    const reply = await c.until('Z');
    const e = only(reply, 'E')[0];
    expect(fields(e.body).C).toBe('57014');
  });

  it('a wrong cancel key cancels nothing', async () => {
    const { c, key } = await ready();
    c.send(serialize.query('SELECT pg_sleep(0.5) AS slept'));
    const cancel = await open();
    cancel.send(requestPacket(StartupCode.CancelRequest, pidOf(key), key.readInt32BE(4) ^ 0x5a5a));
    await cancel.waitClosed();
    const reply = await c.until('Z');
    expect(types(reply)).toBe('T D C Z');
  });
});

describe('endings and protocol violations', () => {
  it('Terminate closes the client connection and the server backend', async () => {
    const { c, key } = await ready();
    expect(await backendAlive(pidOf(key))).toBe(true);
    c.send(serialize.end());
    await c.waitClosed();
    await until(async () => !(await backendAlive(pidOf(key))));
  });

  it('an unknown message type ends that connection with an ErrorResponse; others keep working', async () => {
    const { c, key } = await ready();
    const { c: other } = await ready();
    c.send(typed('y', Buffer.from('junk')));
    const m = await c.next();
    expect(m.type).toBe('E');
    const f = fields(m.body);
    expect(f.S).toBe('FATAL');
    expect(f.C).toBe('08P01');
    expect(f.M).toMatch(/invalid frontend message type "y"/);
    await c.waitClosed();
    await until(async () => !(await backendAlive(pidOf(key))));
    other.send(serialize.query('SELECT 7'));
    const q = await other.until('Z');
    expect(dataRow(only(q, 'D')[0].body)).toEqual(['7']);
  });

  it('a message with an impossible length ends the connection with 08P01', async () => {
    const { c } = await ready();
    const bad = Buffer.from([0x51, 0, 0, 0, 2]);
    c.send(bad);
    const m = await c.next();
    expect(m.type).toBe('E');
    expect(fields(m.body).C).toBe('08P01');
    expect(fields(m.body).M).toMatch(/invalid message length 2/);
    await c.waitClosed();
  });

  it('an unsupported protocol version is refused by Postgres itself, in its own framing', async () => {
    // (protocol-startup-violations compares these and 1.x/2.x, answered in the old framing, byte for byte)
    const c4 = await open();
    const msgs = await c4.startup({ user: 'postgres', database: db.name }, 4 << 16);
    expect(types(msgs)).toBe('E');
    expect(fields(msgs[0].body).C).toBe('0A000');
    expect(fields(msgs[0].body).M).toMatch(
      /^unsupported frontend protocol 4\.0: server supports 3\.0 to 3\.\d+$/,
    );
    await c4.waitClosed();
  });
});

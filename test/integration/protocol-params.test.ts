// Statements with more than 32767 parameters. Every 16-bit count of Parse and
// Bind (parameter types, parameter formats, parameter values, result formats)
// is unsigned in Postgres (pq_getmsgint(msg, 2)): up to 65535 parameters work,
// and the client must see the same through the proxy as directly, on unmapped
// and mapped tables, a mirrored write with 65535 parameters included. Each
// statement runs through the proxy on one database and straight on an
// identical second one.
import net from 'node:net';
import pg from 'pg';
import postgres from 'postgres';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { CompiledMapping } from '../../src/rules/mapping.ts';
import { fields, serialize, startupPacket } from '../fixtures/wire/raw-client.ts';
import { freshDatabase, type TestDatabase } from '../support/db.ts';
import { checkEqual, compileMapping, mappingConfig } from '../support/lifecycle.ts';
import type { MappingDefinition } from '../support/mapping-cases.ts';
import { startProxy, type TestProxy } from '../support/proxy.ts';

const users: MappingDefinition = {
  name: 'users',
  old: 'users',
  new: 'users_v2',
  key: ['id'],
  up: { id: 'id', email: 'lower(email)', full_name: "first_name || ' ' || last_name", version: 'version' },
  down: {
    id: 'id',
    email: 'email',
    first_name: "split_part(full_name, ' ', 1)",
    last_name: "split_part(full_name, ' ', 2)",
    version: 'version',
  },
};

const SCHEMA = `
  CREATE TABLE users (id int PRIMARY KEY, email text, first_name text, last_name text, version int NOT NULL DEFAULT 0);
  CREATE TABLE users_v2 (id bigint PRIMARY KEY, email text, full_name text, version int NOT NULL);
  CREATE TABLE plain (id int PRIMARY KEY, v int);`;

let viaProxy: TestDatabase;
let direct: TestDatabase;
let proxy: TestProxy;
/** reads: new, for switched reads. */
let switched: TestProxy;
let m: CompiledMapping;
let pc: pg.Client;
let dc: pg.Client;

beforeAll(async () => {
  [viaProxy, direct] = await Promise.all([freshDatabase('ppx'), freshDatabase('ppd')]);
  for (const db of [viaProxy, direct]) await db.query(SCHEMA);
  m = await compileMapping(viaProxy, users);
  proxy = await startProxy(viaProxy, mappingConfig([users]));
  switched = await startProxy(viaProxy, mappingConfig([users], { reads: 'new' }));
  pc = new pg.Client({ connectionString: proxy.url() });
  dc = new pg.Client({ connectionString: direct.url });
  await Promise.all([pc.connect(), dc.connect()]);
}, 60_000);

afterAll(async () => {
  await Promise.all([pc?.end(), dc?.end()]);
  await switched?.close();
  await proxy?.close();
  await viaProxy?.drop();
  await direct?.drop();
});

beforeEach(async () => {
  for (const db of [viaProxy, direct]) await db.query('TRUNCATE users, users_v2, plain');
});

/** `$1, $2, ... $n`, grouped `per` to a row: "($1, $2), ($3, $4)". */
function placeholders(n: number, per = 1, cast = ''): string {
  const rows: string[] = [];
  for (let i = 1; i <= n; i += per) {
    const row: string[] = [];
    for (let j = i; j < i + per && j <= n; j++) row.push(`$${j}${cast}`);
    rows.push(`(${row.join(', ')})`);
  }
  return rows.join(', ');
}

interface Outcome {
  command?: string;
  rowCount?: number | null;
  rows?: unknown[];
  error?: Record<string, unknown>;
}

async function outcome(c: pg.Client, text: string, values: unknown[]): Promise<Outcome> {
  try {
    const r = await c.query({ text, values });
    return { command: r.command, rowCount: r.rowCount, rows: r.rows };
  } catch (e) {
    const { severity, code, message, detail, position } = e as pg.DatabaseError;
    return { error: { severity, code, message, detail, position } };
  }
}

/** The same statement through the proxy and directly; the proxy's session must still work after it. */
async function same(text: string, values: unknown[]): Promise<Outcome> {
  const [p, d] = await Promise.all([outcome(pc, text, values), outcome(dc, text, values)]);
  expect(p).toEqual(d);
  const after = await pc.query('SELECT 1 AS alive');
  expect(after.rows).toEqual([{ alive: 1 }]);
  return p;
}

function userRows(n: number, first = 1): unknown[] {
  const out: unknown[] = [];
  for (let i = 0; i < n; i++) {
    const id = first + i;
    out.push(id, `User${id}@Example.com`, `first${id}`, `last${id}`, id % 7);
  }
  return out;
}

describe.each([40_000, 65_535])('%i parameters', (n) => {
  it('an unmapped SELECT (node-postgres: no parameter types, 16-bit Bind counts)', async () => {
    const values = Array.from({ length: n }, (_, i) => i);
    const r = await same(
      `SELECT count(*)::int AS n, sum(x)::bigint AS s FROM (VALUES ${placeholders(n, 1, '::int')}) v(x)`,
      values,
    );
    expect(r.rows).toEqual([{ n, s: String(((n - 1) * n) / 2) }]);
  });

  it('an unmapped multi-row INSERT', async () => {
    const rows = Math.floor(n / 2);
    const values = Array.from({ length: rows * 2 }, (_, i) => i);
    const r = await same(`INSERT INTO plain (id, v) VALUES ${placeholders(rows * 2, 2)}`, values);
    expect(r.rowCount).toBe(rows);
    const count = (db: TestDatabase) => db.query('SELECT count(*)::int AS c, sum(v)::bigint AS s FROM plain');
    expect((await count(viaProxy)).rows).toEqual((await count(direct)).rows);
  });

  it('a mirrored multi-row INSERT into the mapped table reaches the new table', async () => {
    const rows = Math.floor(n / 5);
    const values = userRows(rows);
    const cols = '(id, email, first_name, last_name, version)';
    const r = await same(`INSERT INTO users ${cols} VALUES ${placeholders(rows * 5, 5)}`, values);
    expect(r).toEqual({ command: 'INSERT', rowCount: rows, rows: [] });
    expect(await checkEqual(viaProxy, m, `INSERT with ${rows * 5} parameters`)).toBe(rows);
  });

  it('a mirrored UPDATE and a switched read with every key a parameter', async () => {
    const rows = 1000;
    const seed = `INSERT INTO users (id, email, first_name, last_name) SELECT g, 'u' || g, 'f' || g, 'l' || g FROM generate_series(1, ${rows}) g`;
    await Promise.all([pc.query(seed), dc.query(seed)]);
    const keys = Array.from({ length: n }, (_, i) => (i % (rows * 2)) + 1);
    const list = placeholders(n).replaceAll('(', '').replaceAll(')', '');
    const upd = await same(`UPDATE users SET version = version + 1 WHERE id IN (${list})`, keys);
    expect(upd.rowCount).toBe(rows);
    expect(await checkEqual(viaProxy, m, 'UPDATE')).toBe(rows);
    const read = `SELECT count(*)::int AS c, sum(version)::int AS v FROM users WHERE id IN (${list})`;
    const sc = new pg.Client({ connectionString: switched.url() });
    await sc.connect();
    try {
      const [s, d] = await Promise.all([outcome(sc, read, keys), outcome(dc, read, keys)]);
      expect(s).toEqual(d);
      expect(s.rows).toEqual([{ c: rows, v: rows }]);
    } finally {
      await sc.end();
    }
  });
});

describe('Parse with parameter types (postgres.js sends one per parameter)', () => {
  it.each([40_000, 65_533])('%i typed parameters, unmapped and mirrored', async (n) => {
    const through = postgres(proxy.url(), { max: 1, onnotice: () => {} });
    const straight = postgres(direct.url, { max: 1, onnotice: () => {} });
    try {
      const values = Array.from({ length: n }, (_, i) => i);
      const sql = `SELECT count(*)::int AS n, max(x)::int AS top FROM (VALUES ${placeholders(n, 1, '::int')}) v(x)`;
      const [a, b] = await Promise.all([through.unsafe(sql, values), straight.unsafe(sql, values)]);
      expect([...a]).toEqual([...b]);
      expect([...a]).toEqual([{ n, top: n - 1 }]);
      const rows = Math.floor(n / 5);
      const ins = `INSERT INTO users (id, email, first_name, last_name, version) VALUES ${placeholders(rows * 5, 5)}`;
      const [x, y] = await Promise.all([
        through.unsafe(ins, userRows(rows) as never[]),
        straight.unsafe(ins, userRows(rows) as never[]),
      ]);
      expect([x.command, x.count]).toEqual([y.command, y.count]);
      expect(await checkEqual(viaProxy, m, `postgres.js INSERT with ${rows * 5} parameters`)).toBe(rows);
    } finally {
      await Promise.all([through.end(), straight.end()]);
    }
  });
});

/** A bare socket past startup; `exchange` sends bytes and collects replies up to ReadyForQuery. */
async function rawSession(port: number, database: string) {
  const sock = net.connect({ host: '127.0.0.1', port });
  let buf = Buffer.alloc(0);
  let wake: () => void = () => {};
  let closed = false;
  sock.on('data', (d: Buffer) => {
    buf = Buffer.concat([buf, d]);
    wake();
  });
  sock.on('error', () => {});
  sock.on('close', () => {
    closed = true;
    wake();
  });
  await new Promise((r) => sock.once('connect', r));
  const untilReady = async (): Promise<string[]> => {
    const out: string[] = [];
    const deadline = Date.now() + 60_000;
    for (;;) {
      while (buf.length >= 5 && buf.length >= 1 + buf.readInt32BE(1)) {
        const len = buf.readInt32BE(1);
        const type = String.fromCharCode(buf[0]);
        const body = buf.subarray(5, 1 + len);
        buf = buf.subarray(1 + len);
        if (type === 'E') {
          const { F: _f, L: _l, R: _r, ...rest } = fields(body);
          out.push(`E ${JSON.stringify(rest)}`);
        } else if (type === 'D' || type === 'C') out.push(`${type} ${body.toString('hex')}`);
        else if (type !== 'S' && type !== 'K') out.push(type);
        if (type === 'Z') return out;
      }
      if (closed) return [...out, 'closed'];
      if (Date.now() > deadline) return [...out, 'timeout'];
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, 1000);
        wake = () => {
          clearTimeout(t);
          resolve();
        };
      });
    }
  };
  sock.write(startupPacket({ user: 'postgres', database }));
  const hello = await untilReady();
  expect(hello.at(-1)).toBe('Z');
  return {
    exchange: (...msgs: Buffer[]) => {
      sock.write(Buffer.concat(msgs));
      return untilReady();
    },
    close: () => sock.destroy(),
  };
}

/** A Bind with explicit counts, which may disagree with what follows (pg-protocol wraps counts at 65536). */
function bindMessage(nFormats: number, nValues: number, values: string[], resultFormats = [0]): Buffer {
  const parts: Buffer[] = [Buffer.from('\0\0')];
  const u16 = (v: number) => {
    const b = Buffer.alloc(2);
    b.writeUInt16BE(v & 0xffff);
    return b;
  };
  parts.push(u16(nFormats), Buffer.alloc(2 * (nFormats & 0xffff)), u16(nValues));
  for (const v of values) {
    const len = Buffer.alloc(4);
    len.writeInt32BE(Buffer.byteLength(v));
    parts.push(len, Buffer.from(v));
  }
  parts.push(u16(resultFormats.length), ...resultFormats.map(u16));
  const body = Buffer.concat(parts);
  const out = Buffer.alloc(5 + body.length);
  out[0] = 0x42;
  out.writeInt32BE(4 + body.length, 1);
  body.copy(out, 5);
  return out;
}

describe('on a bare socket', () => {
  it('Parse with 65535 int4 parameter types, Bind with 65535 values, mapped table', async () => {
    const n = 65_535;
    const rows = n / 5;
    const text = `INSERT INTO users (id, email, first_name, last_name, version) VALUES ${placeholders(n, 5)} RETURNING id`;
    const parse = serialize.parse({
      name: 'wide',
      text,
      types: Array.from({ length: n }, (_, i) => (i % 5 === 0 || i % 5 === 4 ? 23 : 25)),
    });
    const values = userRows(rows).map(String);
    const bind = bindMessage(0, n, values);
    const named = Buffer.from(bind);
    // Statement name "wide" in place of the unnamed statement.
    const withName = Buffer.concat([named.subarray(0, 6), Buffer.from('wide'), named.subarray(6)]);
    withName.writeInt32BE(withName.length - 1, 1);
    const replies: string[][] = [];
    for (const [port, db] of [
      [proxy.port, viaProxy.name],
      [direct.port, direct.name],
    ] as const) {
      const s = await rawSession(port, db);
      try {
        const r = await s.exchange(parse, withName, serialize.execute({ rows: 3 }), serialize.sync());
        replies.push(r);
      } finally {
        s.close();
      }
    }
    expect(replies[0]).toEqual(replies[1]);
    expect(replies[0].map((x) => x.split(' ')[0])).toEqual(['1', '2', 'D', 'D', 'D', 's', 'Z']);
    // The portal was suspended after 3 rows and closed at Sync: the INSERT ran whole, and was mirrored.
    expect(await checkEqual(viaProxy, m, 'raw INSERT with 65535 typed parameters')).toBe(rows);
  });

  it('65535 result formats on a mirrored INSERT ... RETURNING: the server’s refusal, and the session goes on', async () => {
    const parse = serialize.parse({ text: 'INSERT INTO users (id) VALUES ($1) RETURNING id, email' });
    const bind = bindMessage(0, 1, ['5'], new Array(65_535).fill(0));
    const replies: string[][] = [];
    for (const [port, db] of [
      [proxy.port, viaProxy.name],
      [direct.port, direct.name],
    ] as const) {
      const s = await rawSession(port, db);
      try {
        const r1 = await s.exchange(parse, bind, serialize.execute({}), serialize.sync());
        const r2 = await s.exchange(serialize.query('SELECT 7'));
        replies.push([...r1, ...r2]);
      } finally {
        s.close();
      }
    }
    // The rewritten statement returns one more column than the client's, which the message counts.
    const strip = (r: string[]) => r.map((x) => x.replace(/query has \d+ columns/, 'query has N columns'));
    expect(strip(replies[0])).toEqual(strip(replies[1]));
    expect(replies[1][1]).toMatch(
      /"C":"08P01","M":"bind message has 65535 result formats but query has 2 columns"/,
    );
    expect((await viaProxy.query('SELECT count(*)::int AS c FROM users')).rows).toEqual([{ c: 0 }]);
  });

  it('65536 parameters: the error the server gives (node-postgres wraps the counts to 0)', async () => {
    const n = 65_536;
    const values = Array.from({ length: n }, (_, i) => i);
    const r = await same(`SELECT count(*) FROM (VALUES ${placeholders(n, 1, '::int')}) v(x)`, values);
    expect(r.error?.code).toBe('08P01');
    const mapped = await same(`INSERT INTO users (id) VALUES ${placeholders(n)}`, values);
    expect(mapped.error?.code).toBe('08P01');
    expect((await viaProxy.query('SELECT count(*)::int AS c FROM users')).rows).toEqual([{ c: 0 }]);
  });

  it('65536 parameters, counts written by hand: the server’s answer, and the session goes on', async () => {
    const n = 65_536;
    const text = `SELECT count(*) FROM users WHERE id IN (${placeholders(n).replaceAll('(', '').replaceAll(')', '')})`;
    const parse = serialize.parse({ text });
    const values = Array.from({ length: n }, (_, i) => String(i));
    const replies: string[][] = [];
    for (const [port, db] of [
      [proxy.port, viaProxy.name],
      [direct.port, direct.name],
    ] as const) {
      const s = await rawSession(port, db);
      try {
        // 65535 of 65536 values announced, then all of them: what a client that saturates the count sends.
        const r1 = await s.exchange(
          parse,
          bindMessage(0, 0xffff, values),
          serialize.execute({}),
          serialize.sync(),
        );
        const r2 = await s.exchange(serialize.query('SELECT 7'));
        replies.push([...r1, ...r2]);
      } finally {
        s.close();
      }
    }
    expect(replies[0]).toEqual(replies[1]);
    expect(replies[0][0]).toBe('1');
    expect(replies[0][1]).toMatch(/^E .*"C":"08P01"/);
  });
});

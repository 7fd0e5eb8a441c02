// Protocol fuzzing support: valid client byte sequences to start from, fast-check
// arbitraries that break them (flipped, inserted, deleted bytes, truncation,
// bad lengths, unknown types, packets in the wrong phase), and a raw-socket
// runner that plays one case against the proxy and judges what came back.
import net from 'node:net';
import fc from 'fast-check';

// ---- valid client messages ---------------------------------------------------

function typed(type: string, body: Buffer): Buffer {
  const head = Buffer.alloc(5);
  head[0] = type.charCodeAt(0);
  head.writeInt32BE(body.length + 4, 1);
  return Buffer.concat([head, body]);
}

const cstr = (s: string) => Buffer.from(`${s}\0`, 'utf8');
const i16 = (v: number) => {
  const b = Buffer.alloc(2);
  b.writeInt16BE(v);
  return b;
};
const i32 = (v: number) => {
  const b = Buffer.alloc(4);
  b.writeInt32BE(v | 0);
  return b;
};

export function startupPacket(params: Record<string, string>, code = 196608): Buffer {
  const body = Buffer.concat([
    i32(code),
    ...Object.entries(params).flatMap(([k, v]) => [cstr(k), cstr(v)]),
    Buffer.from([0]),
  ]);
  return Buffer.concat([i32(body.length + 4), body]);
}

export const sslRequest = () => Buffer.concat([i32(8), i32(80877103)]);
export const gssencRequest = () => Buffer.concat([i32(8), i32(80877104)]);
export const cancelRequest = (pid: number, key: number) =>
  Buffer.concat([i32(16), i32(80877102), i32(pid), i32(key)]);

export const msg = {
  query: (sql: string) => typed('Q', cstr(sql)),
  parse: (name: string, sql: string, types: number[] = []) =>
    typed('P', Buffer.concat([cstr(name), cstr(sql), i16(types.length), ...types.map(i32)])),
  bind: (portal: string, stmt: string, params: (string | null)[] = [], resultFormats: number[] = []) =>
    typed(
      'B',
      Buffer.concat([
        cstr(portal),
        cstr(stmt),
        i16(0),
        i16(params.length),
        ...params.flatMap((p) => (p === null ? [i32(-1)] : [i32(Buffer.byteLength(p)), Buffer.from(p)])),
        i16(resultFormats.length),
        ...resultFormats.map(i16),
      ]),
    ),
  describe: (kind: 'S' | 'P', name: string) => typed('D', Buffer.concat([Buffer.from(kind), cstr(name)])),
  execute: (portal: string, maxRows = 0) => typed('E', Buffer.concat([cstr(portal), i32(maxRows)])),
  close: (kind: 'S' | 'P', name: string) => typed('C', Buffer.concat([Buffer.from(kind), cstr(name)])),
  sync: () => typed('S', Buffer.alloc(0)),
  flush: () => typed('H', Buffer.alloc(0)),
  terminate: () => typed('X', Buffer.alloc(0)),
  password: (p: string) => typed('p', cstr(p)),
  copyData: (b: Buffer) => typed('d', b),
  copyDone: () => typed('c', Buffer.alloc(0)),
  copyFail: (why: string) => typed('f', cstr(why)),
  functionCall: () => typed('F', Buffer.concat([i32(1598), i16(0), i16(0), i16(0)])),
};

/** Frontend message types a server accepts after startup. */
export const FRONTEND_TYPES = new Set('BCDEFHPQSXcdfp'.split('').map((c) => c.charCodeAt(0)));

// SQL that is harmless whatever a mutation turns it into: no writes to tables
// the well-behaved clients use, no locks, no sleeps.
const SQLS = [
  'SELECT 1',
  'SELECT $1::int + 1',
  "SELECT 'héllo' AS greeting, now()",
  'SELECT x FROM (VALUES (1), (2), (3)) AS v(x)',
  'SELECT * FROM fuzz_scratch WHERE id = $1',
  'INSERT INTO fuzz_scratch (note) VALUES ($1)',
  'BEGIN; SELECT 1; COMMIT',
  'SELECT 1; SELECT 2',
  'SELEC broken syntax',
  '',
];

/** One well-formed client exchange after startup, as separate messages. */
export const validExchange: fc.Arbitrary<Buffer[]> = fc.oneof(
  fc.constantFrom(...SQLS).map((sql) => [msg.query(sql)]),
  fc
    .tuple(fc.constantFrom(...SQLS), fc.constantFrom('', 's1'), fc.constantFrom('', 'p1'), fc.boolean())
    .map(([sql, stmt, portal, describe]) => [
      msg.parse(stmt, sql, sql.includes('$1') ? [23] : []),
      msg.bind(portal, stmt, sql.includes('$1') ? ['7'] : []),
      ...(describe ? [msg.describe('P', portal)] : []),
      msg.execute(portal),
      msg.sync(),
    ]),
  fc.constant<Buffer[]>([msg.parse('s2', 'SELECT 1'), msg.flush(), msg.close('S', 's2'), msg.sync()]),
  fc.constant<Buffer[]>([msg.describe('S', 'nope'), msg.sync()]),
  fc.constant<Buffer[]>([msg.execute('no_portal'), msg.sync()]),
  fc.constant<Buffer[]>([msg.copyData(Buffer.from('x')), msg.copyDone(), msg.sync()]),
  fc.constant<Buffer[]>([msg.functionCall(), msg.sync()]),
  fc.constant<Buffer[]>([msg.terminate()]),
);

// ---- mutations ---------------------------------------------------------------

type Mutation =
  | { op: 'flip'; at: number; bit: number }
  | { op: 'set'; at: number; value: number }
  | { op: 'insert'; at: number; bytes: Uint8Array }
  | { op: 'delete'; at: number; count: number };

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ op: fc.constant('flip' as const), at: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }),
  fc.record({ op: fc.constant('set' as const), at: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }),
  fc.record({
    op: fc.constant('insert' as const),
    at: fc.nat(),
    bytes: fc.uint8Array({ minLength: 1, maxLength: 8 }),
  }),
  fc.record({ op: fc.constant('delete' as const), at: fc.nat(), count: fc.integer({ min: 1, max: 6 }) }),
);

export function applyMutations(input: Buffer, muts: Mutation[]): Buffer {
  let b = Buffer.from(input);
  for (const m of muts) {
    if (b.length === 0) break;
    const at = m.at % b.length;
    if (m.op === 'flip') b[at] ^= 1 << m.bit;
    else if (m.op === 'set') b[at] = m.value;
    else if (m.op === 'insert') b = Buffer.concat([b.subarray(0, at), Buffer.from(m.bytes), b.subarray(at)]);
    else b = Buffer.concat([b.subarray(0, at), b.subarray(at + m.count)]);
  }
  return b;
}

/** Mutates a buffer 1-4 times. */
export const mutated = (input: Buffer) =>
  fc.array(mutation, { minLength: 1, maxLength: 4 }).map((ms) => applyMutations(input, ms));

/** Lengths that are negative, too small, or larger than any limit. */
export const badLength = fc.oneof(
  fc.constantFrom(-1, -4, -0x80000000, 0, 1, 3, 0x7fffffff, 0x40000000, 0x04000001),
  fc.integer({ min: -0x80000000, max: 3 }),
  fc.integer({ min: 64 * 1024 * 1024 + 1, max: 0x7fffffff }),
);

/** A typed header with a bad length, followed by a few random bytes. */
export const badLengthMessage = fc
  .tuple(fc.constantFrom(...FRONTEND_TYPES), badLength, fc.uint8Array({ maxLength: 16 }))
  .map(([type, len, tail]) => {
    const h = Buffer.alloc(5);
    h[0] = type;
    h.writeInt32BE(len, 1);
    return Buffer.concat([h, Buffer.from(tail)]);
  });

/** A message of a type no server accepts from a client. */
export const unknownTypeMessage = fc
  .tuple(
    fc.integer({ min: 0, max: 255 }).filter((t) => !FRONTEND_TYPES.has(t)),
    fc.uint8Array({ maxLength: 32 }),
  )
  .map(([type, body]) => {
    const h = Buffer.alloc(5);
    h[0] = type;
    h.writeInt32BE(body.length + 4, 1);
    return Buffer.concat([h, Buffer.from(body)]);
  });

/** A valid message cut short (the client then hangs up). */
export const truncatedExchange = validExchange.chain((ms) => {
  const all = Buffer.concat(ms);
  return fc.integer({ min: 1, max: Math.max(1, all.length - 1) }).map((n) => all.subarray(0, n));
});

// ---- the case runner ---------------------------------------------------------

export interface FuzzCase {
  kind: string;
  /** Bytes sent right after connecting, before any handshake. */
  preamble?: Buffer;
  /** Complete a real startup (wait for ReadyForQuery) before sending `payload`. */
  handshake: boolean;
  payload: Buffer;
  /** Write the payload in pieces of this size (exercises reassembly). */
  chunk?: number;
  /** Milliseconds between the preamble and the payload. */
  pauseMs?: number;
  /** The proxy must answer an ErrorResponse or close by itself (the client does not hang up first). */
  mustReact: boolean;
}

export interface CaseResult {
  reacted: 'error' | 'closed' | 'none';
  /** Closed within the deadline after the client hung up (or by itself). */
  closed: boolean;
  handshakeOk: boolean;
  /** Framing problems in what the proxy sent back; empty when well-formed. */
  framing: string[];
  errors: { severity: string; code: string; message: string }[];
  dataRows: string[];
  ms: number;
}

/**
 * Incremental parser of what the proxy sends back: checks the framing and
 * keeps the ErrorResponses, ReadyForQuery count and the first DataRow values,
 * without ever holding the whole stream (a mutated query may return a lot).
 */
export class BackendStream {
  framing: string[] = [];
  errors: { severity: string; code: string; message: string }[] = [];
  readyCount = 0;
  /** First column of each DataRow, as text (the first 100). */
  dataRows: string[] = [];
  bytes = 0;
  private head = Buffer.alloc(0);
  /** Body bytes of a frame we do not need, still to come. */
  private skip = 0;
  private broken = false;

  /** `leadingN`: SSLRequest/GSSENCRequest packets sent first, each refused with a bare 'N'. */
  constructor(private leadingN = 0) {}

  push(chunk: Buffer): void {
    this.bytes += chunk.length;
    if (this.broken) return;
    let data = this.head.length > 0 ? Buffer.concat([this.head, chunk]) : chunk;
    this.head = Buffer.alloc(0);
    let pos = 0;
    while (pos < data.length) {
      if (this.skip > 0) {
        const n = Math.min(this.skip, data.length - pos);
        this.skip -= n;
        pos += n;
        continue;
      }
      if (this.leadingN > 0 && data[pos] === 0x4e) {
        this.leadingN--;
        pos++;
        continue;
      }
      this.leadingN = 0;
      if (data.length - pos < 5) break;
      const type = data[pos];
      // A startup asking for protocol 1.x or 2.x is refused by Postgres in that
      // protocol's framing: 'E', the text, NUL (a v3 length starts with a zero byte).
      if (type === 0x45 && this.readyCount === 0 && data[pos + 1] >= 0x41 && data[pos + 1] <= 0x5a) {
        const zero = data.indexOf(0, pos + 1);
        if (zero < 0) break;
        this.errors.push({ severity: 'FATAL', code: '', message: data.toString('utf8', pos + 1, zero) });
        pos = zero + 1;
        continue;
      }
      const len = data.readInt32BE(pos + 1);
      if (len < 4 || len > 1 << 30) {
        this.framing.push(`bad length ${len} for type 0x${type.toString(16)}`);
        this.broken = true;
        return;
      }
      const wanted = type === 0x45 || (type === 0x44 && this.dataRows.length < 100);
      if (!wanted) {
        if (type === 0x5a) this.readyCount++;
        this.skip = 1 + len;
        continue;
      }
      if (data.length - pos < 1 + len) break;
      const body = data.subarray(pos + 5, pos + 1 + len);
      if (type === 0x45) this.errors.push(errorFields(body));
      else if (body.length >= 6) {
        const n = body.readInt32BE(2);
        this.dataRows.push(n < 0 ? 'NULL' : body.toString('utf8', 6, 6 + n));
      }
      pos += 1 + len;
    }
    this.head = Buffer.from(data.subarray(pos));
    data = Buffer.alloc(0);
  }

  /** Call at the end of the stream. */
  finish(): void {
    if (!this.broken && (this.head.length > 0 || this.skip > 0))
      this.framing.push(
        `stream ends inside a frame (${this.head.length} header bytes, ${this.skip} to skip)`,
      );
  }
}

function errorFields(body: Buffer) {
  const f: Record<string, string> = {};
  let p = 0;
  while (p < body.length && body[p] !== 0) {
    const code = String.fromCharCode(body[p]);
    const z = body.indexOf(0, p + 1);
    if (z < 0) break;
    f[code] = body.toString('utf8', p + 1, z);
    p = z + 1;
  }
  return { severity: f.V ?? f.S ?? '', code: f.C ?? '', message: f.M ?? '' };
}

/** Plays one case on its own socket. Every wait is bounded, so a hang is a result, not a stuck test. */
export async function runCase(
  port: number,
  c: FuzzCase,
  startup: Buffer,
  opts: { reactMs: number; closeMs: number },
): Promise<CaseResult> {
  const t0 = performance.now();
  const firstSent = c.handshake ? startup : Buffer.concat([c.preamble ?? Buffer.alloc(0), c.payload]);
  const stream = new BackendStream(c.handshake ? 0 : countSslRequests(firstSent));
  const sock = net.connect({ host: '127.0.0.1', port });
  sock.setNoDelay(true);
  let closed = false;
  let wake: (() => void) | undefined;
  sock.on('data', (d: Buffer) => {
    stream.push(d);
    wake?.();
  });
  sock.on('error', () => {});
  sock.on('close', () => {
    closed = true;
    wake?.();
  });
  const waitFor = (pred: () => boolean, ms: number) =>
    new Promise<boolean>((resolve) => {
      if (pred()) return resolve(true);
      const t = setTimeout(() => {
        wake = undefined;
        resolve(pred());
      }, ms);
      wake = () => {
        if (pred()) {
          clearTimeout(t);
          wake = undefined;
          resolve(true);
        }
      };
    });
  await new Promise<void>((resolve) => {
    sock.once('connect', () => resolve());
    sock.once('close', () => resolve());
  });
  let handshakeOk = false;
  if (c.handshake && !closed) {
    sock.write(startup);
    handshakeOk = await waitFor(() => stream.readyCount > 0, opts.reactMs * 4);
  }
  const errorsBefore = stream.errors.length;
  const write = (b: Buffer) => {
    if (closed || b.length === 0) return;
    if (!c.chunk) {
      sock.write(b);
      return;
    }
    for (let i = 0; i < b.length; i += c.chunk) sock.write(b.subarray(i, i + c.chunk));
  };
  if (c.preamble) write(c.preamble);
  if (c.pauseMs) await new Promise((r) => setTimeout(r, c.pauseMs));
  write(c.payload);
  let reacted: CaseResult['reacted'] = 'none';
  if (c.mustReact) {
    await waitFor(() => closed || stream.errors.length > errorsBefore, opts.reactMs);
    if (stream.errors.length > errorsBefore) reacted = 'error';
    else if (closed) reacted = 'closed';
  }
  // The client hangs up; the proxy must close its side promptly.
  if (!closed) sock.end();
  const closedInTime = await waitFor(() => closed, opts.closeMs);
  if (!closed) sock.destroy();
  stream.finish();
  return {
    reacted,
    closed: closedInTime,
    handshakeOk,
    framing: stream.framing,
    errors: stream.errors,
    dataRows: stream.dataRows,
    ms: performance.now() - t0,
  };
}

/** How many leading SSLRequest/GSSENCRequest packets the client sent (each answered with a bare N). */
function countSslRequests(b: Buffer): number {
  let n = 0;
  let pos = 0;
  while (b.length - pos >= 8 && b.readInt32BE(pos) === 8) {
    const code = b.readInt32BE(pos + 4);
    if (code !== 80877103 && code !== 80877104) break;
    n++;
    pos += 8;
  }
  return n;
}

/** Runs tasks with at most `limit` in flight. */
export async function pool<T, R>(items: T[], limit: number, fn: (item: T, i: number) => Promise<R>) {
  const out: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        out[i] = await fn(items[i], i);
      }
    }),
  );
  return out;
}

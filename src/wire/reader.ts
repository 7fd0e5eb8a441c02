// Decoding of the few client messages the proxy opens (Query, Parse, Bind,
// Describe, Close, Execute) and of the startup packet. Every read is bounds
// checked: a malformed message is a ProtocolError, never an exception that
// escapes the connection.
import { ProtocolError } from './scanner.ts';

export class Reader {
  constructor(
    private readonly buf: Buffer,
    public pos = 5,
    private readonly end = buf.length,
  ) {}

  private need(n: number): void {
    if (this.pos + n > this.end) throw new ProtocolError('message truncated', 'malformed');
  }

  byte(): number {
    this.need(1);
    return this.buf[this.pos++];
  }

  int16(): number {
    this.need(2);
    const v = this.buf.readInt16BE(this.pos);
    this.pos += 2;
    return v;
  }

  /** The 16-bit counts of Parse and Bind: Postgres reads them with pq_getmsgint(msg, 2), unsigned (0..65535). */
  uint16(): number {
    this.need(2);
    const v = this.buf.readUInt16BE(this.pos);
    this.pos += 2;
    return v;
  }

  int32(): number {
    this.need(4);
    const v = this.buf.readInt32BE(this.pos);
    this.pos += 4;
    return v;
  }

  cstring(): string {
    const zero = this.buf.indexOf(0, this.pos);
    if (zero < 0 || zero >= this.end) throw new ProtocolError('unterminated string', 'malformed');
    const s = this.buf.toString('utf8', this.pos, zero);
    this.pos = zero + 1;
    return s;
  }

  skip(n: number): void {
    this.need(n);
    this.pos += n;
  }

  get remaining(): number {
    return this.end - this.pos;
  }
}

export function readQuery(msg: Buffer): string {
  return new Reader(msg).cstring();
}

export interface ParseMessage {
  name: string;
  query: string;
  paramTypes: number[];
}

export function readParse(msg: Buffer): ParseMessage {
  const r = new Reader(msg);
  const name = r.cstring();
  const query = r.cstring();
  const n = r.uint16();
  const paramTypes: number[] = [];
  for (let i = 0; i < n; i++) paramTypes.push(r.int32() >>> 0);
  return { name, query, paramTypes };
}

export interface BindMessage {
  portal: string;
  statement: string;
  /** Start and end offsets (in msg) of the parameter section: formats, count, values. Copied as is when re-encoding. */
  paramsStart: number;
  paramsEnd: number;
  resultFormats: number[];
  /** Where the result formats end: bytes after it are the client's, for the server to judge. */
  resultsEnd: number;
}

export function readBind(msg: Buffer): BindMessage {
  const r = new Reader(msg);
  const portal = r.cstring();
  const statement = r.cstring();
  const paramsStart = r.pos;
  const nFormats = r.uint16();
  r.skip(nFormats * 2);
  const nParams = r.uint16();
  for (let i = 0; i < nParams; i++) {
    const len = r.int32();
    if (len > 0) r.skip(len);
    else if (len < -1) throw new ProtocolError('invalid parameter length', 'malformed');
  }
  const paramsEnd = r.pos;
  const nResults = r.uint16();
  const resultFormats: number[] = [];
  for (let i = 0; i < nResults; i++) resultFormats.push(r.int16());
  return { portal, statement, paramsStart, paramsEnd, resultFormats, resultsEnd: r.pos };
}

/**
 * A Bind's parameter values as text, or undefined when any is sent in binary
 * (a shadow read re-sends them as text, and only text is safe to re-send as is).
 */
export function bindTextParams(msg: Buffer, b: BindMessage): (string | null)[] | undefined {
  const r = new Reader(msg);
  r.pos = b.paramsStart;
  const nFormats = r.uint16();
  const formats: number[] = [];
  for (let i = 0; i < nFormats; i++) formats.push(r.int16());
  if (formats.some((f) => f !== 0)) return undefined;
  const nParams = r.uint16();
  const out: (string | null)[] = [];
  for (let i = 0; i < nParams; i++) {
    const len = r.int32();
    if (len < 0) {
      out.push(null);
      continue;
    }
    out.push(msg.toString('utf8', r.pos, r.pos + len));
    r.skip(len);
  }
  return out;
}

export interface TargetMessage {
  /** 'S' statement or 'P' portal. */
  kind: 'S' | 'P';
  name: string;
}

/** Describe and Close share one layout. */
export function readTarget(msg: Buffer): TargetMessage {
  const r = new Reader(msg);
  const k = r.byte();
  if (k !== 0x53 && k !== 0x50) throw new ProtocolError(`invalid Describe/Close target ${k}`, 'malformed');
  return { kind: k === 0x53 ? 'S' : 'P', name: r.cstring() };
}

export function readExecute(msg: Buffer): { portal: string; maxRows: number } {
  const r = new Reader(msg);
  return { portal: r.cstring(), maxRows: r.int32() };
}

export interface StartupPacket {
  code: number;
  /** Startup parameters (user, database, options, ...), when code is a protocol version. */
  params: Map<string, string>;
}

/**
 * An untyped startup-phase packet: int32 length, int32 code, body. Never
 * throws on the body: like Postgres, a string runs at most to the packet's
 * end, and a bad layout is left for the server to refuse (it answers 08P01).
 */
export function readStartup(packet: Buffer): StartupPacket {
  const code = new Reader(packet, 4).int32();
  const params = new Map<string, string>();
  if (code >> 16 !== 3) return { code, params };
  const str = (from: number): [string, number] => {
    const zero = packet.indexOf(0, from);
    const end = zero < 0 ? packet.length : zero;
    return [packet.toString('utf8', from, end), end + 1];
  };
  let pos = 8;
  while (pos < packet.length && packet[pos] !== 0) {
    const [k, valueAt] = str(pos);
    if (valueAt >= packet.length) break;
    const [v, next] = str(valueAt);
    params.set(k, v);
    pos = next;
  }
  return { code, params };
}

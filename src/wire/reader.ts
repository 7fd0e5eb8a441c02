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
  const n = r.int16();
  if (n < 0) throw new ProtocolError('negative parameter type count', 'malformed');
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
}

export function readBind(msg: Buffer): BindMessage {
  const r = new Reader(msg);
  const portal = r.cstring();
  const statement = r.cstring();
  const paramsStart = r.pos;
  const nFormats = r.int16();
  if (nFormats < 0) throw new ProtocolError('negative format count', 'malformed');
  r.skip(nFormats * 2);
  const nParams = r.int16();
  if (nParams < 0) throw new ProtocolError('negative parameter count', 'malformed');
  for (let i = 0; i < nParams; i++) {
    const len = r.int32();
    if (len > 0) r.skip(len);
    else if (len < -1) throw new ProtocolError('invalid parameter length', 'malformed');
  }
  const paramsEnd = r.pos;
  const nResults = r.int16();
  if (nResults < 0) throw new ProtocolError('negative result format count', 'malformed');
  const resultFormats: number[] = [];
  for (let i = 0; i < nResults; i++) resultFormats.push(r.int16());
  return { portal, statement, paramsStart, paramsEnd, resultFormats };
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

/** An untyped startup-phase packet: int32 length, int32 code, body. */
export function readStartup(packet: Buffer): StartupPacket {
  const r = new Reader(packet, 4);
  const code = r.int32();
  const params = new Map<string, string>();
  if (code >> 16 === 3) {
    while (r.remaining > 1) {
      const k = r.cstring();
      if (k === '') break;
      params.set(k, r.cstring());
    }
  }
  return { code, params };
}

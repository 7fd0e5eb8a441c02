// The messages the proxy writes itself: server messages it makes up
// (ErrorResponse, ReadyForQuery, CommandComplete, NoData, ...) and client
// messages it injects or re-encodes (Parse, Bind, Close, Sync, Query).

export class Writer {
  private buf: Buffer;
  private pos = 0;

  constructor(size = 256) {
    this.buf = Buffer.allocUnsafe(size);
  }

  private ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.pos + n));
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }

  byte(v: number): this {
    this.ensure(1);
    this.buf[this.pos++] = v;
    return this;
  }

  int16(v: number): this {
    this.ensure(2);
    this.buf.writeInt16BE(v, this.pos);
    this.pos += 2;
    return this;
  }

  /** A count of Parse or Bind (unsigned in Postgres, up to 65535). */
  uint16(v: number): this {
    this.ensure(2);
    this.buf.writeUInt16BE(v, this.pos);
    this.pos += 2;
    return this;
  }

  int32(v: number): this {
    this.ensure(4);
    this.buf.writeInt32BE(v | 0, this.pos);
    this.pos += 4;
    return this;
  }

  cstring(s: string): this {
    const n = Buffer.byteLength(s);
    this.ensure(n + 1);
    this.buf.write(s, this.pos, 'utf8');
    this.pos += n;
    this.buf[this.pos++] = 0;
    return this;
  }

  bytes(b: Buffer): this {
    this.ensure(b.length);
    b.copy(this.buf, this.pos);
    this.pos += b.length;
    return this;
  }

  /** Finishes a typed message: type byte + length + what was written. */
  message(type: number): Buffer {
    const out = Buffer.allocUnsafe(this.pos + 5);
    out[0] = type;
    out.writeInt32BE(this.pos + 4, 1);
    this.buf.copy(out, 5, 0, this.pos);
    this.pos = 0;
    return out;
  }
}

export interface ErrorFields {
  severity: 'ERROR' | 'FATAL' | 'PANIC';
  code: string;
  message: string;
  detail?: string;
  hint?: string;
}

export function errorResponse(f: ErrorFields, type = 0x45): Buffer {
  const w = new Writer();
  w.byte(0x53).cstring(f.severity); // S
  w.byte(0x56).cstring(f.severity); // V (non-localized severity)
  w.byte(0x43).cstring(f.code); // C
  w.byte(0x4d).cstring(f.message); // M
  if (f.detail) w.byte(0x44).cstring(f.detail);
  if (f.hint) w.byte(0x48).cstring(f.hint);
  w.byte(0);
  return w.message(type);
}

export function readyForQuery(status: number): Buffer {
  return Buffer.from([0x5a, 0, 0, 0, 5, status]);
}

export function commandComplete(tag: string): Buffer {
  return new Writer().cstring(tag).message(0x43);
}

export const NO_DATA = Buffer.from([0x6e, 0, 0, 0, 4]);
export const SYNC = Buffer.from([0x53, 0, 0, 0, 4]);
export const SSL_NO = Buffer.from('N');

export function parseMessage(name: string, query: string, paramTypes: number[]): Buffer {
  const w = new Writer(query.length + 32 + paramTypes.length * 4).cstring(name).cstring(query);
  w.uint16(paramTypes.length);
  for (const t of paramTypes) w.int32(t);
  return w.message(0x50);
}

export function queryMessage(sql: string): Buffer {
  return new Writer(sql.length + 8).cstring(sql).message(0x51);
}

/** Close (type 'S' statement / 'P' portal). */
export function closeMessage(kind: 'S' | 'P', name: string): Buffer {
  return new Writer().byte(kind.charCodeAt(0)).cstring(name).message(0x43);
}

export function describeMessage(kind: 'S' | 'P', name: string): Buffer {
  return new Writer().byte(kind.charCodeAt(0)).cstring(name).message(0x44);
}

/**
 * Re-encodes a Bind with another statement name and/or result formats,
 * copying the parameter bytes and anything after the result formats (which
 * the server refuses as it would have in the original).
 */
export function rebind(
  original: Buffer,
  portal: string,
  statement: string,
  paramsStart: number,
  paramsEnd: number,
  resultFormats: number[],
  resultsEnd = original.length,
): Buffer {
  const w = new Writer(original.length + 32 + resultFormats.length * 2).cstring(portal).cstring(statement);
  w.bytes(original.subarray(paramsStart, paramsEnd));
  w.uint16(resultFormats.length);
  for (const f of resultFormats) w.int16(f);
  w.bytes(original.subarray(resultsEnd));
  return w.message(0x42);
}

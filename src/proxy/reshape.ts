// Byte-level edits of server replies to a rewritten statement, so the client
// sees exactly what the original statement would have produced.
import type { FieldOrigin, RowOrigins } from '../rules/row-origins.ts';
import { ProtocolError } from '../wire/scanner.ts';
import { commandComplete, Writer } from '../wire/writer.ts';

/** RowDescription without its last field (the mirror's row image). */
export function stripLastField(msg: Buffer): Buffer {
  const n = msg.readInt16BE(5);
  if (n < 1) return msg;
  let pos = 7;
  for (let i = 0; i < n - 1; i++) {
    const zero = msg.indexOf(0, pos);
    if (zero < 0) throw new ProtocolError('malformed RowDescription', 'server_malformed');
    pos = zero + 1 + 18;
  }
  const out = Buffer.allocUnsafe(pos);
  msg.copy(out, 0, 0, pos);
  out.writeInt32BE(pos - 1, 1);
  out.writeInt16BE(n - 1, 5);
  return out;
}

/**
 * RowDescription with each listed field naming the old table and column, as
 * when the old table is read directly. A field is only changed when its name
 * (if known) and type are the ones expected; the field count must fit, or the
 * message is left as the server sent it.
 */
export function restoreOrigins(msg: Buffer, origins: RowOrigins): Buffer {
  const n = msg.readInt16BE(5);
  const { head, tail } = origins;
  if (tail === null ? n !== head.length : n < head.length + tail.length) return msg;
  let out: Buffer | undefined;
  let pos = 7;
  for (let i = 0; i < n; i++) {
    const zero = msg.indexOf(0, pos);
    if (zero < 0 || zero + 19 > msg.length)
      throw new ProtocolError('malformed RowDescription', 'server_malformed');
    const want: FieldOrigin | null | undefined =
      i < head.length ? head[i] : tail !== null && i >= n - tail.length ? tail[i - (n - tail.length)] : null;
    const at = zero + 1;
    if (
      want &&
      msg.readUInt32BE(at + 6) === want.typeOid &&
      (!want.cast || msg.readInt32BE(at + 12) === want.typmod) &&
      (want.name === undefined || msg.toString('utf8', pos, zero) === want.name)
    ) {
      // The message may be a slice of the shared read buffer: never edit it in place.
      out ??= Buffer.from(msg);
      out.writeUInt32BE(want.table, at);
      out.writeInt16BE(want.attnum, at + 4);
      out.writeInt32BE(want.typmod, at + 12);
    }
    pos = at + 18;
  }
  return out ?? msg;
}

/** DataRow without its last column. */
export function stripLastColumn(msg: Buffer): Buffer {
  const n = msg.readInt16BE(5);
  if (n < 1) return msg;
  let pos = 7;
  for (let i = 0; i < n - 1; i++) {
    const len = msg.readInt32BE(pos);
    pos += 4 + (len > 0 ? len : 0);
  }
  const out = Buffer.allocUnsafe(pos);
  msg.copy(out, 0, 0, pos);
  out.writeInt32BE(pos - 1, 1);
  out.writeInt16BE(n - 1, 5);
  return out;
}

/** The single int8 of a one-column DataRow, in text or binary format. */
export function readCountRow(msg: Buffer, binary: boolean): number {
  const len = msg.readInt32BE(7);
  if (binary && len === 8) return Number(msg.readBigInt64BE(11));
  return Number(msg.toString('latin1', 11, 11 + len));
}

/** The row count at the end of a CommandComplete tag ("SELECT 3" -> 3). */
export function tagCount(msg: Buffer): number {
  const tag = msg.toString('latin1', 5, msg.length - 1);
  const sp = tag.lastIndexOf(' ');
  return sp < 0 ? 0 : Number(tag.slice(sp + 1));
}

export function mirrorTag(tag: 'INSERT' | 'UPDATE' | 'DELETE', count: number): Buffer {
  return commandComplete(tag === 'INSERT' ? `INSERT 0 ${count}` : `${tag} ${count}`);
}

/** The text of an ErrorResponse's message field, for logs. */
export function errorText(msg: Buffer): { code: string; message: string } {
  let code = '';
  let message = '';
  let pos = 5;
  while (pos < msg.length - 1) {
    const field = msg[pos++];
    if (field === 0) break;
    const zero = msg.indexOf(0, pos);
    if (zero < 0) break;
    const v = msg.toString('utf8', pos, zero);
    if (field === 0x43) code = v;
    else if (field === 0x4d) message = v;
    pos = zero + 1;
  }
  return { code, message };
}

export { Writer };

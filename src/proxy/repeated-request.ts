// A second SSLRequest (or GSSENCRequest) on one connection is, to Postgres, a
// startup packet asking for protocol 1234.5679 (1234.5680): it answers FATAL
// 0A000 "unsupported frontend protocol 1234.5679: server supports 3.0 to 3.N",
// where N is the server's own newest minor version. Only the server knows N,
// but a fresh upstream connection would take the same code for a first request
// and answer a bare 'N'. So the proxy asks with the same major version and
// minor 0, which reaches the same refusal, and puts the client's minor back
// into the server's answer: every other byte is the server's.

/** The packet with its version's minor set to 0 (the major version, 1234, is never supported). */
export function disguise(packet: Buffer): Buffer {
  const out = Buffer.from(packet);
  out.writeUInt16BE(0, 6);
  return out;
}

/** The server's ErrorResponse to the disguised packet, as it would have read for `code`. */
export function restore(msg: Buffer, code: number): Buffer {
  const major = code >>> 16;
  const asked = new RegExp(`(^|\\D)${major}\\.0(?!\\d)`);
  const parts: Buffer[] = [];
  let pos = 5;
  while (pos < msg.length && msg[pos] !== 0) {
    const zero = msg.indexOf(0, pos + 1);
    if (zero < 0) return msg;
    let value = msg.toString('utf8', pos + 1, zero);
    // M is the message, in the server's lc_messages language; only the version is put back.
    if (msg[pos] === 0x4d) value = value.replace(asked, `$1${major}.${code & 0xffff}`);
    parts.push(msg.subarray(pos, pos + 1), Buffer.from(`${value}\0`));
    pos = zero + 1;
  }
  const body = Buffer.concat([...parts, Buffer.from([0])]);
  const out = Buffer.allocUnsafe(body.length + 5);
  out[0] = msg[0];
  out.writeInt32BE(body.length + 4, 1);
  body.copy(out, 5);
  return out;
}

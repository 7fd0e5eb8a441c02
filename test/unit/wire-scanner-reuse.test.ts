// The server side reads into one buffer that is reused from read to read
// (net.connect onread): the scanner must not keep views of a chunk once push()
// returns, or the next read overwrites a message it is still assembling.
import { describe, expect, it } from 'vitest';
import { Action, type FrameSink, MessageScanner } from '../../src/wire/scanner.ts';

function msg(type: string, body: Buffer): Buffer {
  const out = Buffer.alloc(5 + body.length);
  out[0] = type.charCodeAt(0);
  out.writeInt32BE(4 + body.length, 1);
  body.copy(out, 5);
  return out;
}

describe('MessageScanner with a reused read buffer', () => {
  it('assembles an inspected message spanning many reads intact', () => {
    const body = Buffer.alloc(10_000);
    for (let i = 0; i < body.length; i++) body[i] = i % 251;
    const stream = Buffer.concat([msg('E', body), msg('Z', Buffer.from('I'))]);
    const seen: Buffer[] = [];
    const sink: FrameSink = {
      header: () => Action.Inspect,
      inspect: (_type, m) => {
        seen.push(Buffer.from(m));
        return undefined;
      },
    };
    const scanner = new MessageScanner(sink);
    const readBuf = Buffer.alloc(1_000);
    const forwarded: Buffer[] = [];
    for (let off = 0; off < stream.length; off += readBuf.length) {
      const n = stream.copy(readBuf, 0, off, Math.min(off + readBuf.length, stream.length));
      // Forwarded pieces are written before the next read, as the session does.
      for (const p of scanner.push(readBuf.subarray(0, n))) forwarded.push(Buffer.from(p));
      readBuf.fill(0xee);
    }
    expect(seen.map((m) => m[0])).toEqual([0x45, 0x5a]);
    expect(seen[0].equals(msg('E', body))).toBe(true);
    expect(Buffer.concat(forwarded).equals(stream)).toBe(true);
  });
});

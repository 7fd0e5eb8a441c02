import { describe, expect, it } from 'vitest';
import { StartupReader, stripChannelBinding } from '../../src/proxy/startup.ts';

function packet(code: number, body = Buffer.alloc(0)): Buffer {
  const b = Buffer.alloc(8 + body.length);
  b.writeInt32BE(b.length, 0);
  b.writeInt32BE(code, 4);
  body.copy(b, 8);
  return b;
}
const SSL = packet(80877103);
const GSS = packet(80877104);
const startup = packet(196608, Buffer.from('user\0app\0\0'));

describe('startup reader', () => {
  it('reads a startup packet split at every byte', () => {
    for (let cut = 1; cut < startup.length; cut++) {
      const r = new StartupReader();
      expect(r.push(startup.subarray(0, cut))).toEqual([]);
      const [e] = r.push(startup.subarray(cut));
      expect(e.kind).toBe('startup');
      if (e.kind === 'startup') expect(e.startup.params.get('user')).toBe('app');
    }
  });

  it('GSSENCRequest, then SSLRequest, then startup, each after its answer; bytes after the startup kept for later', () => {
    const r = new StartupReader();
    const tail = Buffer.from('Q\0\0\0\x05\0');
    expect(r.push(GSS)).toEqual([{ kind: 'gssenc', trailing: false }]);
    expect(r.push(SSL)).toEqual([{ kind: 'ssl', trailing: false }]);
    const [e] = r.push(Buffer.concat([startup, tail]));
    expect(e.kind === 'startup' && e.rest).toEqual(tail);
    // Sent together, the SSLRequest is clear text behind the GSSENCRequest.
    expect(new StartupReader().push(Buffer.concat([GSS, SSL]))).toEqual([{ kind: 'gssenc', trailing: true }]);
  });

  it('marks bytes sent in the clear right behind an SSLRequest', () => {
    const r = new StartupReader();
    expect(r.push(Buffer.concat([SSL, startup]))[0]).toEqual({ kind: 'ssl', trailing: true });
  });

  it('drops a length Postgres drops (8 to 10004 are read), as node-postgres early Terminate', () => {
    for (const len of [0, 4, 7, 10_005]) {
      const b = Buffer.alloc(8);
      b.writeInt32BE(len, 0);
      expect(new StartupReader().push(b)).toEqual([
        { kind: 'drop', why: `invalid length of startup packet (${len})` },
      ]);
    }
    expect(new StartupReader().push(Buffer.from('X\0\0\0\x04'))[0].kind).toBe('drop');
    const r = new StartupReader();
    const long = packet(196608, Buffer.alloc(10_004 - 8));
    expect(r.push(long.subarray(0, 100))).toEqual([]);
    expect(r.partial).toBe(true);
  });

  it('a repeated encryption request is a startup for the server to refuse, disguised as version 1234.0', () => {
    const r = new StartupReader();
    expect(r.push(SSL)).toEqual([{ kind: 'ssl', trailing: false }]);
    const [e] = r.push(SSL);
    expect(e.kind === 'startup' && [e.repeated, e.packet.readUInt16BE(6), e.violation]).toEqual([
      80877103,
      0,
      'unsupported frontend protocol 1234.5679',
    ]);
  });

  it('after TLS is taken up, either request is a repeated one', () => {
    const r = new StartupReader();
    r.push(SSL);
    r.tlsTaken();
    expect(r.push(GSS)[0].kind).toBe('startup');
  });

  it('an unsupported protocol version goes to the server, marked as a violation', () => {
    const [e] = new StartupReader().push(packet(0x00020000, Buffer.from('user\0app\0\0')));
    expect(e.kind === 'startup' && [e.violation, e.repeated]).toEqual([
      'unsupported frontend protocol 2.0',
      undefined,
    ]);
  });

  it('a CancelRequest ends the reading', () => {
    const cancel = packet(80877102, Buffer.alloc(8, 1));
    const [e] = new StartupReader().push(Buffer.concat([cancel, startup]));
    expect(e.kind).toBe('cancel');
  });
});

describe('channel binding hidden from clients', () => {
  it('drops SCRAM-SHA-256-PLUS from AuthenticationSASL and leaves other messages alone', () => {
    const body = Buffer.from('\0\0\0\x0aSCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0\0', 'latin1');
    const msg = Buffer.concat([Buffer.from([0x52, 0, 0, 0, body.length + 4]), body]);
    const out = stripChannelBinding(msg)!;
    expect(out.toString('latin1', 9)).toBe('SCRAM-SHA-256\0\0');
    expect(out.readInt32BE(1)).toBe(out.length - 1);
    expect(stripChannelBinding(out)).toBeUndefined();
  });
});

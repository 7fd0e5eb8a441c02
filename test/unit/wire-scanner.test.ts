// MessageScanner: framing of a typed message stream whatever the chunking,
// Pass vs Inspect, replacement and drop, and the length checks.
import { describe, expect, it } from 'vitest';
import { Action, type FrameSink, MessageScanner, ProtocolError } from '../../src/wire/scanner.ts';

function msg(type: string, body: Buffer | string = ''): Buffer {
  const b = typeof body === 'string' ? Buffer.from(body) : body;
  const out = Buffer.alloc(5 + b.length);
  out[0] = type.charCodeAt(0);
  out.writeInt32BE(4 + b.length, 1);
  b.copy(out, 5);
  return out;
}

// A server-like stream: empty bodies, short ones, one larger than a socket chunk.
const big = Buffer.alloc(70_000, 0x61);
const STREAM = [
  msg('1'),
  msg('2'),
  msg(
    'T',
    Buffer.from(
      '\x00\x01a\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x17\x00\x04\xff\xff\xff\xff\x00\x00',
      'latin1',
    ),
  ),
  msg('D', 'row one'),
  msg('D', big),
  msg('C', 'SELECT 2\0'),
  msg('Z', 'I'),
];
const WHOLE = Buffer.concat(STREAM);

interface Recorder extends FrameSink {
  headers: [string, number][];
  inspected: Buffer[];
}

function recorder(
  decide: (type: string) => Action,
  answer: (type: string, m: Buffer) => Buffer | Buffer[] | null | undefined = () => undefined,
): Recorder {
  const r: Recorder = {
    headers: [],
    inspected: [],
    header(type, length) {
      r.headers.push([String.fromCharCode(type), length]);
      return decide(String.fromCharCode(type));
    },
    inspect(type, m) {
      r.inspected.push(Buffer.from(m));
      return answer(String.fromCharCode(type), m);
    },
  };
  return r;
}

/** Feeds the chunks and returns everything the scanner emitted, joined. */
function run(scanner: MessageScanner, chunks: Buffer[]): Buffer {
  const out: Buffer[] = [];
  for (const c of chunks) out.push(...scanner.push(c));
  return Buffer.concat(out);
}

/** Every way to cut `data` in two, plus one-byte chunks. */
function* splits(data: Buffer): Generator<Buffer[]> {
  for (let i = 0; i <= data.length; i++) yield [data.subarray(0, i), data.subarray(i)];
  yield [...data].map((b) => Buffer.from([b]));
}

// Splitting the 70 KB message at every byte would be slow and says nothing new:
// the exhaustive splits run over a stream without it.
const SMALL = Buffer.concat(STREAM.filter((m) => m.length < 1000));

describe('MessageScanner round trips', () => {
  it('passes every byte through unchanged, split at every boundary', () => {
    for (const chunks of splits(SMALL)) {
      const sink = recorder(() => Action.Pass);
      const s = new MessageScanner(sink);
      expect(run(s, chunks).equals(SMALL)).toBe(true);
      expect(sink.headers.map((h) => h[0]).join('')).toBe('12TDCZ');
      expect(sink.inspected).toEqual([]);
      expect(s.idle).toBe(true);
    }
  });

  it('inspects every message whole and forwards it unchanged, split at every boundary', () => {
    for (const chunks of splits(SMALL)) {
      const sink = recorder(() => Action.Inspect);
      const s = new MessageScanner(sink);
      expect(run(s, chunks).equals(SMALL)).toBe(true);
      expect(sink.inspected.map((b) => b.toString('hex'))).toEqual(
        STREAM.filter((m) => m.length < 1000).map((m) => m.toString('hex')),
      );
      expect(s.idle).toBe(true);
    }
  });

  it('handles a message larger than a chunk, passed or inspected, in socket-sized chunks', () => {
    for (const decide of [() => Action.Pass, (t: string) => (t === 'D' ? Action.Inspect : Action.Pass)]) {
      const sink = recorder(decide);
      const s = new MessageScanner(sink);
      const chunks: Buffer[] = [];
      for (let i = 0; i < WHOLE.length; i += 16_384) chunks.push(WHOLE.subarray(i, i + 16_384));
      expect(run(s, chunks).equals(WHOLE)).toBe(true);
      expect(sink.headers).toContainEqual(['D', big.length + 4]);
    }
  });

  it('reports each header with its length, in order', () => {
    const sink = recorder(() => Action.Pass);
    new MessageScanner(sink).push(WHOLE);
    expect(sink.headers).toEqual(STREAM.map((m) => [String.fromCharCode(m[0]), m.length - 1]));
  });

  it('is idle only between messages', () => {
    const s = new MessageScanner(recorder(() => Action.Pass));
    s.push(WHOLE.subarray(0, 3));
    expect(s.idle).toBe(false);
    s.push(WHOLE.subarray(3, 12));
    expect(s.idle).toBe(false);
    s.push(WHOLE.subarray(12));
    expect(s.idle).toBe(true);
  });
});

describe('Pass vs Inspect', () => {
  it('forwards passed messages as slices of the incoming chunk, without copying', () => {
    const s = new MessageScanner(recorder(() => Action.Pass));
    const out = s.push(WHOLE);
    expect(out).toHaveLength(1);
    expect(out[0].buffer).toBe(WHOLE.buffer);
  });

  it('inspects only what the sink asks for; the rest stays in place', () => {
    const sink = recorder((t) => (t === 'C' ? Action.Inspect : Action.Pass));
    const out = new MessageScanner(sink).push(WHOLE);
    expect(sink.inspected.map((m) => m.toString('latin1', 5))).toEqual(['SELECT 2\0']);
    expect(Buffer.concat(out).equals(WHOLE)).toBe(true);
    // Unchanged inspected messages do not break the run of slices.
    expect(out).toHaveLength(1);
  });

  it('an inspected message split across chunks is not corrupted when the first chunk is reused', () => {
    const sink = recorder((t) => (t === 'C' ? Action.Inspect : Action.Pass));
    const s = new MessageScanner(sink);
    const c = msg('C', 'UPDATE 7\0');
    const first = Buffer.from(c.subarray(0, 8));
    s.push(first);
    first.fill(0); // a socket may hand the same memory out again
    s.push(Buffer.from(c.subarray(8)));
    expect(sink.inspected[0].equals(c)).toBe(true);
  });

  it('the sink may switch decisions from message to message (as the reply queue does)', () => {
    let n = 0;
    const sink = recorder(() => (n++ % 2 ? Action.Inspect : Action.Pass));
    for (const chunks of splits(SMALL)) {
      n = 0;
      sink.inspected.length = 0;
      expect(run(new MessageScanner(sink), chunks).equals(SMALL)).toBe(true);
      expect(sink.inspected).toHaveLength(3);
    }
  });
});

describe('replacement and drop', () => {
  const replaced = Buffer.concat([
    msg('1'),
    msg('2'),
    STREAM[2],
    msg('D', 'row one'),
    msg('C', 'INSERT 0 1\0'),
    msg('Z', 'I'),
  ]);
  const small = Buffer.concat([
    msg('1'),
    msg('2'),
    STREAM[2],
    msg('D', 'row one'),
    msg('C', 'SELECT 2\0'),
    msg('Z', 'I'),
  ]);

  it('replaces an inspected message, split at every boundary', () => {
    for (const chunks of splits(small)) {
      const sink = recorder(
        (t) => (t === 'C' ? Action.Inspect : Action.Pass),
        () => msg('C', 'INSERT 0 1\0'),
      );
      expect(run(new MessageScanner(sink), chunks).equals(replaced)).toBe(true);
    }
  });

  it('drops an inspected message (null), split at every boundary', () => {
    const expected = Buffer.concat([msg('1'), msg('2'), STREAM[2], msg('C', 'SELECT 2\0'), msg('Z', 'I')]);
    for (const chunks of splits(small)) {
      const sink = recorder(
        (t) => (t === 'D' ? Action.Inspect : Action.Pass),
        () => null,
      );
      expect(run(new MessageScanner(sink), chunks).equals(expected)).toBe(true);
    }
  });

  it('expands one message into several, in place', () => {
    const sink = recorder(
      (t) => (t === '2' ? Action.Inspect : Action.Pass),
      (_t, m) => [msg('N', 'notice\0'), m, msg('N', 'after\0')],
    );
    const out = Buffer.concat(new MessageScanner(sink).push(small));
    expect(
      out.equals(
        Buffer.concat([msg('1'), msg('N', 'notice\0'), msg('2'), msg('N', 'after\0'), small.subarray(10)]),
      ),
    ).toBe(true);
  });
});

describe('length checks', () => {
  it('refuses a message longer than the limit, before buffering it', () => {
    const sink = recorder(() => Action.Inspect);
    const s = new MessageScanner(sink, 1000);
    const header = Buffer.from([0x51, 0, 0, 0x03, 0xe9]); // length 1001
    let err: unknown;
    try {
      s.push(header);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ProtocolError);
    expect((err as ProtocolError).reason).toBe('message_too_large');
    expect((err as Error).message).toBe('message of 1001 bytes exceeds the limit of 1000');
    expect(sink.headers).toEqual([]);
  });

  it('accepts a message exactly at the limit', () => {
    const sink = recorder(() => Action.Inspect);
    const m = msg('Q', Buffer.alloc(996, 0x20));
    expect(m.readInt32BE(1)).toBe(1000);
    expect(Buffer.concat(new MessageScanner(sink, 1000).push(m)).equals(m)).toBe(true);
  });

  it.each([
    ['zero', 0],
    ['three', 3],
    ['negative', -1],
    ['int32 min', -0x80000000],
  ])('refuses a length field of %s', (_name, len) => {
    const bad = Buffer.alloc(5);
    bad[0] = 0x51;
    bad.writeInt32BE(len, 1);
    const s = new MessageScanner(recorder(() => Action.Pass));
    expect(() => s.push(Buffer.concat([msg('S'), bad]))).toThrow(ProtocolError);
    const s2 = new MessageScanner(recorder(() => Action.Pass));
    s2.push(bad.subarray(0, 2));
    expect(() => s2.push(bad.subarray(2))).toThrow(/invalid message length/);
  });

  it('accepts the minimum length of 4 (a body-less message)', () => {
    const out = new MessageScanner(recorder(() => Action.Inspect)).push(msg('S'));
    expect(Buffer.concat(out).equals(msg('S'))).toBe(true);
  });
});

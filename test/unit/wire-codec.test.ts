// Reader and writer round trips. The fixtures (test/fixtures/wire) were encoded
// by pg-protocol, node-postgres's own serializer: the reader must decode them
// and the writer must produce the very same bytes. Server messages the proxy
// makes up are decoded back with pg-protocol's parser.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { serialize } from 'pg-protocol';
import type { BackendMessage } from 'pg-protocol/dist/messages.js';
import { Parser } from 'pg-protocol/dist/parser.js';
import { describe, expect, it } from 'vitest';
import {
  Reader,
  readBind,
  readExecute,
  readParse,
  readQuery,
  readStartup,
  readTarget,
} from '../../src/wire/reader.ts';
import { ProtocolError } from '../../src/wire/scanner.ts';
import {
  closeMessage,
  commandComplete,
  describeMessage,
  errorResponse,
  NO_DATA,
  parseMessage,
  queryMessage,
  readyForQuery,
  rebind,
  SYNC,
} from '../../src/wire/writer.ts';

interface Fixture {
  name: string;
  kind: 'parse' | 'bind' | 'target' | 'execute' | 'query' | 'startup';
  hex: string;
  // biome-ignore lint/suspicious/noExplicitAny: fixture shapes differ by kind
  decoded: any;
}

const fixtures: Fixture[] = JSON.parse(
  readFileSync(path.resolve(import.meta.dirname, '../fixtures/wire/frontend-messages.json'), 'utf8'),
);
const of = (kind: Fixture['kind']) =>
  fixtures.filter((f) => f.kind === kind).map((f) => [f.name, f] as const);
const bytes = (f: Fixture) => Buffer.from(f.hex, 'hex');

/** Decodes server messages with pg-protocol's parser. */
function decode(...bufs: Buffer[]): BackendMessage[] {
  const out: BackendMessage[] = [];
  new Parser().parse(Buffer.concat(bufs), (m) => out.push(m));
  return out;
}

/** Formats and values of a Bind's parameter section (as readBind delimits it). */
function params(msg: Buffer, start: number, end: number) {
  const r = new Reader(msg, start, end);
  const formats = Array.from({ length: r.int16() }, () => r.int16());
  const values: (string | null)[] = [];
  const n = r.int16();
  for (let i = 0; i < n; i++) {
    const len = r.int32();
    if (len < 0) {
      values.push(null);
      continue;
    }
    const v = msg.subarray(r.pos, r.pos + len);
    values.push((formats[i] ?? formats[0] ?? 0) === 1 ? v.toString('hex') : v.toString('utf8'));
    r.skip(len);
  }
  expect(r.remaining).toBe(0);
  return { formats, values };
}

describe('fixtures are what pg-protocol writes today', () => {
  it('re-encodes the same bytes', () => {
    const again: Record<string, Buffer> = {
      'parse-unnamed': serialize.parse({ text: 'SELECT 1' }),
      'query-multi': serialize.query('SELECT 1; SELECT 2'),
      'execute-row-limit': serialize.execute({ portal: 'cur', rows: 100 }),
      'close-portal': serialize.close({ type: 'P', name: 'p1' }),
      'bind-text-params': serialize.bind({ statement: 'by_id', values: ['42', null, 'x'] }),
    };
    for (const [name, b] of Object.entries(again)) {
      expect(b.toString('hex'), name).toBe(fixtures.find((f) => f.name === name)!.hex);
    }
  });
});

describe('Parse', () => {
  it.each(of('parse'))('%s: read, then written back byte for byte', (_n, f) => {
    const p = readParse(bytes(f));
    expect(p).toEqual(f.decoded);
    expect(parseMessage(p.name, p.query, p.paramTypes).equals(bytes(f))).toBe(true);
  });
});

describe('Bind', () => {
  it.each(of('bind'))('%s: read, then re-encoded unchanged by rebind', (_n, f) => {
    const msg = bytes(f);
    const b = readBind(msg);
    expect({ portal: b.portal, statement: b.statement, resultFormats: b.resultFormats }).toEqual({
      portal: f.decoded.portal,
      statement: f.decoded.statement,
      resultFormats: f.decoded.resultFormats,
    });
    expect(params(msg, b.paramsStart, b.paramsEnd)).toEqual({
      formats: f.decoded.paramFormats,
      values: f.decoded.values,
    });
    expect(rebind(msg, b.portal, b.statement, b.paramsStart, b.paramsEnd, b.resultFormats).equals(msg)).toBe(
      true,
    );
  });

  it('rebind renames the statement and changes result formats, parameter bytes copied as they are', () => {
    const f = fixtures.find((x) => x.name === 'bind-text-params')!;
    const msg = bytes(f);
    const b = readBind(msg);
    const out = rebind(msg, 'portal_x', '__sy_7', b.paramsStart, b.paramsEnd, [0, 1]);
    const again = readBind(out);
    expect(again.portal).toBe('portal_x');
    expect(again.statement).toBe('__sy_7');
    expect(again.resultFormats).toEqual([0, 1]);
    expect(params(out, again.paramsStart, again.paramsEnd)).toEqual(params(msg, b.paramsStart, b.paramsEnd));
    expect(out.readInt32BE(1)).toBe(out.length - 1);
  });
});

describe('Describe and Close', () => {
  it.each(of('target'))('%s: read, then written back byte for byte', (name, f) => {
    const t = readTarget(bytes(f));
    expect(t).toEqual(f.decoded);
    const write = name.startsWith('describe') ? describeMessage : closeMessage;
    expect(write(t.kind, t.name).equals(bytes(f))).toBe(true);
  });

  it('refuses a target that is neither S nor P', () => {
    const bad = Buffer.from(bytes(fixtures.find((x) => x.name === 'close-portal')!));
    bad[5] = 0x58;
    expect(() => readTarget(bad)).toThrow(ProtocolError);
  });
});

describe('Execute, Query, Sync', () => {
  it.each(of('execute'))('%s', (_n, f) => {
    expect(readExecute(bytes(f))).toEqual(f.decoded);
  });

  it.each(of('query'))('%s: read, then written back byte for byte', (_n, f) => {
    const sql = readQuery(bytes(f));
    expect(sql).toBe(f.decoded.sql);
    expect(queryMessage(sql).equals(bytes(f))).toBe(true);
  });

  it('writes Query with multi-byte UTF-8 (length in bytes, not characters)', () => {
    const sql = "SELECT 'naïve ✓ 🐘'";
    expect(queryMessage(sql).equals(serialize.query(sql))).toBe(true);
    expect(readQuery(queryMessage(sql))).toBe(sql);
  });

  it('SYNC is the Sync message', () => {
    expect(SYNC.equals(serialize.sync())).toBe(true);
  });
});

describe('startup packets', () => {
  it.each(of('startup'))('%s', (_n, f) => {
    const s = readStartup(bytes(f));
    expect(s.code).toBe(f.decoded.code);
    expect(Object.fromEntries(s.params)).toEqual(f.decoded.params);
  });

  it('reads a protocol 3.2 startup with _pq_ options', () => {
    const body = Buffer.from('user\0app\0_pq_.x\0on\0\0');
    const p = Buffer.alloc(8 + body.length);
    p.writeInt32BE(p.length, 0);
    p.writeInt32BE(196610, 4);
    body.copy(p, 8);
    const s = readStartup(p);
    expect(s.code).toBe(196610);
    expect(Object.fromEntries(s.params)).toEqual({ user: 'app', '_pq_.x': 'on' });
  });

  it('reads an unterminated parameter to the packet end, as Postgres does (the server refuses the layout)', () => {
    const body = Buffer.from('user\0app\0database\0ap');
    const p = Buffer.alloc(8 + body.length);
    p.writeInt32BE(p.length, 0);
    p.writeInt32BE(196608, 4);
    body.copy(p, 8);
    expect(Object.fromEntries(readStartup(p).params)).toEqual({ user: 'app', database: 'ap' });
    // A name with no value behind it is dropped, never read past the end.
    const noValue = Buffer.concat([p.subarray(0, 8), Buffer.from('user\0app\0database\0')]);
    noValue.writeInt32BE(noValue.length, 0);
    expect(Object.fromEntries(readStartup(noValue).params)).toEqual({ user: 'app' });
  });
});

describe('malformed client messages are ProtocolErrors, never crashes', () => {
  const parse = bytes(fixtures.find((x) => x.name === 'parse-named-typed')!);
  const bind = bytes(fixtures.find((x) => x.name === 'bind-text-params')!);

  it('every truncation of a Parse or a Bind', () => {
    for (const [read, msg] of [
      [readParse, parse],
      [readBind, bind],
    ] as const) {
      for (let cut = 5; cut < msg.length; cut++) {
        const m = Buffer.from(msg.subarray(0, cut));
        m.writeInt32BE(cut - 1, 1);
        let err: unknown;
        try {
          read(m);
        } catch (e) {
          err = e;
        }
        expect(err, `cut at ${cut}`).toBeInstanceOf(ProtocolError);
        expect((err as ProtocolError).reason).toBe('malformed');
      }
    }
  });

  it('counts past 32767 in a Bind are unsigned (65535 formats need their bytes), lengths below -1 refused', () => {
    const b = readBind(bind);
    const manyFormats = Buffer.from(bind);
    manyFormats.writeUInt16BE(0xffff, b.paramsStart);
    expect(() => readBind(manyFormats)).toThrow(/message truncated/);
    const negLen = Buffer.from(bind);
    // First parameter value length: after format count (2) + 3 formats (6) + param count (2).
    negLen.writeInt32BE(-2, b.paramsStart + 10);
    expect(() => readBind(negLen)).toThrow(/invalid parameter length/);
  });

  it('a parameter type count past 32767 in a Parse is unsigned', () => {
    const m = Buffer.from(parse);
    m.writeUInt16BE(0xffff, m.length - 10);
    expect(() => readParse(m)).toThrow(/message truncated/);
  });
});

describe('Parse and Bind with up to 65535 parameters (16-bit counts are unsigned in Postgres)', () => {
  it.each([32768, 40000, 65535])(
    '%i parameter types: read and written back as pg-protocol writes them',
    (n) => {
      const types = Array.from({ length: n }, (_, i) => 23 + (i % 3));
      const msg = serialize.parse({ name: 's', text: 'SELECT 1', types });
      const p = readParse(msg);
      expect(p.paramTypes.length).toBe(n);
      expect(p.paramTypes.slice(0, 3)).toEqual([23, 24, 25]);
      expect(parseMessage(p.name, p.query, p.paramTypes).equals(msg)).toBe(true);
    },
  );

  it.each([32768, 40000, 65535])(
    'a Bind with %i values: formats and values read, rebind writes the counts back',
    (n) => {
      const values = Array.from({ length: n }, (_, i) => String(i));
      const msg = serialize.bind({ portal: 'p', statement: 's', values });
      const b = readBind(msg);
      expect(msg.readUInt16BE(b.paramsStart)).toBe(n);
      expect(b.resultFormats).toEqual([0]);
      expect(
        rebind(msg, b.portal, b.statement, b.paramsStart, b.paramsEnd, b.resultFormats).equals(msg),
      ).toBe(true);
      const many = Array.from({ length: 65535 }, (_, i) => i % 2);
      const out = rebind(msg, 'p', '__sy_1', b.paramsStart, b.paramsEnd, many);
      const back = readBind(out);
      expect(back.statement).toBe('__sy_1');
      expect(back.resultFormats).toEqual(many);
    },
  );

  it('bytes after the result formats survive a rebind, for the server to refuse', () => {
    const msg = serialize.bind({ portal: '', statement: 's', values: ['1'] });
    const junk = Buffer.concat([msg, Buffer.from([1, 2, 3])]);
    junk.writeInt32BE(junk.length - 1, 1);
    const b = readBind(junk);
    const out = rebind(junk, '', 't', b.paramsStart, b.paramsEnd, b.resultFormats, b.resultsEnd);
    expect(out.subarray(-3)).toEqual(Buffer.from([1, 2, 3]));
    expect(out.length).toBe(junk.length);
  });
});

describe('server messages the proxy writes', () => {
  it('ErrorResponse decodes with every field', () => {
    const [e] = decode(
      errorResponse({
        severity: 'FATAL',
        code: '08001',
        message: 'switchyard: could not connect — ✓',
        detail: 'the detail',
        hint: 'the hint',
      }),
    ) as unknown as [Record<string, string>];
    expect(e.name).toBe('error');
    expect(e.severity).toBe('FATAL');
    expect(e.code).toBe('08001');
    expect(e.message).toBe('switchyard: could not connect — ✓');
    expect(e.detail).toBe('the detail');
    expect(e.hint).toBe('the hint');
  });

  it('ErrorResponse written as a NoticeResponse (type N)', () => {
    const [n] = decode(
      errorResponse({ severity: 'ERROR', code: '01000', message: 'note' }, 0x4e),
    ) as unknown as [Record<string, string>];
    expect(n.name).toBe('notice');
    expect(n.message).toBe('note');
  });

  it('ReadyForQuery, CommandComplete and NoData decode as written', () => {
    const msgs = decode(
      readyForQuery(0x54),
      commandComplete('UPDATE 3'),
      NO_DATA,
      readyForQuery(0x49),
    ) as unknown as Record<string, unknown>[];
    expect(msgs.map((m) => m.name)).toEqual(['readyForQuery', 'commandComplete', 'noData', 'readyForQuery']);
    expect(msgs[0].status).toBe('T');
    expect(msgs[1].text).toBe('UPDATE 3');
    expect(msgs[3].status).toBe('I');
  });
});

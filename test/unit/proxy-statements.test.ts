import { describe, expect, it } from 'vitest';
import { Kind, ReplyQueue } from '../../src/proxy/reply-queue.ts';
import type { Plan } from '../../src/proxy/rules-port.ts';
import { INTERNAL_PREFIX, StatementRegistry } from '../../src/proxy/statements.ts';

const plan = (sql: string, rewritten: boolean): Plan => ({
  sql,
  rewritten,
  route: rewritten ? 'mirrored_write' : 'passthrough',
  mapping: rewritten ? 'm' : '',
  statements: [],
});

/** The statement names of the Close messages, in order. */
const closed = (msgs: Buffer[]) => msgs.map((m) => m.toString('utf8', 6, m.length - 1));

describe('statement registry', () => {
  it('a statement prepared rewritten is known by its own name; a re-plan that changes the text gets an internal one', () => {
    const q = new ReplyQueue();
    const r = new StatementRegistry(q);
    expect(r.prepare('s1', 'INSERT x', [], plan('WITH ... INSERT x', true), 1)).toEqual([]);
    expect(r.everRewritten).toBe(true);
    const info = r.statement('s1')!;
    expect(info.serverName).toBe('s1');
    // Same text under a new version: nothing to prepare.
    expect(r.replanned(info, plan('WITH ... INSERT x', true), 2)).toBeUndefined();
    // Kill switch: the text changes back to the client's.
    const name = r.replanned(info, plan('INSERT x', false), 3);
    expect(name?.startsWith(INTERNAL_PREFIX)).toBe(true);
    expect(info).toMatchObject({ serverName: name, serverSql: 'INSERT x', version: 3 });
  });

  it('dropping a statement closes every internal name it had, replies swallowed', () => {
    const q = new ReplyQueue();
    const r = new StatementRegistry(q);
    r.prepare('s1', 'INSERT x', [], plan('W1', true), 1);
    const info = r.statement('s1')!;
    const a = r.replanned(info, plan('INSERT x', false), 2)!;
    const b = r.replanned(info, plan('W1', true), 3)!;
    const closes = r.drop('s1');
    expect(closed(closes)).toEqual([a, b]);
    expect([...q.entries()].map((e) => [e.kind, e.swallow])).toEqual([
      [Kind.Close, true],
      [Kind.Close, true],
    ]);
    expect(r.statement('s1')).toBeUndefined();
    expect(r.drop('s1')).toEqual([]);
  });

  it('a Parse over an existing name retires the old internal names', () => {
    const q = new ReplyQueue();
    const r = new StatementRegistry(q);
    r.prepare('', 'INSERT x', [], plan('W1', true), 1);
    const a = r.replanned(r.statement('')!, plan('INSERT x', false), 2)!;
    expect(closed(r.prepare('', 'SELECT 1', [], undefined, 2))).toEqual([a]);
    expect(r.statement('')?.serverName).toBe('');
  });

  it('DISCARD ALL forgets statements without closing anything (the server dropped them)', () => {
    const q = new ReplyQueue();
    const r = new StatementRegistry(q);
    r.prepare('s1', 'INSERT x', [], plan('W1', true), 1);
    r.replanned(r.statement('s1')!, plan('INSERT x', false), 2);
    r.dropAll();
    expect(r.statement('s1')).toBeUndefined();
    expect(q.length).toBe(0);
  });

  it('portals end with the transaction', () => {
    const r = new StatementRegistry(new ReplyQueue());
    r.bindPortal('p', { shape: { kind: 'forward' }, observer: undefined as never, binary: false });
    expect(r.portal('p')).toBeDefined();
    r.endTransaction();
    expect(r.portal('p')).toBeUndefined();
  });
});

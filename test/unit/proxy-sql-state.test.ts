import { beforeAll, describe, expect, it } from 'vitest';
import { parseDeallocate } from '../../src/proxy/commands/deallocate.ts';
import { parseSavepoint } from '../../src/proxy/commands/savepoint.ts';
import { searchPathFromOptions } from '../../src/proxy/commands/startup-options.ts';
import type { SessionRules } from '../../src/proxy/rules-port.ts';
import { SessionSqlState, TX_FAILED, TX_IDLE } from '../../src/proxy/sql-state.ts';
import { parseSearchPath, searchPathChange } from '../../src/rules/planner.ts';
import { loadParser } from '../../src/sql/parse.ts';

const T = 0x54; // 'T': in a transaction
const rules = { searchPathChange, parseSearchPath } as unknown as SessionRules;
const commandComplete = (tag: string) => {
  const b = Buffer.alloc(6 + tag.length);
  b[0] = 0x43;
  b.writeInt32BE(5 + tag.length, 1);
  b.write(tag, 5, 'latin1');
  return b;
};

/** Feeds statements as a session would: each followed, then its CommandComplete and ReadyForQuery. */
function run(state: SessionSqlState, steps: [sql: string, tag: string, status: number][]): void {
  for (const [sql, tag, status] of steps) {
    state.follow(sql, rules);
    state.commandComplete(commandComplete(tag));
    state.ready(status);
  }
}

beforeAll(loadParser);

describe('session SQL state', () => {
  it('SET changes the path for the statements after it; RESET returns to the startup value', () => {
    const s = new SessionSqlState('app');
    s.startWith(['app_schema', 'public']);
    run(s, [['SET search_path TO shadow, public', 'SET', TX_IDLE]]);
    expect(s.searchPath).toEqual(['shadow', 'public']);
    run(s, [['RESET search_path', 'RESET', TX_IDLE]]);
    expect(s.searchPath).toEqual(['app_schema', 'public']);
  });

  it('SET LOCAL lasts until the transaction ends', () => {
    const s = new SessionSqlState('app');
    run(s, [
      ['BEGIN', 'BEGIN', T],
      ['SET LOCAL search_path TO shadow', 'SET', T],
    ]);
    expect(s.searchPath).toEqual(['shadow']);
    run(s, [['COMMIT', 'COMMIT', TX_IDLE]]);
    expect(s.searchPath).toEqual(['$user', 'public']);
  });

  it('ROLLBACK undoes a SET made in the transaction; COMMIT keeps it', () => {
    const s = new SessionSqlState('app');
    run(s, [
      ['BEGIN', 'BEGIN', T],
      ['SET search_path TO shadow', 'SET', T],
      ['ROLLBACK', 'ROLLBACK', TX_IDLE],
    ]);
    expect(s.searchPath).toEqual(['$user', 'public']);
    run(s, [
      ['BEGIN', 'BEGIN', T],
      ['SET search_path TO shadow', 'SET', T],
      ['COMMIT', 'COMMIT', TX_IDLE],
    ]);
    expect(s.searchPath).toEqual(['shadow']);
  });

  it('a failed transaction that ends undoes its SET', () => {
    const s = new SessionSqlState('app');
    run(s, [
      ['BEGIN', 'BEGIN', T],
      ['SET search_path TO shadow', 'SET', T],
      ['SELECT 1/0', '', TX_FAILED],
      ['COMMIT', 'ROLLBACK', TX_IDLE],
    ]);
    expect(s.searchPath).toEqual(['$user', 'public']);
  });

  it('ROLLBACK TO SAVEPOINT restores the path at the savepoint; RELEASE forgets it', () => {
    const s = new SessionSqlState('app');
    run(s, [
      ['BEGIN', 'BEGIN', T],
      ['SET search_path TO a', 'SET', T],
      ['SAVEPOINT "Sp"', 'SAVEPOINT', T],
      ['SET search_path TO b', 'SET', T],
      ['ROLLBACK TO SAVEPOINT "Sp"', 'ROLLBACK', T],
    ]);
    expect(s.searchPath).toEqual(['a']);
    run(s, [
      ['SAVEPOINT x', 'SAVEPOINT', T],
      ['RELEASE x', 'RELEASE', T],
      ['SET search_path TO c', 'SET', T],
      ['ROLLBACK TO x', 'ROLLBACK', T],
    ]);
    // x was released: ROLLBACK TO x fails on the server and changes nothing here.
    expect(s.searchPath).toEqual(['c']);
  });

  it('ready() reports the end of a transaction once', () => {
    const s = new SessionSqlState('app');
    expect(s.ready(T)).toBe(false);
    expect(s.ready(T)).toBe(false);
    expect(s.ready(TX_IDLE)).toBe(true);
    expect(s.ready(TX_IDLE)).toBe(false);
  });
});

describe('statement kinds that change session state', () => {
  it('savepoint commands, with the server folding of names', () => {
    expect(parseSavepoint('SAVEPOINT Foo')).toEqual({ verb: 'savepoint', name: 'foo' });
    expect(parseSavepoint('release savepoint "Foo"')).toEqual({ verb: 'release', name: 'Foo' });
    expect(parseSavepoint('ROLLBACK WORK TO SAVEPOINT a;')).toEqual({ verb: 'rollback', name: 'a' });
    expect(parseSavepoint('ROLLBACK')).toBeUndefined();
  });

  it('DEALLOCATE and DISCARD ALL', () => {
    expect(parseDeallocate('DEALLOCATE ALL')).toEqual({ all: true });
    expect(parseDeallocate('discard all;')).toEqual({ all: true });
    expect(parseDeallocate('DEALLOCATE PREPARE Stmt1')).toEqual({ name: 'stmt1' });
    expect(parseDeallocate('deallocate "S""1"')).toEqual({ name: 'S"1' });
    expect(parseDeallocate('DISCARD PLANS')).toBeUndefined();
  });

  it('search_path from startup options', () => {
    expect(searchPathFromOptions('-c search_path=a,b')).toBe('a,b');
    expect(searchPathFromOptions('--search_path=my\\ schema,public -c x=1')).toBe('my schema,public');
    expect(searchPathFromOptions('-c work_mem=1MB')).toBeUndefined();
  });
});

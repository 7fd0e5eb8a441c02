// SQL PREPARE / EXECUTE. A PREPARE of a write on a mapped table is prepared
// in its mirrored form, so every EXECUTE runs the mirror; the session keeps
// what each name was prepared as, and an EXECUTE gets that statement's reply
// shape (its command tag is the prepared statement's own). A PREPARE that
// cannot be mirrored is counted at each EXECUTE, where the write happens.
import type { ParsedStatement } from '../sql/parse.ts';
import { isKeyword, type StatementTokens } from '../sql/tokens.ts';

/** What a SQL-prepared statement of a session was prepared as. */
export interface PreparedWrite<Shape = unknown, Unmirrored = unknown> {
  name: string;
  mapping: string;
  /** Mirrored: the reply shape of each EXECUTE. */
  shape?: Shape;
  /** Not mirrored: each EXECUTE is counted with this reason. */
  unmirrored?: Unmirrored;
}

/** A text that may run SQL-prepared statements. */
export const EXECUTE_HINT = /execute/i;

/** Byte offset where the prepared statement's own text starts (after `AS`), or -1. */
export function preparedQueryStart(stmt: ParsedStatement, st: StatementTokens): number {
  if (stmt.kind !== 'PrepareStmt') return -1;
  for (let i = 1; i + 1 < st.toks.length; i++) {
    if (st.depth[i] === 0 && isKeyword(st.toks[i], 'as')) return st.toks[i + 1].start;
  }
  return -1;
}

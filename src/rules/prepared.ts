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
  /** The client's PREPARE up to and including `AS `, and the statement after it. */
  head: string;
  query: string;
  /** What the server has prepared under the name (the mirrored form, or the client's text). */
  prepared: string;
  /** The config version it was planned under: an EXECUTE under another one prepares it anew. */
  version: number;
  /** The search_path it was prepared with: Postgres resolves its names with that one, re-plans included. */
  searchPath: string[];
  /** Mirrored: the reply shape of each EXECUTE. */
  shape?: Shape;
  /** Not mirrored: each EXECUTE is counted with this reason. */
  unmirrored?: Unmirrored;
  /** Neither: the write is forwarded as it is (kill switch, dualWrite off) until a switch changes that. */
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

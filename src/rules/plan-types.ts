// What a plan is: the shapes of the statements in a text, the route it took,
// and what the session must do with it. Shared by the planner and the code
// that builds plans for pieces of a text (function bodies, SQL PREPARE).
import type { BodyReason } from './bodies.ts';
import type { PreparedWrite } from './prepared.ts';
import type { RowOrigins } from './row-origins.ts';

/** `origins`: what the RowDescription must name for the old columns a switched read presents. */
export type StatementShape =
  /** `hidden`: a statement the proxy put in the client's text; its CommandComplete is not the client's. */
  | { kind: 'forward'; origins?: RowOrigins; hidden?: true }
  | { kind: 'mirror'; tag: WriteTag; returning: true; origins?: RowOrigins; reverse?: true }
  | { kind: 'mirror'; tag: WriteTag; returning: false; reverse?: true };

/** `reverse` on a mirror shape: a write on the new table mirrored into the old one (dualWrite: both). */
type WriteTag = 'INSERT' | 'UPDATE' | 'DELETE';

export type Route = 'passthrough' | 'mirrored_write' | 'read_old' | 'read_new';
export type UnmirroredReason =
  | 'copy'
  | 'truncate'
  | 'where_current_of'
  | 'parse_error'
  | 'unsupported'
  | 'volatile_predicate'
  | BodyReason;

/** Plans are cached and shared between sessions: treat them as read-only. */
export interface Plan {
  /** The text to send (=== input when nothing changed). */
  sql: string;
  rewritten: boolean;
  route: Route;
  /** '' when no mapping is involved. */
  mapping: string;
  /**
   * One per top-level statement, in order. When the text was not parsed (the
   * prefilter found no mapped name) this is a single forward entry: with
   * `rewritten` false every statement is relayed untouched anyway.
   */
  statements: StatementShape[];
  unmirrored?: { mapping: string; reason: UnmirroredReason; detail?: string };
  /** onUnmirrorable=reject: answer SQLSTATE 0A000 with this message and send nothing. */
  reject?: { mapping: string; message: string };
  /** SQL PREPAREs of writes on mapped tables in the text: the session keeps them for EXECUTE. */
  prepared?: SqlPrepared[];
  /** DDL guardrails the text's statements met (counted at each execution). */
  ddl?: { rule: string; mode: 'warn' | 'enforce' }[];
}

export type SqlPrepared = PreparedWrite<StatementShape, NonNullable<Plan['unmirrored']>>;

export interface PlanContext {
  /** The search_path in force when the text starts; a SET inside the text applies to the statements after it. */
  searchPath: string[];
  /** What RESET / SET ... TO DEFAULT inside the text returns to (default: `"$user", public`). */
  defaultSearchPath?: string[];
  user: string;
  killSwitch: boolean;
  onUnmirrorable: 'passthrough' | 'reject';
  version: number;
  /** The text is a simple Query, which may hold several statements (a Parse may not). */
  simpleQuery?: boolean;
  /** The client session's canary bucket, 0..99 (reads: { new: N } serves new below N). */
  bucket?: number;
  /** The session's SQL-prepared writes, by name (see prepared.ts). */
  prepared?: ReadonlyMap<
    string,
    PreparedWrite<StatementShape, { mapping: string; reason: string; detail?: string }>
  >;
}

export interface SearchPathChange {
  /** null: RESET / DEFAULT (back to the session's default). */
  value: string[] | null;
  local: boolean;
}

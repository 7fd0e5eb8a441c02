// What a session needs from the rules: a plan per statement. Kept as an
// interface so the session does not depend on how plans are made.
import type { Route } from '../metrics.ts';
import type { RowOrigins } from '../rules/row-origins.ts';

export type StatementShape =
  /** `hidden`: a statement the proxy put in the client's text; its CommandComplete is not the client's. */
  | { kind: 'forward'; origins?: RowOrigins; hidden?: true }
  | { kind: 'mirror'; tag: 'INSERT' | 'UPDATE' | 'DELETE'; returning: boolean; origins?: RowOrigins };

export interface Plan {
  sql: string;
  rewritten: boolean;
  route: Route;
  mapping: string;
  statements: StatementShape[];
  unmirrored?: { mapping: string; reason: string };
  reject?: { mapping: string; message: string };
  /** SQL PREPAREs of writes on mapped tables in the text. */
  prepared?: SqlPrepared[];
  /** DDL guardrails the text met, counted at each execution. */
  ddl?: { rule: string; mode: string }[];
}

/** A SQL-prepared statement on a mapped table: EXECUTE gets its shape, or is counted as unmirrored. */
export interface SqlPrepared {
  name: string;
  mapping: string;
  shape?: StatementShape;
  unmirrored?: { mapping: string; reason: string };
  /** What a re-PREPARE after a switch needs (see rules/prepared.ts). */
  head: string;
  query: string;
  prepared: string;
  version: number;
  searchPath: string[];
}

export interface PlanContext {
  searchPath: string[];
  user: string;
  killSwitch: boolean;
  onUnmirrorable: 'passthrough' | 'reject';
  version: number;
  /** What RESET search_path inside the text returns to. */
  defaultSearchPath?: string[];
  /** The text is a simple Query, which may hold several statements (a Parse may not). */
  simpleQuery?: boolean;
  /** The client session's canary bucket, 0..99 (reads: { new: N } serves new below N). */
  bucket?: number;
  /** The session's SQL-prepared writes, by name. */
  prepared?: ReadonlyMap<string, SqlPrepared>;
}

export interface SessionRules {
  /** The database the rules apply to; sessions on other databases pass through. */
  database: string | undefined;
  /** False when there are no mappings: every statement passes through untouched. */
  active: boolean;
  plan(sql: string, ctx: PlanContext): Plan;
  searchPathChange(sql: string): { value: string[] | null; local: boolean } | undefined;
  /** SET ROLE / SESSION AUTHORIZATION changes in the text, in order ("$user" follows them). */
  roleChanges?(sql: string): { what: 'role' | 'session'; role: string | null; local: boolean }[];
  /** The search_path a session of this role starts with when its startup packet sets none. */
  defaultSearchPath?(role: string): string[] | undefined;
  parseSearchPath(text: string): string[];
  /**
   * A read served from old: maybe sample it for a shadow read against new.
   * `params` gives an extended-protocol read's values (undefined when some is binary).
   */
  shadow?(sql: string, plan: Plan, ctx: PlanContext, params?: () => (string | null)[] | undefined): void;
}

/** A read to run again against the new table, off the client's path (see app/shadow-reads.ts). */
export interface ShadowJob {
  mapping: string;
  /** The client's text, which read old. */
  oldSql: string;
  /** The same text with the mapping's reads switched to new. */
  newSql: string;
  searchPath: string[];
  maxConcurrent: number;
  /** The Bind's values (as text) of an extended-protocol read; absent for a simple Query. */
  params?: (string | null)[];
}

export interface ShadowSink {
  offer(job: ShadowJob): void;
}

export const NO_RULES: SessionRules = {
  database: undefined,
  active: false,
  plan: (sql) => ({ sql, rewritten: false, route: 'passthrough', mapping: '', statements: [] }),
  searchPathChange: () => undefined,
  parseSearchPath: (t) => t.split(',').map((s) => s.trim()),
};

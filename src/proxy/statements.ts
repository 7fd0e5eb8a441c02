// The client's prepared statements and portals as the proxy knows them:
// each statement's text, its plan and the config version it was planned
// under, and the name the server knows its current text by. A statement
// re-planned after a config change is prepared anew under an internal
// `__sy_N` name; earlier internal names are retired (closed, replies
// swallowed) when the client's statement goes away.
import { closeMessage } from '../wire/writer.ts';
import { Kind, type Observer, type ReplyQueue } from './reply-queue.ts';
import type { Plan, SqlPrepared, StatementShape } from './rules-port.ts';

export interface StatementInfo {
  sql: string;
  paramTypes: number[];
  /** undefined: the statement names no mapped table and is never re-planned. */
  plan?: Plan;
  version: number;
  /** The name the server knows the current plan under. */
  serverName: string;
  /** The SQL prepared under serverName (the client's text or its rewrite). */
  serverSql: string;
  /** Earlier server-side names of re-planned versions, closed with the statement. */
  retired: string[];
}

export interface PortalInfo {
  shape: StatementShape;
  observer: Observer;
  binary: boolean;
}

/** Server-side names of re-planned statements; never a name a client chose. */
export const INTERNAL_PREFIX = '__sy_';
let internalCounter = 0;

export class StatementRegistry {
  private statements = new Map<string, StatementInfo>();
  private portals = new Map<string, PortalInfo>();
  /** SQL PREPAREs of writes on mapped tables, by name: what each EXECUTE runs (see rules/prepared.ts). */
  readonly sqlPrepared = new Map<string, SqlPrepared>();
  /** Some statement was prepared rewritten: Bind/Describe/Close/Execute must be followed even with no rules. */
  everRewritten = false;

  constructor(private readonly queue: ReplyQueue) {}

  statement(name: string): StatementInfo | undefined {
    return this.statements.get(name);
  }

  /**
   * A Parse: every statement is remembered, so a reload that adds (or
   * removes) a mapping reaches statements prepared before it. Returns the
   * Close messages for the internal names of a statement it replaces.
   */
  prepare(
    name: string,
    sql: string,
    paramTypes: number[],
    plan: Plan | undefined,
    version: number,
  ): Buffer[] {
    const closes = this.drop(name);
    this.statements.set(name, {
      sql,
      paramTypes,
      plan,
      version,
      serverName: name,
      serverSql: plan?.rewritten ? plan.sql : sql,
      retired: [],
    });
    if (plan?.rewritten) this.everRewritten = true;
    return closes;
  }

  /** Forgets a statement (Close, DEALLOCATE name, a refused Parse); returns the Closes for its internal names. */
  drop(name: string): Buffer[] {
    const info = this.statements.get(name);
    if (!info) return [];
    this.statements.delete(name);
    return this.retire(info);
  }

  /** DEALLOCATE ALL / DISCARD ALL: the server drops the internal names too. */
  dropAll(): void {
    this.statements.clear();
    this.sqlPrepared.clear();
  }

  /** A plan that prepared writes with SQL PREPARE: EXECUTE of those names runs them. */
  planned(plan: Plan): void {
    for (const p of plan.prepared ?? []) this.sqlPrepared.set(p.name, p);
  }

  /** DEALLOCATE name: the SQL PREPARE (if it was one) is gone, and the protocol statement of that name too. */
  deallocate(name: string): Buffer[] {
    this.sqlPrepared.delete(name);
    return this.drop(name);
  }

  /**
   * The statement's new plan under a newer config. Returns the name the new
   * text is to be prepared under when it differs from what the server has.
   */
  replanned(info: StatementInfo, next: Plan | undefined, version: number): string | undefined {
    info.version = version;
    info.plan = next;
    const nextSql = next?.rewritten ? next.sql : info.sql;
    if (nextSql === info.serverSql) return undefined;
    const name = `${INTERNAL_PREFIX}${++internalCounter}`;
    if (info.serverName.startsWith(INTERNAL_PREFIX)) info.retired.push(info.serverName);
    info.serverName = name;
    info.serverSql = nextSql;
    this.everRewritten = true;
    return name;
  }

  portal(name: string): PortalInfo | undefined {
    return this.portals.get(name);
  }

  bindPortal(name: string, info: PortalInfo): void {
    this.portals.set(name, info);
  }

  closePortal(name: string): void {
    this.portals.delete(name);
  }

  /** Portals end with their transaction. */
  endTransaction(): void {
    this.portals.clear();
  }

  /** Closes the server-side names of re-planned versions of a statement (replies swallowed). */
  private retire(info: StatementInfo): Buffer[] {
    const names = [...info.retired];
    if (info.serverName.startsWith(INTERNAL_PREFIX)) names.push(info.serverName);
    const out: Buffer[] = [];
    for (const n of new Set(names)) {
      this.queue.push({ kind: Kind.Close, swallow: true });
      out.push(closeMessage('S', n));
    }
    info.retired = [];
    return out;
  }
}

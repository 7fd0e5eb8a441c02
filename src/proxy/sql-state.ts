// What the session's own SQL did to name resolution and transactions:
// search_path (startup, SET/RESET/DISCARD, SET LOCAL, savepoints and
// rollbacks that undo changes), the role "$user" names (SET ROLE, SET
// SESSION AUTHORIZATION, their LOCAL forms and rollbacks), and the
// transaction status from ReadyForQuery. A state machine fed statements and
// replies; no I/O.
import { parseSavepoint, TX_CONTROL } from './commands/savepoint.ts';
import type { SessionRules } from './rules-port.ts';

export const TX_IDLE = 0x49; // 'I'
export const TX_FAILED = 0x45; // 'E'

interface Roles {
  role?: string;
  session?: string;
}
const DEFAULT_PATH = ['$user', 'public'];

export class SessionSqlState {
  /** Transaction status from the last ReadyForQuery: I, T or E. */
  txStatus = TX_IDLE;
  private path: string[] = DEFAULT_PATH;
  /** What RESET search_path returns to: the startup setting or the server default. */
  defaultSearchPath: string[] = DEFAULT_PATH;
  private localPath?: string[];
  /** search_path when the current transaction began, kept once the transaction changes it: ROLLBACK restores it. */
  private txPath?: string[];
  /** Savepoints of the current transaction with the search_path at each, for ROLLBACK TO. */
  private savepoints: { name: string; path: string[] }[] = [];
  /** Tag of the last CommandComplete while txPath or txRoles is kept: COMMIT or ROLLBACK. */
  private lastTag = '';
  /** Whom "$user" names after SET ROLE / SET SESSION AUTHORIZATION (undefined: the login role). */
  private roles: Roles = {};
  /** SET LOCAL ROLE ...: in force until the transaction ends. */
  private localRoles?: Roles;
  /** roles when the current transaction began, kept once it changes them: ROLLBACK restores them. */
  private txRoles?: Roles;

  constructor(private readonly loginRole: string) {}

  /** The role "$user" stands for now. */
  get role(): string {
    const r = this.localRoles ?? this.roles;
    return r.role ?? r.session ?? this.loginRole;
  }

  get idle(): boolean {
    return this.txStatus === TX_IDLE;
  }

  /** The search_path the next statement resolves names with. */
  get searchPath(): string[] {
    return this.localPath ?? this.path;
  }

  /** The startup packet's search_path: the session's and RESET's value. */
  startWith(path: string[]): void {
    this.path = this.defaultSearchPath = path;
  }

  /**
   * Follows a statement the client sent, after it was planned (a SET applies
   * to the statements after it).
   */
  follow(sql: string, rules: SessionRules): void {
    if (!this.idle && TX_CONTROL.test(sql)) this.followSavepoint(sql);
    this.followRoles(sql, rules);
    const change = rules.searchPathChange(sql);
    if (!change) return;
    const value = change.value ?? this.defaultSearchPath;
    if (change.local) {
      this.localPath = value;
      return;
    }
    if (!this.idle && this.txPath === undefined) this.txPath = this.path;
    this.path = value;
  }

  /** SET ROLE and SET SESSION AUTHORIZATION change what "$user" names (savepoint rollbacks are not followed). */
  private followRoles(sql: string, rules: SessionRules): void {
    for (const c of rules.roleChanges?.(sql) ?? []) {
      const apply = (r: Roles): Roles =>
        c.what === 'role' ? { ...r, role: c.role ?? undefined } : { session: c.role ?? undefined };
      if (c.local) {
        // SET LOCAL outside a transaction block has no effect.
        if (!this.idle) this.localRoles = apply(this.localRoles ?? this.roles);
        continue;
      }
      if (!this.idle && this.txRoles === undefined) this.txRoles = this.roles;
      this.roles = apply(this.roles);
      this.localRoles = undefined;
    }
  }

  private followSavepoint(sql: string): void {
    const cmd = parseSavepoint(sql);
    if (!cmd) return;
    const at = this.savepoints.findLastIndex((sp) => sp.name === cmd.name);
    if (cmd.verb === 'savepoint') {
      this.savepoints.push({ name: cmd.name, path: this.path });
    } else if (at >= 0 && cmd.verb === 'release') {
      this.savepoints.length = at;
    } else if (at >= 0) {
      this.path = this.savepoints[at].path;
      this.savepoints.length = at + 1;
    }
  }

  /** A CommandComplete from the server: only COMMIT vs ROLLBACK matters, and only while a change is kept. */
  commandComplete(msg: Buffer): void {
    if (this.txPath !== undefined || this.txRoles !== undefined) {
      this.lastTag = msg.toString('latin1', 5, Math.min(msg.length - 1, 13));
    }
  }

  /** A ReadyForQuery's status byte; true when it ended a transaction. */
  ready(status: number): boolean {
    const previous = this.txStatus;
    this.txStatus = status;
    if (status !== TX_IDLE || previous === TX_IDLE) return false;
    this.localPath = undefined;
    this.savepoints.length = 0;
    // A rollback (or a failed transaction ending) undoes the transaction's search_path and role changes.
    const rolledBack = previous === TX_FAILED || this.lastTag.startsWith('ROLLBACK');
    if (this.txPath !== undefined && rolledBack) this.path = this.txPath;
    this.txPath = undefined;
    if (this.txRoles !== undefined && rolledBack) this.roles = this.txRoles;
    this.txRoles = undefined;
    this.localRoles = undefined;
    this.lastTag = '';
    return true;
  }
}

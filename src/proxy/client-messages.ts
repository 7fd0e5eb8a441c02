// Client → server: what the session does with each frontend message. Query
// and Parse are planned (and rewritten where a rule applies); Bind, Describe,
// Close and Execute are opened only when some statement of the session was
// rewritten or rules apply; every message that the server will answer pushes
// its entry on the reply queue. A message the proxy refuses is answered by
// the proxy, and the rest of the extended-protocol batch is skipped to Sync
// as the server would.
import { metrics } from '../metrics.ts';
import { Frontend } from '../wire/codes.ts';
import { bindTextParams, readBind, readExecute, readParse, readQuery, readTarget } from '../wire/reader.ts';
import { Action, type FrameSink, ProtocolError } from '../wire/scanner.ts';
import { describeMessage, errorResponse, parseMessage, queryMessage, rebind } from '../wire/writer.ts';
import { DEALLOCATE_HINT, parseDeallocate } from './commands/deallocate.ts';
import { Kind, type ReplyQueue } from './reply-queue.ts';
import type { Round } from './round.ts';
import type { StatementShape } from './rules-port.ts';
import type { SessionSqlState } from './sql-state.ts';
import type { StatementRegistry } from './statements.ts';

export const FORWARD: StatementShape = { kind: 'forward' };
const NONE: Buffer[] = [];

export interface ClientMessageDeps {
  queue: ReplyQueue;
  round: Round;
  sql: SessionSqlState;
  statements: StatementRegistry;
  /** Bytes the proxy answers itself, sent now when nothing is in flight. */
  sendToClient(bytes: Buffer[]): void;
}

export class ClientMessages implements FrameSink {
  /** After a rejected extended-protocol message: drop client messages until Sync, like the server would. */
  private skipToSync = false;
  /** A reject answered by the proxy inside a transaction: abort the server's transaction at the next Sync. */
  private abortAtSync?: string;
  /** The client sent Terminate: the upstream closing next is expected. */
  terminating = false;

  constructor(private readonly d: ClientMessageDeps) {}

  header(type: number): Action {
    if (this.skipToSync) return Action.Inspect;
    const { queue, round } = this.d;
    switch (type) {
      case Frontend.Query:
      case Frontend.Parse:
        return Action.Inspect;
      case Frontend.Bind:
      case Frontend.Describe:
      case Frontend.Close:
      case Frontend.Execute:
        // The round's config decides whether the message must be opened.
        round.begin();
        if (round.rulesApply || this.d.statements.everRewritten) return Action.Inspect;
        this.pushUnopened(type);
        return Action.Pass;
      case Frontend.Sync:
        if (this.abortAtSync !== undefined) return Action.Inspect;
        round.begin();
        queue.push({ kind: Kind.Sync, swallow: false });
        round.inFlight++;
        return Action.Pass;
      case Frontend.FunctionCall:
        round.begin();
        queue.push({
          kind: Kind.Query,
          swallow: false,
          start: performance.now(),
          observer: round.passthrough,
        });
        round.inFlight++;
        return Action.Pass;
      case Frontend.Terminate:
        this.terminating = true;
        return Action.Pass;
      case Frontend.Flush:
      case Frontend.CopyData:
      case Frontend.CopyDone:
      case Frontend.CopyFail:
      case Frontend.Password:
        return Action.Pass;
      default:
        throw new ProtocolError(`invalid frontend message type ${printable(type)}`, 'unknown_type');
    }
  }

  inspect(type: number, msg: Buffer): Buffer | Buffer[] | null | undefined {
    if (this.skipToSync) {
      if (type !== Frontend.Sync) return null;
      this.skipToSync = false;
      return this.inspect(type, msg);
    }
    switch (type) {
      case Frontend.Query:
        return this.onQuery(msg);
      case Frontend.Parse:
        return this.onParse(msg);
      case Frontend.Bind:
        return this.onBind(msg);
      case Frontend.Describe:
        return this.onDescribe(msg);
      case Frontend.Close:
        return this.onClose(msg);
      case Frontend.Execute:
        return this.onExecute(msg);
      case Frontend.Sync:
        return this.onSyncAbort();
    }
    return undefined;
  }

  /** Bookkeeping for messages forwarded without being opened. */
  private pushUnopened(type: number): void {
    const { queue, round } = this.d;
    switch (type) {
      case Frontend.Bind:
        queue.push({ kind: Kind.Bind, swallow: false });
        break;
      case Frontend.Describe:
        queue.push({ kind: Kind.Describe, swallow: false });
        break;
      case Frontend.Close:
        queue.push({ kind: Kind.Close, swallow: false });
        break;
      case Frontend.Execute:
        round.countPassthrough();
        queue.push({
          kind: Kind.Execute,
          swallow: false,
          start: performance.now(),
          observer: round.passthrough,
        });
        break;
    }
  }

  private onQuery(msg: Buffer): Buffer | Buffer[] | undefined {
    const { queue, round } = this.d;
    round.begin();
    round.inFlight++;
    const sql = readQuery(msg);
    const closes = DEALLOCATE_HINT.test(sql) ? this.deallocate(sql) : NONE;
    const plan = round.plan(sql, true);
    round.shadow(sql, plan);
    round.follow(sql);
    const observer = round.observerFor(plan, sql);
    metrics.statements.inc({ route: observer.route, mapping: observer.mapping });
    if (plan?.reject) {
      // The server raises the error itself, so an open transaction is aborted
      // exactly as it would be for any failed statement.
      queue.push({ kind: Kind.Query, swallow: false, start: performance.now(), observer });
      return [...closes, queryMessage(raiseSql(plan.reject.message))];
    }
    queue.push({
      kind: Kind.Query,
      swallow: false,
      shapes: plan?.rewritten ? plan.statements : undefined,
      shapeIndex: 0,
      start: performance.now(),
      observer,
    });
    if (closes.length === 0) return plan?.rewritten ? queryMessage(plan.sql) : undefined;
    return [...closes, plan?.rewritten ? queryMessage(plan.sql) : msg];
  }

  /**
   * DEALLOCATE / DISCARD ALL drop server-side statements. DEALLOCATE ALL and
   * DISCARD ALL take the proxy's re-planned copies with them; DEALLOCATE name
   * does not, so they are closed alongside (replies swallowed).
   */
  private deallocate(sql: string): Buffer[] {
    const cmd = parseDeallocate(sql);
    if (!cmd) return NONE;
    if ('all' in cmd) {
      this.d.statements.dropAll();
      return NONE;
    }
    return this.d.statements.deallocate(cmd.name);
  }

  private onParse(msg: Buffer): Buffer | Buffer[] | null | undefined {
    const { queue, round, statements } = this.d;
    round.begin();
    const p = readParse(msg);
    const plan = round.plan(p.query);
    round.follow(p.query);
    if (plan?.reject) {
      const closes = statements.drop(p.name);
      this.rejectExtended(plan.reject.message);
      return closes.length ? closes : null;
    }
    const out = statements.prepare(p.name, p.query, p.paramTypes, plan, round.version);
    queue.push({ kind: Kind.Parse, swallow: false });
    if (plan?.rewritten) out.push(parseMessage(p.name, plan.sql, p.paramTypes));
    else out.push(msg);
    return out.length === 1 && out[0] === msg ? undefined : out;
  }

  private onBind(msg: Buffer): Buffer | Buffer[] | null | undefined {
    const { queue, round, statements } = this.d;
    round.begin();
    const b = readBind(msg);
    const info = statements.statement(b.statement);
    const out: Buffer[] = [];
    let serverName = b.statement;
    let plan = info?.plan;
    if (info && info.version !== round.version) {
      // The config changed since this statement was planned: plan it again and
      // prepare the new text under an internal name if it differs.
      const next = round.plan(info.sql);
      if (next?.reject) {
        info.version = round.version;
        this.rejectExtended(next.reject.message);
        return null;
      }
      const name = statements.replanned(info, next, round.version);
      if (name !== undefined) {
        queue.push({ kind: Kind.Parse, swallow: true });
        out.push(parseMessage(name, info.serverSql, info.paramTypes));
      }
      plan = next;
    }
    if (info) serverName = info.serverName;
    const shape: StatementShape = plan?.rewritten ? (plan.statements[0] ?? FORWARD) : FORWARD;
    let formats = b.resultFormats;
    // 65535 result formats fit no RETURNING list (the server refuses them either
    // way) and leave the 16-bit count no room for the proxy's extra column.
    if (shape.kind === 'mirror' && shape.returning && formats.length > 1 && formats.length < 0xffff) {
      formats = [...formats, 0];
    }
    const values = () => bindTextParams(msg, b);
    if (info) round.shadow(info.sql, plan, values);
    statements.bindPortal(b.portal, {
      shape,
      observer: round.observerFor(plan, info?.sql, values),
      binary:
        shape.kind === 'mirror' &&
        !shape.returning &&
        formats.length > 0 &&
        formats[formats.length - 1] === 1,
    });
    queue.push({ kind: Kind.Bind, swallow: false });
    if (serverName !== b.statement || formats !== b.resultFormats) {
      out.push(rebind(msg, b.portal, serverName, b.paramsStart, b.paramsEnd, formats, b.resultsEnd));
    } else {
      out.push(msg);
    }
    return out.length === 1 && out[0] === msg ? undefined : out;
  }

  private onDescribe(msg: Buffer): Buffer | undefined {
    const { queue, round, statements } = this.d;
    round.begin();
    const d = readTarget(msg);
    let shape: StatementShape = FORWARD;
    let rename: string | undefined;
    if (d.kind === 'S') {
      const info = statements.statement(d.name);
      if (info?.plan?.rewritten) shape = info.plan.statements[0] ?? FORWARD;
      if (info && info.serverName !== d.name) rename = info.serverName;
    } else {
      shape = statements.portal(d.name)?.shape ?? FORWARD;
    }
    queue.push({ kind: Kind.Describe, swallow: false, shape });
    return rename !== undefined ? describeMessage('S', rename) : undefined;
  }

  private onClose(msg: Buffer): Buffer | Buffer[] | undefined {
    this.d.round.begin();
    const c = readTarget(msg);
    this.d.queue.push({ kind: Kind.Close, swallow: false });
    if (c.kind === 'P') {
      this.d.statements.closePortal(c.name);
      return undefined;
    }
    const extra = this.d.statements.drop(c.name);
    return extra.length ? [msg, ...extra] : undefined;
  }

  private onExecute(msg: Buffer): Buffer | undefined {
    const { queue, round, statements } = this.d;
    round.begin();
    const e = readExecute(msg);
    const portal = statements.portal(e.portal);
    const observer = portal?.observer ?? round.passthrough;
    metrics.statements.inc({ route: observer.route, mapping: observer.mapping });
    queue.push({
      kind: Kind.Execute,
      swallow: false,
      shape: portal?.shape ?? FORWARD,
      binary: portal?.binary,
      start: performance.now(),
      observer,
    });
    // A write without RETURNING ends in CommandComplete whatever row limit the
    // client asks for (pgjdbc's executeUpdate asks for 1). Its rewrite returns
    // the proxy's own count row: under a limit the server would stop at that row
    // with PortalSuspended and the client would never get its command tag.
    if (e.maxRows !== 0 && portal?.shape?.kind === 'mirror' && !portal.shape.returning) {
      const unlimited = Buffer.from(msg);
      unlimited.writeInt32BE(0, unlimited.length - 4);
      return unlimited;
    }
    return undefined;
  }

  /** The proxy answers an error for an extended-protocol message and skips to Sync, as the server would. */
  private rejectExtended(message: string): void {
    const err = errorResponse({ severity: 'ERROR', code: '0A000', message });
    if (this.d.queue.length === 0) this.d.sendToClient([err]);
    else this.d.queue.push({ kind: Kind.Synthetic, swallow: false, bytes: [err] });
    this.skipToSync = true;
    if (!this.d.sql.idle) this.abortAtSync = message;
  }

  /** The Sync after a rejected message inside a transaction: make the server abort it too. */
  private onSyncAbort(): Buffer {
    const message = this.abortAtSync ?? 'rejected';
    this.abortAtSync = undefined;
    this.d.round.begin();
    this.d.round.inFlight++;
    // The client already has its ErrorResponse: swallow the server's copy, keep its ReadyForQuery.
    this.d.queue.push({ kind: Kind.Query, swallow: false, swallowError: true });
    return queryMessage(raiseSql(message));
  }
}

function printable(type: number): string {
  return type >= 0x20 && type < 0x7f ? `"${String.fromCharCode(type)}"` : `0x${type.toString(16)}`;
}

/** A statement that makes the server itself raise the proxy's refusal (SQLSTATE 0A000). */
function raiseSql(message: string): string {
  const tag = '$sy$';
  const safe = message.replaceAll(tag, '');
  return `DO ${tag}BEGIN RAISE EXCEPTION USING ERRCODE = '0A000', MESSAGE = ${quoteLiteral(safe)}; END${tag}`;
}

function quoteLiteral(s: string): string {
  return `'${s.replaceAll("'", "''")}'`;
}

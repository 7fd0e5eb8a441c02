// Server → client once the session is ready: each reply is matched to the
// entry at the head of the reply queue and forwarded, swallowed (the proxy
// sent the message) or reshaped (a rewritten statement's replies made to look
// like the original's). Messages no entry can change pass without being
// opened. After an ErrorResponse in the extended protocol the server skips to
// Sync, and so does the queue.
import { metrics } from '../metrics.ts';
import { Backend } from '../wire/codes.ts';
import { Action, type FrameSink } from '../wire/scanner.ts';
import { NO_DATA } from '../wire/writer.ts';
import { countMirroredStatementError } from './mirror-errors.ts';
import type { Observer } from './reply-queue.ts';
import { Kind, type ReplyQueue } from './reply-queue.ts';
import {
  mirrorTag,
  readCountRow,
  restoreOrigins,
  stripLastColumn,
  stripLastField,
  tagCount,
} from './reshape.ts';
import type { Round } from './round.ts';
import { shapeStats } from './shape-stats.ts';
import type { SessionSqlState } from './sql-state.ts';
import type { StatementRegistry } from './statements.ts';

export interface ServerReplyDeps {
  queue: ReplyQueue;
  round: Round;
  sql: SessionSqlState;
  statements: StatementRegistry;
  /** The server sent FATAL or PANIC: it explains its own close. */
  serverSaidFatal(): void;
}

export class ServerReplies implements FrameSink {
  constructor(private readonly d: ServerReplyDeps) {}

  header(type: number): Action {
    const { queue } = this.d;
    switch (type) {
      case Backend.DataRow: {
        const e = queue.peek();
        if (e === undefined) return Action.Pass;
        const shape = queue.currentShape(e);
        return shape === undefined || shape.kind === 'forward' ? Action.Pass : Action.Inspect;
      }
      case Backend.NoticeResponse:
      case Backend.NotificationResponse:
      case Backend.ParameterStatus:
      case Backend.CopyData:
      case Backend.CopyDone:
      case Backend.CopyInResponse:
      case Backend.CopyOutResponse:
      case Backend.CopyBothResponse:
      case Backend.FunctionCallResponse:
      case Backend.ParameterDescription:
        return Action.Pass;
      case Backend.BindComplete: {
        queue.shift();
        // A made-up reply now at the head must follow this message.
        return queue.peek()?.kind === Kind.Synthetic ? Action.Inspect : Action.Pass;
      }
      default:
        return Action.Inspect;
    }
  }

  inspect(type: number, msg: Buffer): Buffer | Buffer[] | null | undefined {
    const { queue, round, sql } = this.d;
    const out: Buffer[] = [];
    const e = queue.peek();
    switch (type) {
      case Backend.ReadyForQuery: {
        const head = queue.shift();
        if (head && (head.kind === Kind.Sync || head.kind === Kind.Query)) {
          round.inFlight--;
          if (head.kind === Kind.Query && head.observer && head.start !== undefined) {
            observe(head.observer, head.start);
          }
        }
        if (sql.ready(msg[5])) this.d.statements.endTransaction();
        if (head?.swallow) break;
        out.push(msg);
        break;
      }
      case Backend.ErrorResponse: {
        if (isFatal(msg)) this.d.serverSaidFatal();
        if (!e) {
          out.push(msg);
          break;
        }
        if (e.observer) metrics.statementErrors.inc({ route: e.observer.route, mapping: e.observer.mapping });
        const shape = queue.currentShape(e);
        if (shape?.kind === 'mirror' && e.observer)
          countMirroredStatementError(
            msg,
            round.rules,
            e.observer.mapping,
            'reverse' in shape && shape.reverse === true,
          );
        if (e.kind === Kind.Query) {
          if (!e.swallowError) out.push(msg);
          break;
        }
        // Extended protocol: the server skips to Sync; drop what it will not answer.
        while (queue.peek() && queue.peek()!.kind !== Kind.Sync) queue.shift();
        out.push(msg);
        break;
      }
      case Backend.ParseComplete:
      case Backend.CloseComplete:
      case Backend.NoData: {
        queue.shift();
        if (!e?.swallow) out.push(msg);
        break;
      }
      case Backend.RowDescription: {
        const shape = e ? queue.currentShape(e) : undefined;
        if (e?.kind === Kind.Describe) queue.shift();
        if (shape?.kind === 'mirror') {
          const fields = shape.returning ? stripLastField(msg) : undefined;
          const shown = fields && shape.origins ? restoreOrigins(fields, shape.origins) : fields;
          if (e?.kind === Kind.Describe) out.push(shown ?? NO_DATA);
          else if (shown) out.push(shown);
        } else if (shape?.origins) {
          out.push(restoreOrigins(msg, shape.origins));
        } else {
          out.push(msg);
        }
        break;
      }
      case Backend.DataRow: {
        const shape = e ? queue.currentShape(e) : undefined;
        if (shape?.kind === 'mirror') {
          if (shape.returning) out.push(stripLastColumn(msg));
          else e!.count = readCountRow(msg, e!.binary === true);
        } else {
          out.push(msg);
        }
        break;
      }
      case Backend.CommandComplete:
      case Backend.EmptyQueryResponse:
      case Backend.PortalSuspended: {
        const shape = e ? queue.currentShape(e) : undefined;
        if (type === Backend.CommandComplete) sql.commandComplete(msg);
        if (shape?.kind === 'forward' && shape.hidden) {
          // A statement the proxy added to the client's text.
        } else if (shape?.kind === 'mirror' && type === Backend.CommandComplete) {
          out.push(mirrorTag(shape.tag, shape.returning ? tagCount(msg) : (e!.count ?? 0)));
          e!.count = undefined;
        } else {
          out.push(msg);
        }
        if (e?.kind === Kind.Execute) {
          queue.shift();
          if (e.observer && e.start !== undefined) observe(e.observer, e.start);
        } else if (e?.kind === Kind.Query && e.shapes) {
          e.shapeIndex = (e.shapeIndex ?? 0) + 1;
        }
        break;
      }
      default:
        out.push(msg);
    }
    // Replies the proxy made up, queued behind the message just answered.
    for (let s = queue.peek(); s?.kind === Kind.Synthetic; s = queue.peek()) {
      queue.shift();
      if (s.bytes) out.push(...s.bytes);
    }
    return out.length === 1 && out[0] === msg ? undefined : out;
  }
}

/** ErrorResponse whose severity is FATAL or PANIC (the server closes after it). */
export function isFatal(msg: Buffer): boolean {
  // Fields start at 5; severity ('S') comes first in every server version.
  return (
    msg[5] === 0x53 &&
    (msg.toString('latin1', 6, 11) === 'FATAL' || msg.toString('latin1', 6, 11) === 'PANIC')
  );
}

/** A statement's latency, in the histogram and, on a mapped table, by shape. */
function observe(o: Observer, start: number): void {
  const seconds = (performance.now() - start) / 1000;
  o.latency.observe(seconds);
  if (o.sql !== undefined) shapeStats.record(o.mapping, o.route, o.sql, seconds, o.params);
}

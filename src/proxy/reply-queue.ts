// One entry per client message that the server will answer, in order. Server
// replies are matched to the entry at the head: they are forwarded, swallowed
// (the proxy injected the message), or reshaped (a rewritten statement whose
// replies must look like the original's). After an ErrorResponse in the
// extended protocol the server skips to Sync, and so does the queue.
import type { Histogram } from 'prom-client';
import type { StatementShape } from './rules-port.ts';

export enum Kind {
  Parse = 1,
  Bind = 2,
  Describe = 3,
  Execute = 4,
  Close = 5,
  Sync = 6,
  /** Simple Query or FunctionCall: replies until ReadyForQuery. */
  Query = 7,
  /** Replies the proxy makes up, emitted when the entry reaches the head. */
  Synthetic = 8,
}

export interface Observer {
  latency: ReturnType<Histogram<'route' | 'mapping'>['labels']>;
  route: string;
  mapping: string;
  /** The client's text of a statement on a mapped table (kept by shape for `switchyard plans`). */
  sql?: string;
  /** Its Bind values as text, for a read in the extended protocol (so its plan can be shown with them). */
  params?: (string | null)[];
}

export interface Entry {
  kind: Kind;
  /** Injected by the proxy: the client never sees its replies. */
  swallow: boolean;
  /** Execute / Describe: how to reshape; Query: one per statement. */
  shape?: StatementShape;
  shapes?: StatementShape[];
  shapeIndex?: number;
  /** Execute: result rows come in binary (matters for the hidden count row). */
  binary?: boolean;
  /** Hidden count of a mirrored write without RETURNING. */
  count?: number;
  /** Execute / Query: when the statement left the client, for the latency histogram. */
  start?: number;
  observer?: Observer;
  /** A Query the proxy sent to abort the server's transaction: its ErrorResponse is a copy the client already has. */
  swallowError?: boolean;
  /** Synthetic: bytes to send to the client. */
  bytes?: Buffer[];
}

/** A FIFO with O(1) shift for the common case of a few entries. */
export class ReplyQueue {
  private items: Entry[] = [];
  private head = 0;

  push(e: Entry): void {
    this.items.push(e);
  }

  peek(): Entry | undefined {
    return this.items[this.head];
  }

  shift(): Entry | undefined {
    const e = this.items[this.head];
    if (e === undefined) return undefined;
    this.items[this.head] = undefined as unknown as Entry;
    this.head++;
    if (this.head === this.items.length) {
      this.items.length = 0;
      this.head = 0;
    } else if (this.head > 64 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return e;
  }

  get length(): number {
    return this.items.length - this.head;
  }

  /** Entries still waiting, head first. */
  *entries(): IterableIterator<Entry> {
    for (let i = this.head; i < this.items.length; i++) yield this.items[i];
  }

  clear(): void {
    this.items.length = 0;
    this.head = 0;
  }

  currentShape(e: Entry): StatementShape | undefined {
    if (e.kind === Kind.Query) return e.shapes?.[e.shapeIndex ?? 0];
    return e.shape;
  }
}

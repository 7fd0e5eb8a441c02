// Framing of a typed message stream (5-byte header: type + int32 length).
// Bytes are forwarded as slices of the chunks they arrived in; a message is
// assembled whole only when the sink asks to inspect it. Everything else, even
// a message split across chunks, passes through without being copied.

export enum Action {
  /** Forward untouched, body not needed. */
  Pass = 0,
  /** Deliver the complete message to inspect(); its return value decides. */
  Inspect = 1,
}

export interface FrameSink {
  /** Called for every message header, in order. */
  header(type: number, length: number): Action;
  /**
   * A complete message (header included) the sink asked for. Return undefined
   * to forward it as it is, null to drop it, or the bytes to send instead.
   */
  inspect(type: number, msg: Buffer): Buffer | Buffer[] | null | undefined;
}

export class ProtocolError extends Error {
  constructor(
    message: string,
    readonly reason: string,
  ) {
    super(message);
  }
}

const EMPTY = Buffer.alloc(0);

export class MessageScanner {
  /** Bytes of a passed-through message still to come. */
  private skip = 0;
  /** A header split across chunks (fewer than 5 bytes). */
  private head: Buffer = EMPTY;
  /** Pieces of an inspected message still being assembled. */
  private pending: Buffer[] = [];
  private pendingHave = 0;
  private pendingNeed = 0;
  private pendingType = 0;

  constructor(
    private sink: FrameSink,
    private readonly maxMessageBytes = 0x7fffffff,
  ) {}

  /** Hands the rest of the stream to another sink (from the next message on, even inside one chunk). */
  switchTo(sink: FrameSink): void {
    this.sink = sink;
  }

  /** Feeds one chunk; returns the byte pieces to write, in order. */
  push(chunk: Buffer): Buffer[] {
    const out: Buffer[] = [];
    let data = chunk;
    if (this.pendingNeed > 0) {
      const want = this.pendingNeed - this.pendingHave;
      if (data.length < want) {
        // Copy: the chunk's memory may be reused by the socket before the rest arrives.
        this.pending.push(Buffer.from(data));
        this.pendingHave += data.length;
        return out;
      }
      this.pending.push(data.subarray(0, want));
      const msg = Buffer.concat(this.pending, this.pendingNeed);
      const type = this.pendingType;
      this.pending = [];
      this.pendingHave = this.pendingNeed = 0;
      emit(out, msg, this.sink.inspect(type, msg));
      data = data.subarray(want);
    } else if (this.head.length > 0) {
      data = Buffer.concat([this.head, data]);
      this.head = EMPTY;
    }
    const len = data.length;
    let i = 0;
    let runStart = 0;
    while (i < len) {
      if (this.skip > 0) {
        const n = Math.min(this.skip, len - i);
        i += n;
        this.skip -= n;
        continue;
      }
      if (len - i < 5) {
        if (i > runStart) out.push(data.subarray(runStart, i));
        this.head = Buffer.from(data.subarray(i));
        return out;
      }
      const type = data[i];
      const length = data.readInt32BE(i + 1);
      if (length < 4) throw new ProtocolError(`invalid message length ${length}`, 'bad_length');
      if (length > this.maxMessageBytes) {
        throw new ProtocolError(
          `message of ${length} bytes exceeds the limit of ${this.maxMessageBytes}`,
          'message_too_large',
        );
      }
      const total = length + 1;
      if (this.sink.header(type, length) === Action.Pass) {
        if (i + total <= len) {
          i += total;
        } else {
          this.skip = i + total - len;
          i = len;
        }
        continue;
      }
      if (i + total <= len) {
        const res = this.sink.inspect(type, data.subarray(i, i + total));
        if (res !== undefined) {
          if (i > runStart) out.push(data.subarray(runStart, i));
          emit(out, null, res);
          runStart = i + total;
        }
        i += total;
        continue;
      }
      if (i > runStart) out.push(data.subarray(runStart, i));
      // Copy: the chunk's memory may be reused by the socket before the rest arrives.
      this.pending = [Buffer.from(data.subarray(i))];
      this.pendingHave = len - i;
      this.pendingNeed = total;
      this.pendingType = type;
      return out;
    }
    if (len > runStart) out.push(runStart === 0 ? data : data.subarray(runStart));
    return out;
  }

  /** True when no partial message is buffered. */
  get idle(): boolean {
    return this.skip === 0 && this.head.length === 0 && this.pendingNeed === 0;
  }
}

function emit(out: Buffer[], original: Buffer | null, res: Buffer | Buffer[] | null | undefined): void {
  if (res === undefined) {
    if (original) out.push(original);
  } else if (res === null) {
    // dropped
  } else if (Array.isArray(res)) {
    for (const b of res) out.push(b);
  } else {
    out.push(res);
  }
}

// The transport over Bun's native sockets (Bun.listen / Bun.connect), for
// plain TCP when the process runs on Bun. TLS stays on node:net, whose
// in-band upgrade (SSLRequest, then the handshake on the same socket) the
// protocol needs.
import type { ConnectOptions, Listener, SocketLayer, Transport, TransportHandlers } from './transport.ts';

/** The part of Bun's socket API this transport uses. */
interface BunSocket {
  data: BunTransport | undefined;
  readonly remoteAddress: string;
  write(data: Uint8Array): number;
  end(): void;
  terminate(): void;
  pause(): void;
  resume(): void;
  setNoDelay?(on: boolean): void;
}

interface BunSocketHandlers {
  open(s: BunSocket): void;
  data(s: BunSocket, chunk: Buffer): void;
  drain(s: BunSocket): void;
  close(s: BunSocket, err?: Error): void;
  error(s: BunSocket, err: Error): void;
  end(s: BunSocket): void;
  connectError?(s: BunSocket, err: Error): void;
}

interface BunRuntime {
  listen(opts: { hostname: string; port: number; socket: BunSocketHandlers }): {
    hostname: string;
    port: number;
    stop(closeActive?: boolean): void;
  };
  connect(opts: { hostname: string; port: number; socket: BunSocketHandlers }): Promise<BunSocket>;
}

const bun = (globalThis as { Bun?: BunRuntime }).Bun;

/** True when the process runs on Bun and its sockets can be used. */
export const bunSockets = bun !== undefined;

/** Bytes past which `write` reports backpressure (Node's default high-water mark). */
const HIGH_WATER = 16 * 1024;

export class BunTransport implements Transport {
  readonly remote: string;
  private handlers?: TransportHandlers;
  /** Bytes the kernel did not take yet, in order; copied, since the caller's buffers may be reused. */
  private unsent: Buffer[] = [];
  private unsentBytes = 0;
  private drainWaiters: (() => void)[] = [];
  private isPaused = false;
  private ended = false;
  private gone = false;
  /** Data that arrived before the owner bound (a server that talks first). */
  private early: Buffer[] = [];

  constructor(
    private readonly socket: BunSocket,
    port?: number,
  ) {
    this.remote = `${socket.remoteAddress}:${port ?? ''}`;
    socket.setNoDelay?.(true);
  }

  bind(handlers: TransportHandlers): void {
    this.handlers = handlers;
    for (const chunk of this.early.splice(0)) handlers.data(chunk);
  }

  received(chunk: Buffer): void {
    if (this.handlers) this.handlers.data(chunk);
    else this.early.push(Buffer.from(chunk));
  }

  closed(err?: Error): void {
    if (this.gone) return;
    this.gone = true;
    this.handlers?.closed(err);
  }

  write(pieces: readonly Buffer[]): boolean {
    if (this.gone || this.ended) return false;
    const data = pieces.length === 1 ? pieces[0] : Buffer.concat(pieces as Buffer[]);
    if (this.unsentBytes > 0) {
      this.unsent.push(Buffer.from(data));
      this.unsentBytes += data.length;
      return false;
    }
    const n = this.socket.write(data);
    if (n < data.length) {
      const rest = Buffer.from(data.subarray(Math.max(n, 0)));
      this.unsent.push(rest);
      this.unsentBytes += rest.length;
    }
    return this.unsentBytes < HIGH_WATER;
  }

  /** The kernel takes bytes again: flush what waits, then tell whoever waited. */
  drained(): void {
    while (this.unsent.length > 0) {
      const head = this.unsent[0];
      const n = this.socket.write(head);
      if (n < head.length) {
        this.unsent[0] = head.subarray(Math.max(n, 0));
        this.unsentBytes -= Math.max(n, 0);
        return;
      }
      this.unsent.shift();
      this.unsentBytes -= head.length;
    }
    if (this.ended) this.socket.end();
    for (const cb of this.drainWaiters.splice(0)) cb();
  }

  onceDrain(cb: () => void): void {
    this.drainWaiters.push(cb);
  }

  pause(): void {
    if (this.isPaused) return;
    this.isPaused = true;
    this.socket.pause();
  }

  resume(): void {
    if (!this.isPaused) return;
    this.isPaused = false;
    this.socket.resume();
  }

  get paused(): boolean {
    return this.isPaused;
  }

  get pendingBytes(): number {
    return this.unsentBytes;
  }

  get writable(): boolean {
    return !this.gone && !this.ended;
  }

  get destroyed(): boolean {
    return this.gone;
  }

  end(last?: Buffer): void {
    if (this.gone || this.ended) return;
    if (last) this.write([last]);
    this.ended = true;
    // With bytes still waiting, the end follows them (see drained).
    if (this.unsentBytes === 0) this.socket.end();
  }

  destroy(): void {
    if (this.gone) return;
    this.socket.terminate();
    this.closed();
  }
}

const handlers = (onOpen: (s: BunSocket) => void): BunSocketHandlers => ({
  open: onOpen,
  data: (s, chunk) => s.data?.received(chunk),
  drain: (s) => s.data?.drained(),
  close: (s, err) => s.data?.closed(err),
  error: (s, err) => s.data?.closed(err),
  // The peer closed its side: like node:net without allowHalfOpen, the connection is over.
  end: (s) => {
    s.end();
    s.data?.closed();
  },
});

export function listenBun(
  host: string,
  port: number,
  accept: (t: Transport) => void,
  _onError: (err: Error) => void,
): Promise<Listener> {
  if (!bun) throw new Error('Bun sockets need the Bun runtime');
  const server = bun.listen({
    hostname: host,
    port,
    socket: handlers((s) => {
      s.data = new BunTransport(s);
      accept(s.data);
    }),
  });
  return Promise.resolve({
    address: { address: server.hostname, port: server.port, family: host.includes(':') ? 'IPv6' : 'IPv4' },
    close: async () => server.stop(false),
  });
}

export async function connectBun(opts: ConnectOptions): Promise<Transport> {
  if (!bun) throw new Error('Bun sockets need the Bun runtime');
  let failed: Error | undefined;
  const pending = bun.connect({
    hostname: opts.host,
    port: opts.port,
    socket: {
      ...handlers((s) => {
        s.data = new BunTransport(s, opts.port);
      }),
      connectError: (_s, err) => {
        failed = err;
      },
    },
  });
  const abort = new Promise<never>((_, reject) => {
    opts.signal?.addEventListener('abort', () =>
      reject(Object.assign(new Error('aborted'), { code: 'ABORTED' })),
    );
  });
  try {
    const s = await (opts.signal ? Promise.race([pending, abort]) : pending);
    if (opts.signal?.aborted) {
      s.terminate();
      throw Object.assign(new Error('aborted'), { code: 'ABORTED' });
    }
    return s.data as BunTransport;
  } catch (err) {
    throw failed ?? err;
  }
}

export const BUN_SOCKETS: SocketLayer = { name: 'bun', listen: listenBun, connect: connectBun };

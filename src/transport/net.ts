// The transport over node:net: one Socket per connection.
import net from 'node:net';
import type { ConnectOptions, Listener, SocketLayer, Transport, TransportHandlers } from './transport.ts';

/**
 * A batch of pieces up to this size is copied into one buffer and written
 * once: copying a few KiB costs less than Node's writev path (a JS array of
 * chunks, a WriteWrap, the per-chunk bookkeeping), which a rewritten
 * statement's replies (a made-up tag between forwarded slices) would
 * otherwise take on every round. Larger batches (mostly forwarded rows) go
 * as one corked writev rather than being copied.
 */
const GATHER_MAX_BYTES = 16 * 1024;

export class NetTransport implements Transport {
  readonly remote: string;
  private handlers?: TransportHandlers;
  private done = false;

  constructor(readonly socket: net.Socket) {
    this.remote = `${socket.remoteAddress}:${socket.remotePort}`;
    socket.setNoDelay(true);
  }

  bind(handlers: TransportHandlers): void {
    this.handlers = handlers;
    this.socket.on('data', handlers.data);
    this.socket.on('error', (err) => this.gone(err));
    this.socket.on('close', () => this.gone());
  }

  /** Reads that land in a caller's buffer (see ConnectOptions.readBuffer). */
  deliver(chunk: Buffer): void {
    this.handlers?.data(chunk);
  }

  /** Detaches the owner (before a TLS handshake takes the socket over); errors are swallowed meanwhile. */
  unbind(): void {
    this.socket.removeAllListeners('data');
    this.socket.removeAllListeners('error');
    this.socket.removeAllListeners('close');
    this.socket.on('error', () => {});
    this.handlers = undefined;
  }

  private gone(error?: Error): void {
    if (this.done) return;
    this.done = true;
    this.handlers?.closed(error);
  }

  write(pieces: readonly Buffer[]): boolean {
    const s = this.socket;
    if (pieces.length === 1) return s.write(pieces[0]);
    let total = 0;
    for (const p of pieces) total += p.length;
    if (total <= GATHER_MAX_BYTES) return s.write(Buffer.concat(pieces as Buffer[], total));
    s.cork();
    for (const p of pieces) s.write(p);
    s.uncork();
    return s.writableLength < s.writableHighWaterMark;
  }

  onceDrain(cb: () => void): void {
    this.socket.once('drain', cb);
  }

  pause(): void {
    this.socket.pause();
  }

  resume(): void {
    this.socket.resume();
  }

  get paused(): boolean {
    return this.socket.isPaused();
  }

  get pendingBytes(): number {
    return this.socket.writableLength;
  }

  get writable(): boolean {
    return !this.socket.destroyed && this.socket.writable && !this.socket.writableEnded;
  }

  get destroyed(): boolean {
    return this.socket.destroyed;
  }

  end(last?: Buffer): void {
    if (last) this.socket.end(last);
    else this.socket.end();
  }

  destroy(): void {
    this.socket.destroy();
  }
}

export function connectTcp(opts: ConnectOptions): Promise<Transport> {
  return new Promise((resolve, reject) => {
    let transport: NetTransport | undefined;
    const socket = opts.readBuffer
      ? net.connect({
          host: opts.host,
          port: opts.port,
          onread: {
            buffer: opts.readBuffer,
            callback: (n: number, buf: Uint8Array) => {
              transport?.deliver((buf as Buffer).subarray(0, n));
              return true;
            },
          },
        })
      : net.connect({ host: opts.host, port: opts.port });
    transport = new NetTransport(socket);
    const failed = (err: Error) => reject(err);
    const aborted = () => {
      socket.destroy();
      reject(Object.assign(new Error('aborted'), { code: 'ABORTED' }));
    };
    opts.signal?.addEventListener('abort', aborted, { once: true });
    socket.once('error', failed);
    socket.once('connect', () => {
      socket.off('error', failed);
      opts.signal?.removeEventListener('abort', aborted);
      resolve(transport);
    });
  });
}

/** Whether a TCP connection opens within the timeout (readiness probes). */
export function probeTcp(host: string, port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    const done = (ok: boolean) => {
      s.destroy();
      resolve(ok);
    };
    s.setTimeout(timeoutMs, () => done(false));
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}

export function listenTcp(
  host: string,
  port: number,
  accept: (t: Transport) => void,
  onError: (err: Error) => void,
): Promise<Listener> {
  const server = net.createServer({ noDelay: true }, (socket) => {
    socket.on('error', () => {});
    accept(new NetTransport(socket));
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      server.on('error', onError);
      const addr = server.address() as net.AddressInfo;
      resolve({
        address: { address: addr.address, port: addr.port, family: addr.family },
        close: () => new Promise<void>((r) => server.close(() => r())),
      });
    });
  });
}

export const NODE_SOCKETS: SocketLayer = { name: 'node:net', listen: listenTcp, connect: connectTcp };

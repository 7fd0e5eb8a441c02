// The listener: accepts clients, enforces the connection limit, and drains
// sessions on shutdown.
import net from 'node:net';
import type { Logger } from 'pino';
import { metrics } from '../admin/metrics.ts';
import { upstreamAddress } from '../config/load.ts';
import type { ConfigStore } from '../config/store.ts';
import { errorResponse } from '../wire/writer.ts';
import type { SessionRules } from './rules-port.ts';
import { Session, type UpstreamTarget } from './session.ts';

export interface ProxyOptions {
  store: ConfigStore<{ session: SessionRules }>;
  logger: Logger;
  /** Overrides the config's listen address (tests: port 0). */
  listen?: { host: string; port: number };
  tls?: (socket: net.Socket) => Promise<net.Socket>;
  upstreamSecure?: (socket: net.Socket) => Promise<net.Socket>;
}

export class ProxyServer {
  private server: net.Server;
  private sessions = new Set<Session>();
  private draining = false;
  /** Refused clients still reading their error. */
  private refused = new Set<net.Socket>();

  constructor(private readonly opts: ProxyOptions) {
    this.server = net.createServer({ noDelay: true }, (socket) => this.accept(socket));
    this.server.on('error', (err) => opts.logger.error({ err }, 'listener error'));
  }

  get connections(): number {
    return this.sessions.size;
  }

  get isDraining(): boolean {
    return this.draining;
  }

  async listen(): Promise<net.AddressInfo> {
    const l = this.opts.listen ?? this.opts.store.current.config.listen;
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(l.port, l.host, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
    const addr = this.server.address() as net.AddressInfo;
    this.opts.logger.info({ host: addr.address, port: addr.port }, 'listening');
    return addr;
  }

  private upstream = (): UpstreamTarget => {
    const c = this.opts.store.current.config;
    const { host, port } = upstreamAddress(c);
    return { host, port, connectTimeoutMs: c.upstream.connectTimeoutMs, secure: this.opts.upstreamSecure };
  };

  private accept(socket: net.Socket): void {
    const config = this.opts.store.current.config;
    socket.on('error', () => {});
    if (this.draining) {
      metrics.connectionsRejected.inc({ reason: 'draining' });
      this.refuse(
        socket,
        errorResponse({ severity: 'FATAL', code: '57P03', message: 'switchyard: shutting down' }),
      );
      return;
    }
    if (this.sessions.size >= config.limits.maxClientConnections) {
      metrics.connectionsRejected.inc({ reason: 'max_connections' });
      this.opts.logger.warn(
        { client: `${socket.remoteAddress}:${socket.remotePort}`, limit: config.limits.maxClientConnections },
        'connection refused: too many clients',
      );
      this.refuse(
        socket,
        errorResponse({
          severity: 'FATAL',
          code: '53300',
          message: `switchyard: too many client connections (limit ${config.limits.maxClientConnections})`,
        }),
      );
      return;
    }
    metrics.clientConnections.inc();
    metrics.clientConnectionsTotal.inc();
    const session = new Session(socket, {
      store: this.opts.store,
      upstream: this.upstream,
      logger: this.opts.logger,
      maxMessageBytes: config.limits.maxMessageBytes,
      startupTimeoutMs: config.limits.startupTimeoutMs,
      tls: this.opts.tls,
      onClose: (s) => {
        if (this.sessions.delete(s)) metrics.clientConnections.dec();
      },
    });
    this.sessions.add(session);
  }

  /** Sends the error and closes: the client reads why, and a client that never hangs up cannot hold the socket. */
  private refuse(socket: net.Socket, error: Buffer): void {
    this.refused.add(socket);
    socket.once('close', () => this.refused.delete(socket));
    socket.end(error);
    setTimeout(() => socket.destroy(), REFUSE_GRACE_MS).unref();
  }

  /** Whether a TCP connection to the upstream opens within the timeout. */
  upstreamReachable(timeoutMs = 1000): Promise<boolean> {
    const { host, port } = this.upstream();
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

  /**
   * Graceful shutdown: stop accepting, let sessions finish their transactions
   * up to the deadline, then end the rest with 57P01.
   */
  async drain(timeoutMs: number, abort?: Promise<void>): Promise<void> {
    this.draining = true;
    this.server.close();
    const deadline = Date.now() + timeoutMs;
    let aborted = false;
    abort?.then(() => {
      aborted = true;
    });
    while (!aborted && Date.now() < deadline) {
      for (const s of this.sessions)
        if (!s.busy) s.terminate('terminating connection due to administrator command');
      if (this.sessions.size === 0) return;
      await new Promise((r) => setTimeout(r, 50));
    }
    for (const s of this.sessions) s.terminate('terminating connection due to administrator command');
  }

  /** Closes the listener and every session at once. */
  async close(): Promise<void> {
    this.draining = true;
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const s of this.sessions) s.close('proxy closing');
    for (const s of this.refused) s.destroy();
    await closed;
  }
}

/** How long a refused client may keep its socket open to read the error, as Postgres allows after a FATAL. */
const REFUSE_GRACE_MS = 1000;

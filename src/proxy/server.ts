// The listener: accepts clients, enforces the connection limit, and drains
// sessions on shutdown.
import type { Logger } from 'pino';
import { upstreamAddress } from '../config/load.ts';
import type { ConfigStore } from '../config/store.ts';
import { metrics } from '../metrics.ts';
import { NODE_SOCKETS, probeTcp } from '../transport/net.ts';
import type { Listener, SocketLayer, TlsUpgrade, Transport } from '../transport/transport.ts';
import { errorResponse } from '../wire/writer.ts';
import type { SessionRules } from './rules-port.ts';
import { Session } from './session.ts';
import type { UpstreamTarget } from './startup.ts';

export interface ProxyOptions {
  store: ConfigStore<{ session: SessionRules }>;
  logger: Logger;
  /** Overrides the config's listen address (tests: port 0). */
  listen?: { host: string; port: number };
  tls?: TlsUpgrade;
  upstreamSecure?: TlsUpgrade;
  /** How to listen and connect (default: node:net). */
  sockets?: SocketLayer;
}

export interface ListenAddress {
  address: string;
  port: number;
  family: string;
}

export class ProxyServer {
  private listener?: Listener;
  private sessions = new Set<Session>();
  private draining = false;
  /** Refused clients still reading their error. */
  private refused = new Set<Transport>();

  private readonly sockets: SocketLayer;

  constructor(private readonly opts: ProxyOptions) {
    this.sockets = opts.sockets ?? NODE_SOCKETS;
  }

  get connections(): number {
    return this.sessions.size;
  }

  get isDraining(): boolean {
    return this.draining;
  }

  async listen(): Promise<ListenAddress> {
    const l = this.opts.listen ?? this.opts.store.current.config.listen;
    this.listener = await this.sockets.listen(
      l.host,
      l.port,
      (t) => this.accept(t),
      (err) => this.opts.logger.error({ err }, 'listener error'),
    );
    const addr = this.listener.address;
    this.opts.logger.info({ host: addr.address, port: addr.port, sockets: this.sockets.name }, 'listening');
    return addr;
  }

  private upstream = (): UpstreamTarget => {
    const c = this.opts.store.current.config;
    const { host, port } = upstreamAddress(c);
    return { host, port, connectTimeoutMs: c.upstream.connectTimeoutMs, secure: this.opts.upstreamSecure };
  };

  private accept(socket: Transport): void {
    const config = this.opts.store.current.config;
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
        { client: socket.remote, limit: config.limits.maxClientConnections },
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
      connect: this.sockets.connect,
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
  private refuse(socket: Transport, error: Buffer): void {
    this.refused.add(socket);
    socket.bind({ data: () => {}, closed: () => this.refused.delete(socket) });
    socket.end(error);
    setTimeout(() => socket.destroy(), REFUSE_GRACE_MS).unref();
  }

  /** Whether a TCP connection to the upstream opens within the timeout. */
  upstreamReachable(timeoutMs = 1000): Promise<boolean> {
    const { host, port } = this.upstream();
    return probeTcp(host, port, timeoutMs);
  }

  /**
   * Graceful shutdown: stop accepting, let sessions finish their transactions
   * up to the deadline, then end the rest with 57P01.
   */
  async drain(timeoutMs: number, abort?: Promise<void>): Promise<void> {
    this.draining = true;
    void this.listener?.close();
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
    const closed = this.listener?.close();
    for (const s of this.sessions) s.close('proxy closing');
    for (const s of this.refused) s.destroy();
    await closed;
  }
}

/** How long a refused client may keep its socket open to read the error, as Postgres allows after a FATAL. */
const REFUSE_GRACE_MS = 1000;

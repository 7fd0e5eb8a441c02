// One client connection and its own upstream connection (session mode): the
// message loop. It feeds bytes through the startup phase until the upstream
// is connected, then through two frame scanners whose sinks
// (ClientMessages, ServerReplies) decide per message, and writes what they
// return with backpressure. See docs/connection-lifecycle.md for which part
// owns which message in which phase.
import type { Logger } from 'pino';
import type { ConfigStore } from '../config/store.ts';
import { metrics } from '../metrics.ts';
import type { Connector, TlsUpgrade, Transport } from '../transport/transport.ts';
import { Action, type FrameSink, MessageScanner, ProtocolError } from '../wire/scanner.ts';
import { errorResponse } from '../wire/writer.ts';
import { ClientMessages } from './client-messages.ts';
import { searchPathFromOptions } from './commands/startup-options.ts';
import { ReplyQueue } from './reply-queue.ts';
import { errorText } from './reshape.ts';
import { Round } from './round.ts';
import type { SessionRules } from './rules-port.ts';
import { ServerReplies } from './server-replies.ts';
import { SessionSqlState } from './sql-state.ts';
import { authReply, negotiate, openUpstream, StartupReader, type UpstreamTarget } from './startup.ts';
import { StatementRegistry } from './statements.ts';

export type { UpstreamTarget } from './startup.ts';

export interface SessionDeps {
  store: ConfigStore<{ session: SessionRules }>;
  upstream: () => UpstreamTarget;
  connect: Connector;
  logger: Logger;
  maxMessageBytes: number;
  startupTimeoutMs: number;
  /** Terminates TLS from the client when configured (answers SSLRequest with S). */
  tls?: TlsUpgrade;
  onClose: (s: Session) => void;
}

/** Size of the buffer server reads land in: as large as libuv's default read. */
const SERVER_READ_BYTES = 64 * 1024;

let sessionCounter = 0;

export class Session {
  readonly id = ++sessionCounter;
  readonly openedAt = Date.now();
  client: Transport;
  private upstream?: Transport;
  closed = false;
  private phase: 'startup' | 'auth' | 'ready' = 'startup';
  private startup?: StartupReader = new StartupReader();
  private startupTimer?: NodeJS.Timeout;
  private clientScanner?: MessageScanner;
  private serverScanner?: MessageScanner;
  private readBuf?: Buffer;
  /** Client bytes that followed the startup packet before the upstream connection was up. */
  private early?: Buffer;
  private queue = new ReplyQueue();
  private sql!: SessionSqlState;
  private round!: Round;
  private statements = new StatementRegistry(this.queue);
  private clientMessages?: ClientMessages;
  private serverReplies?: ServerReplies;
  /** The server sent a FATAL error: it explained the close itself. */
  private serverSaidFatal = false;
  /** The code of a repeated encryption request sent on disguised (see repeated-request.ts). */
  private repeatedRequest?: number;
  /**
   * The startup asked for a protocol other than 3.x: the server refuses it and
   * closes, in the old protocol's framing for 1.x and 2.x ('E' + text). Its
   * bytes go to the client as they come, unframed.
   */
  private rawReply = false;
  user = '';
  database = '';
  bytesIn = 0;
  bytesOut = 0;
  readonly remote: string;

  constructor(
    client: Transport,
    private readonly deps: SessionDeps,
  ) {
    this.client = client;
    this.remote = client.remote;
    this.bindClient(client);
    this.startupTimer = setTimeout(() => {
      metrics.connectionsRejected.inc({ reason: 'startup_timeout' });
      const why = `startup not completed within ${deps.startupTimeoutMs} ms`;
      // Before a whole startup packet Postgres's own timeout exits without a
      // word (StartupPacketTimeoutHandler): a client that never spoke hears nothing.
      if (this.phase === 'startup') {
        this.deps.logger.warn({ client: this.remote }, why);
        this.close(why);
      } else {
        this.fatal('08P01', why);
      }
    }, deps.startupTimeoutMs);
    this.startupTimer.unref();
  }

  /** In a transaction or with statements in flight: what a graceful drain waits for. */
  get busy(): boolean {
    return this.phase !== 'ready' || !this.sql.idle || this.round.inFlight > 0;
  }

  private bindClient(t: Transport): void {
    this.client = t;
    t.bind({
      data: (chunk) => this.onClientData(chunk),
      closed: (err) => {
        if (err) this.close(`client error: ${err.message}`);
        // Part of a startup packet, then EOF: Postgres logs "incomplete startup packet" and closes.
        else if (this.startup?.partial && !this.closed) this.dropStartup('incomplete startup packet');
        else this.close('client closed');
      },
    });
  }

  // ---- startup phase -------------------------------------------------------

  private onClientData(chunk: Buffer): void {
    this.bytesIn += chunk.length;
    metrics.bytes.inc({ direction: 'client_to_server' }, chunk.length);
    try {
      if (this.startup) {
        this.onStartupData(this.startup, chunk);
        return;
      }
      if (!this.clientScanner) {
        this.holdEarly(chunk);
        return;
      }
      this.forward(this.upstream!, this.client, this.clientScanner.push(chunk));
    } catch (e) {
      this.protocolFailure(e);
    }
  }

  private onStartupData(reader: StartupReader, chunk: Buffer): void {
    for (const event of reader.push(chunk)) {
      if (event.kind !== 'startup') {
        if (!negotiate(event, reader, this, this.deps)) return;
        continue;
      }
      this.startup = undefined;
      // What Postgres refuses with a reply goes to the server, which refuses it in its own words.
      if (event.violation) this.startupViolation(event.violation);
      this.repeatedRequest = event.repeated;
      this.rawReply = event.violation !== undefined && event.repeated === undefined;
      this.onStartupMessage(event.startup.params, event.packet);
      if (event.rest.length > 0) this.holdEarly(event.rest);
      return;
    }
  }

  /** A startup-phase violation that Postgres answers by closing without a reply: counted and logged only. */
  private dropStartup(message: string): void {
    this.startupViolation(message);
    this.close(message);
  }

  /** Operators see every startup violation, whoever answers it (or nobody). */
  startupViolation(message: string): void {
    metrics.protocolErrors.inc({ reason: 'bad_startup' });
    this.deps.logger.warn(
      { client: this.remote, reason: 'bad_startup', error: message },
      'protocol violation',
    );
  }

  /** TLS is up: the session reads and writes the secure transport from now on. */
  replaceClient(t: Transport): void {
    this.bindClient(t);
  }

  /**
   * A client may pipeline messages right after its startup packet, before the
   * upstream connection exists: hold them (and stop reading) until it does,
   * then relay them in order, as Postgres reads them from its socket buffer.
   */
  private holdEarly(chunk: Buffer): void {
    this.early = this.early ? Buffer.concat([this.early, chunk]) : chunk;
    this.client.pause();
  }

  private onStartupMessage(params: Map<string, string>, packet: Buffer): void {
    this.phase = 'auth';
    this.user = params.get('user') ?? '';
    this.database = params.get('database') || this.user;
    this.sql = new SessionSqlState(this.user);
    this.round = new Round(
      this.deps.store,
      this.sql,
      this.statements,
      this.database,
      this.deps.logger,
      this.remote,
    );
    const rules = this.deps.store.current.rules.session;
    const sp = params.get('search_path') ?? searchPathFromOptions(params.get('options'));
    const start = sp !== undefined ? rules.parseSearchPath(sp) : rules.defaultSearchPath?.(this.user);
    if (start !== undefined) this.sql.startWith(start);
    const target = this.deps.upstream();
    openUpstream(target, this.deps.connect, () => this.serverReadBuffer()).then(
      (up) => this.upstreamReady(up, packet),
      (err: Error) => this.fatal('08001', err.message),
    );
  }

  private upstreamReady(up: Transport, packet: Buffer): void {
    if (this.closed) {
      up.destroy();
      return;
    }
    this.upstream = up;
    this.clientMessages = new ClientMessages({
      queue: this.queue,
      round: this.round,
      sql: this.sql,
      statements: this.statements,
      sendToClient: (bytes) => this.forward(this.client, this.upstream!, bytes),
    });
    this.serverReplies = new ServerReplies({
      queue: this.queue,
      round: this.round,
      sql: this.sql,
      statements: this.statements,
      serverSaidFatal: () => {
        this.serverSaidFatal = true;
      },
    });
    this.serverScanner = new MessageScanner(this.authSink);
    this.clientScanner = new MessageScanner(this.clientMessages, this.deps.maxMessageBytes);
    up.bind({
      data: (chunk) => this.onServerData(chunk),
      closed: (err) => this.upstreamLost(err ? err.message : 'upstream closed'),
    });
    up.write([packet]);
    const early = this.early;
    this.early = undefined;
    if (early) {
      this.client.resume();
      try {
        this.forward(up, this.client, this.clientScanner.push(early));
      } catch (e) {
        this.protocolFailure(e);
      }
    }
  }

  private upstreamLost(why: string): void {
    if (this.closed) return;
    if (this.clientMessages?.terminating || this.serverSaidFatal) {
      this.close(why);
      return;
    }
    // Postgres normally says why before it hangs up (the FATAL is relayed); a
    // bare close mid-session still gets an error the client can show.
    if (this.phase === 'ready' && !this.client.destroyed) {
      this.fatal('08006', `upstream connection lost: ${why}`);
    } else {
      this.close(why);
    }
  }

  /**
   * The buffer the next server read lands in. Forwarded slices point into it,
   * so while the client transport still holds unsent bytes it gets a new one.
   */
  private serverReadBuffer(): Buffer {
    if (this.readBuf === undefined || this.client.pendingBytes > 0) {
      this.readBuf = Buffer.allocUnsafe(SERVER_READ_BYTES);
    }
    return this.readBuf;
  }

  private onServerData(chunk: Buffer): void {
    this.bytesOut += chunk.length;
    metrics.bytes.inc({ direction: 'server_to_client' }, chunk.length);
    if (this.rawReply) {
      this.forward(this.client, this.upstream!, [chunk]);
      return;
    }
    try {
      this.forward(this.client, this.upstream!, this.serverScanner!.push(chunk));
    } catch (e) {
      this.deps.logger.error({ err: e, client: this.remote }, 'malformed message from upstream');
      this.fatal('08P01', `malformed message from upstream: ${(e as Error).message}`);
    }
  }

  /** Writes pieces to `to`; pauses `from` while `to` cannot keep up (bounded memory). */
  private forward(to: Transport, from: Transport, pieces: Buffer[]): void {
    if (pieces.length === 0 || to.destroyed) return;
    if (!to.write(pieces) && !from.paused) {
      from.pause();
      to.onceDrain(() => from.resume());
    }
  }

  // ---- server messages -----------------------------------------------------

  /** Until ReadyForQuery the server's messages are authentication replies; then ServerReplies takes over. */
  private readonly authSink: FrameSink = {
    header: () => Action.Inspect,
    inspect: (type, msg) => this.onAuthReply(type, msg),
  };

  private onAuthReply(type: number, msg: Buffer): Buffer | undefined {
    const r = authReply(type, msg, this.repeatedRequest);
    if (r === undefined) return undefined;
    if ('ready' in r) {
      this.phase = 'ready';
      this.serverScanner!.switchTo(this.serverReplies!);
      this.sql.txStatus = r.ready;
      if (this.startupTimer) clearTimeout(this.startupTimer);
      this.round.reset();
      this.deps.logger.info(
        { client: this.remote, user: this.user, database: this.database, session: this.id },
        'session ready',
      );
      return undefined;
    }
    if ('refused' in r) {
      this.serverSaidFatal = true;
      const e = errorText(r.refused ?? msg);
      this.deps.logger.info(
        { client: this.remote, user: this.user, code: e.code, error: e.message },
        'startup refused',
      );
      return r.refused;
    }
    return r.replace;
  }

  // ---- errors and shutdown -------------------------------------------------

  private protocolFailure(e: unknown): void {
    if (e instanceof ProtocolError) {
      metrics.protocolErrors.inc({ reason: e.reason });
      this.deps.logger.warn(
        { client: this.remote, reason: e.reason, error: e.message },
        'protocol violation',
      );
      this.fatal('08P01', e.message);
      return;
    }
    this.deps.logger.error({ err: e, client: this.remote }, 'session failure');
    this.fatal('XX000', `internal proxy error: ${(e as Error).message}`);
  }

  /** Sends a FATAL ErrorResponse to the client and ends the session. */
  fatal(code: string, message: string): void {
    if (this.closed) return;
    if (this.client.writable) {
      this.client.end(errorResponse({ severity: 'FATAL', code, message: `switchyard: ${message}` }));
    }
    this.close(message);
  }

  /** Ends the session after an administrator command (graceful shutdown). */
  terminate(message: string): void {
    this.fatal('57P01', message);
  }

  close(why: string): void {
    if (this.closed) return;
    this.closed = true;
    if (this.startupTimer) clearTimeout(this.startupTimer);
    this.upstream?.destroy();
    if (!this.client.destroyed) {
      // A FIN after what is still queued (the server's FATAL, say), never a
      // reset: closing a socket that holds unread client bytes makes the kernel
      // send RST, and the client's kernel may then drop the error it has not read.
      this.client.end();
      setTimeout(() => this.client.destroy(), 1000).unref();
    }
    this.deps.logger.info(
      {
        client: this.remote,
        user: this.user,
        database: this.database,
        session: this.id,
        durationMs: Date.now() - this.openedAt,
        bytesIn: this.bytesIn,
        bytesOut: this.bytesOut,
        reason: why,
      },
      'connection closed',
    );
    this.deps.onClose(this);
  }
}

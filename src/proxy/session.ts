// One client connection and its own upstream connection (session mode).
// See docs/connection-lifecycle.md for the states and the reply queue.
import net from 'node:net';
import type { Logger } from 'pino';
import { metrics } from '../admin/metrics.ts';
import type { ConfigStore, Snapshot } from '../config/store.ts';
import { AUTH_SASL, Backend, Frontend, StartupCode } from '../wire/codes.ts';
import {
  readBind,
  readExecute,
  readParse,
  readQuery,
  readStartup,
  readTarget,
  type StartupPacket,
} from '../wire/reader.ts';
import { Action, type FrameSink, MessageScanner, ProtocolError } from '../wire/scanner.ts';
import {
  closeMessage,
  describeMessage,
  errorResponse,
  NO_DATA,
  parseMessage,
  queryMessage,
  rebind,
  SSL_NO,
} from '../wire/writer.ts';
import { countMirroredStatementError } from './mirror-errors.ts';
import { disguise as disguiseRepeated, restore as restoreRepeated } from './repeated-request.ts';
import { Kind, type Observer, ReplyQueue } from './reply-queue.ts';
import {
  errorText,
  mirrorTag,
  readCountRow,
  restoreOrigins,
  stripLastColumn,
  stripLastField,
  tagCount,
} from './reshape.ts';
import type { Plan, PlanContext, SessionRules, SqlPrepared, StatementShape } from './rules-port.ts';

export interface UpstreamTarget {
  host: string;
  port: number;
  connectTimeoutMs: number;
  /** Upgrades a fresh upstream socket to TLS when configured; undefined = plain. */
  secure?: (socket: net.Socket) => Promise<net.Socket>;
}

export interface SessionDeps {
  store: ConfigStore<{ session: SessionRules }>;
  upstream: () => UpstreamTarget;
  logger: Logger;
  maxMessageBytes: number;
  startupTimeoutMs: number;
  /** Terminates TLS from the client when configured (answers SSLRequest with S). */
  tls?: (socket: net.Socket) => Promise<net.Socket>;
  /** Whether SCRAM-SHA-256-PLUS must be hidden from the client (TLS ends here). */
  onClose: (s: Session) => void;
}

/** Postgres's MAX_STARTUP_PACKET_LENGTH counts the body after the length word: 10000 + 4 in all. */
const MAX_STARTUP_PACKET = 10_000 + 4;
/** What Postgres says when bytes follow an SSLRequest/GSSENCRequest before its answer was read. */
const INJECTION_DETAIL =
  'This could be either a client-software bug or evidence of an attempted man-in-the-middle attack.';
/** Size of the buffer server reads land in: as large as libuv's default read. */
const SERVER_READ_BYTES = 64 * 1024;
const PASSTHROUGH_OBSERVER = (): Observer => ({
  latency: metrics.statementLatency.labels('passthrough', ''),
  route: 'passthrough',
  mapping: '',
});

interface StatementInfo {
  sql: string;
  paramTypes: number[];
  /** undefined: the statement names no mapped table and is never re-planned. */
  plan?: Plan;
  version: number;
  /** The name the server knows the current plan under. */
  serverName: string;
  /** The SQL prepared under serverName (the client's text or its rewrite). */
  serverSql: string;
  /** Earlier server-side names of re-planned versions, closed with the statement. */
  retired: string[];
}

interface PortalInfo {
  shape: StatementShape;
  observer: Observer;
  binary: boolean;
}

let internalCounter = 0;
let sessionCounter = 0;

export class Session {
  readonly id = ++sessionCounter;
  readonly openedAt = Date.now();
  private upstream?: net.Socket;
  private client: net.Socket;
  private closed = false;
  private phase: 'startup' | 'auth' | 'ready' = 'startup';
  private startupBuf: Buffer = Buffer.alloc(0);
  private startupTimer?: NodeJS.Timeout;
  /**
   * Encryption requests already answered, as Postgres keeps them (ssl_done,
   * gss_done): a refusal marks its own kind, an accepted TLS both, and a
   * request of a kind already marked is read as a startup packet.
   */
  private sslDone = false;
  private gssDone = false;
  /** The code of a repeated encryption request sent on disguised (see repeated-request.ts). */
  private repeatedRequest?: number;
  /**
   * The startup asked for a protocol other than 3.x: the server refuses it and
   * closes, in the old protocol's framing for 1.x and 2.x ('E' + text). Its
   * bytes go to the client as they come, unframed.
   */
  private rawReply = false;
  private clientScanner?: MessageScanner;
  private serverScanner?: MessageScanner;
  private readBuf?: Buffer;
  /** Client bytes that followed the startup packet before the upstream connection was up. */
  private early?: Buffer;
  private queue = new ReplyQueue();
  /** Transaction status from the last ReadyForQuery: I, T or E. */
  txStatus = 0x49;
  /** Sync/Query entries in flight: the session is idle only at zero. */
  private roundsInFlight = 0;
  private snap!: Snapshot<{ session: SessionRules }>;
  private killSwitch = false;
  private rulesApply = false;
  private searchPath: string[] = ['$user', 'public'];
  /** What RESET search_path returns to: the startup setting or the server default. */
  private defaultSearchPath: string[] = ['$user', 'public'];
  private localSearchPath?: string[];
  /** search_path when the current transaction began, kept once the transaction changes it: ROLLBACK restores it. */
  private txSearchPath?: string[];
  /** Savepoints of the current transaction with the search_path at each, for ROLLBACK TO. */
  private savepoints: { name: string; path: string[] }[] = [];
  /** Tag of the last CommandComplete while txSearchPath is kept: COMMIT or ROLLBACK. */
  private lastTag = '';
  /** Whom "$user" names after SET ROLE / SET SESSION AUTHORIZATION (undefined: the login role). */
  private roles: Roles = {};
  /** SET LOCAL ROLE ...: in force until the transaction ends. */
  private localRoles?: Roles;
  /** roles when the current transaction began, kept once it changes them: ROLLBACK restores them. */
  private txRoles?: Roles;
  /** Some statement was prepared rewritten: Bind/Describe/Close/Execute must be followed even with no rules. */
  private everRewritten = false;
  private statements = new Map<string, StatementInfo>();
  /** SQL PREPAREs of writes on mapped tables, by name: what each EXECUTE runs (see rules/prepared.ts). */
  private readonly sqlPrepared = new Map<string, SqlPrepared>();
  private portals = new Map<string, PortalInfo>();
  /** After a rejected extended-protocol message: drop client messages until Sync, like the server would. */
  private skipToSync = false;
  /** A reject answered by the proxy inside a transaction: abort the server's transaction at the next Sync. */
  private abortAtSync?: string;
  private passthroughObserver = PASSTHROUGH_OBSERVER();
  /** The client sent Terminate: the upstream closing next is expected. */
  private terminating = false;
  /** The server sent a FATAL error: it explained the close itself. */
  private serverSaidFatal = false;
  user = '';
  database = '';
  bytesIn = 0;
  bytesOut = 0;
  readonly remote: string;

  constructor(
    socket: net.Socket,
    private readonly deps: SessionDeps,
  ) {
    this.client = socket;
    this.remote = `${socket.remoteAddress}:${socket.remotePort}`;
    socket.setNoDelay(true);
    this.attachClient(socket);
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
    return this.phase !== 'ready' || this.txStatus !== 0x49 || this.roundsInFlight > 0;
  }

  private attachClient(socket: net.Socket): void {
    this.client = socket;
    socket.on('data', (chunk: Buffer) => this.onClientData(chunk));
    socket.on('error', (err) => this.close(`client error: ${err.message}`));
    socket.on('close', () => {
      // Part of a startup packet, then EOF: Postgres logs "incomplete startup packet" and closes.
      if (this.phase === 'startup' && this.startupBuf.length > 0 && !this.closed) {
        this.dropStartup('incomplete startup packet');
      } else {
        this.close('client closed');
      }
    });
  }

  // ---- startup phase -------------------------------------------------------

  private onClientData(chunk: Buffer): void {
    this.bytesIn += chunk.length;
    metrics.bytes.inc({ direction: 'client_to_server' }, chunk.length);
    try {
      if (this.phase === 'startup') {
        this.onStartupData(chunk);
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

  private onStartupData(chunk: Buffer): void {
    this.startupBuf = this.startupBuf.length === 0 ? chunk : Buffer.concat([this.startupBuf, chunk]);
    while (!this.closed && this.phase === 'startup' && this.startupBuf.length >= 4) {
      const len = this.startupBuf.readInt32BE(0);
      if (len < 8 || len > MAX_STARTUP_PACKET) {
        // node-postgres's end() right after connect() sends Terminate here.
        this.dropStartup(`invalid length of startup packet (${len})`);
        return;
      }
      if (this.startupBuf.length < len) return;
      const packet = this.startupBuf.subarray(0, len);
      this.startupBuf = this.startupBuf.subarray(len);
      this.onStartupPacket(packet);
    }
  }

  /**
   * One untyped packet, judged as ProcessStartupPacket does: what Postgres
   * refuses without a reply is closed without one; what it answers (a repeated
   * encryption request or an unsupported protocol version is a FATAL 0A000, a
   * bad layout 08P01) is sent on to the server, which answers itself.
   */
  private onStartupPacket(packet: Buffer): void {
    const code = packet.readInt32BE(4);
    if (code === StartupCode.CancelRequest) {
      this.relayCancel(packet);
      return;
    }
    if (code === StartupCode.SSLRequest && !this.sslDone) {
      this.sslDone = true;
      if (this.deps.tls) {
        // Bytes already here were sent in the clear before the handshake: anyone
        // on the path could have injected them (CVE-2021-23214). Refuse them.
        if (this.startupBuf.length > 0) {
          this.refuseInjected('received unencrypted data after SSL request');
          return;
        }
        this.gssDone = true;
        this.client.removeAllListeners('data');
        this.client.write('S');
        this.upgradeClient();
        return;
      }
      this.client.write(SSL_NO);
      if (this.startupBuf.length > 0) this.refuseInjected('received unencrypted data after SSL request');
      return;
    }
    if (code === StartupCode.GSSENCRequest && !this.gssDone) {
      this.gssDone = true;
      this.client.write(SSL_NO);
      if (this.startupBuf.length > 0) {
        this.refuseInjected('received unencrypted data after GSSAPI encryption request');
      }
      return;
    }
    if (code >> 16 !== 3) {
      this.startupViolation(`unsupported frontend protocol ${code >>> 16}.${code & 0xffff}`);
    }
    const repeated = code === StartupCode.SSLRequest || code === StartupCode.GSSENCRequest;
    if (repeated) this.repeatedRequest = code;
    else if (code >> 16 !== 3) this.rawReply = true;
    const startup = readStartup(packet);
    const rest = this.startupBuf;
    this.startupBuf = Buffer.alloc(0);
    this.onStartupMessage(startup, repeated ? disguiseRepeated(packet) : Buffer.from(packet));
    if (rest.length > 0) this.holdEarly(Buffer.from(rest));
  }

  /** A startup-phase violation that Postgres answers by closing without a reply: counted and logged only. */
  private dropStartup(message: string): void {
    this.startupViolation(message);
    this.close(message);
  }

  /** Clear-text bytes behind an encryption request: Postgres's FATAL, word for word. */
  private refuseInjected(message: string): void {
    this.startupViolation(message);
    if (!this.client.destroyed && this.client.writable) {
      this.client.end(errorResponse({ severity: 'FATAL', code: '08P01', message, detail: INJECTION_DETAIL }));
    }
    this.close(message);
  }

  /** Operators see every startup violation, whoever answers it (or nobody). */
  private startupViolation(message: string): void {
    metrics.protocolErrors.inc({ reason: 'bad_startup' });
    this.deps.logger.warn(
      { client: this.remote, reason: 'bad_startup', error: message },
      'protocol violation',
    );
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

  private upgradeClient(): void {
    const raw = this.client;
    raw.removeAllListeners('error');
    raw.removeAllListeners('close');
    raw.on('error', () => this.close('client error during TLS'));
    this.deps.tls!(raw).then(
      (secure) => {
        if (this.closed) {
          secure.destroy();
          return;
        }
        this.attachClient(secure);
      },
      (err: Error) => this.close(`TLS handshake failed: ${err.message}`),
    );
  }

  private relayCancel(packet: Buffer): void {
    // The client holds the server's own key data (BackendKeyData is relayed
    // untouched), so the request is forwarded as it is.
    const target = this.deps.upstream();
    const s = net.connect({ host: target.host, port: target.port });
    s.setTimeout(target.connectTimeoutMs, () => s.destroy());
    s.on('connect', () => s.end(packet));
    s.on('error', () => {});
    s.on('close', () => {});
    this.deps.logger.debug({ client: this.remote }, 'cancel request relayed');
    this.close('cancel request');
  }

  private onStartupMessage(startup: StartupPacket, packet: Buffer): void {
    this.phase = 'auth';
    this.user = startup.params.get('user') ?? '';
    this.database = startup.params.get('database') || this.user;
    const rules = this.deps.store.current.rules.session;
    const sp = startup.params.get('search_path') ?? searchPathFromOptions(startup.params.get('options'));
    const start = sp !== undefined ? rules.parseSearchPath(sp) : rules.defaultSearchPath?.(this.user);
    if (start !== undefined) this.searchPath = this.defaultSearchPath = start;
    this.connectUpstream(packet);
  }

  private connectUpstream(packet: Buffer): void {
    const target = this.deps.upstream();
    // Plain TCP reads into a buffer the session keeps (no allocation and no
    // stream machinery per read); TLS reads through its own socket.
    const sock = target.secure
      ? net.connect({ host: target.host, port: target.port })
      : net.connect({
          host: target.host,
          port: target.port,
          onread: {
            buffer: () => this.serverReadBuffer(),
            callback: (n: number, buf: Uint8Array) => {
              this.onServerData((buf as Buffer).subarray(0, n));
              return true;
            },
          },
        });
    sock.setNoDelay(true);
    let connected = false;
    const timer = setTimeout(() => {
      if (connected) return;
      metrics.upstreamConnectErrors.inc({ reason: 'timeout' });
      sock.destroy();
      this.fatal(
        '08001',
        `could not connect to upstream ${target.host}:${target.port}: timeout after ${target.connectTimeoutMs} ms`,
      );
    }, target.connectTimeoutMs);
    sock.once('error', (err: NodeJS.ErrnoException) => {
      if (connected) return;
      clearTimeout(timer);
      metrics.upstreamConnectErrors.inc({ reason: err.code ?? 'error' });
      this.fatal(
        '08001',
        `could not connect to upstream ${target.host}:${target.port}: ${err.code ?? err.message}`,
      );
    });
    sock.once('connect', async () => {
      if (this.closed) {
        clearTimeout(timer);
        sock.destroy();
        return;
      }
      let up: net.Socket = sock;
      try {
        // The timeout covers the TLS handshake too: a server that accepts and never answers is not usable.
        if (target.secure) up = await target.secure(sock);
      } catch (err) {
        if (connected) return;
        connected = true;
        clearTimeout(timer);
        metrics.upstreamConnectErrors.inc({ reason: 'tls' });
        sock.destroy();
        this.fatal('08001', `upstream TLS failed: ${(err as Error).message}`);
        return;
      }
      if (connected) {
        up.destroy();
        return;
      }
      connected = true;
      clearTimeout(timer);
      if (this.closed) {
        up.destroy();
        return;
      }
      this.upstream = up;
      this.serverScanner = new MessageScanner(this.serverSink);
      this.clientScanner = new MessageScanner(this.clientSink, this.deps.maxMessageBytes);
      if (target.secure) up.on('data', (chunk: Buffer) => this.onServerData(chunk));
      up.on('error', (err) => this.upstreamLost(err.message));
      up.on('close', () => this.upstreamLost('upstream closed'));
      up.write(packet);
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
    });
  }

  private upstreamLost(why: string): void {
    if (this.closed) return;
    if (this.terminating || this.serverSaidFatal) {
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
   * so while the client socket still holds unsent bytes it gets a new one.
   */
  private serverReadBuffer(): Buffer {
    if (this.readBuf === undefined || this.client.writableLength > 0) {
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
  private forward(to: net.Socket, from: net.Socket, pieces: Buffer[]): void {
    if (pieces.length === 0 || to.destroyed) return;
    let ok: boolean;
    if (pieces.length === 1) {
      ok = to.write(pieces[0]);
    } else {
      to.cork();
      for (const p of pieces) to.write(p);
      to.uncork();
      ok = to.writableLength < to.writableHighWaterMark;
    }
    if (!ok && !from.isPaused()) {
      from.pause();
      to.once('drain', () => from.resume());
    }
  }

  // ---- client messages -----------------------------------------------------

  private readonly clientSink: FrameSink = {
    header: (type) => {
      if (this.skipToSync) return Action.Inspect;
      switch (type) {
        case Frontend.Query:
        case Frontend.Parse:
          return Action.Inspect;
        case Frontend.Bind:
        case Frontend.Describe:
        case Frontend.Close:
        case Frontend.Execute:
          // The round's config decides whether the message must be opened.
          this.beginRound();
          if (this.rulesApply || this.everRewritten) return Action.Inspect;
          this.pushSimple(type);
          return Action.Pass;
        case Frontend.Sync:
          if (this.abortAtSync !== undefined) return Action.Inspect;
          this.beginRound();
          this.queue.push({ kind: Kind.Sync, swallow: false });
          this.roundsInFlight++;
          return Action.Pass;
        case Frontend.FunctionCall:
          this.beginRound();
          this.queue.push({
            kind: Kind.Query,
            swallow: false,
            start: performance.now(),
            observer: this.passthroughObserver,
          });
          this.roundsInFlight++;
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
    },
    inspect: (type, msg) => {
      if (this.skipToSync) {
        if (type !== Frontend.Sync) return null;
        this.skipToSync = false;
        return this.clientSink.inspect(type, msg);
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
          return this.onSyncAbort(msg);
      }
      return undefined;
    },
  };

  /** Bookkeeping for messages forwarded without being opened. */
  private pushSimple(type: number): void {
    this.beginRound();
    switch (type) {
      case Frontend.Bind:
        this.queue.push({ kind: Kind.Bind, swallow: false });
        break;
      case Frontend.Describe:
        this.queue.push({ kind: Kind.Describe, swallow: false });
        break;
      case Frontend.Close:
        this.queue.push({ kind: Kind.Close, swallow: false });
        break;
      case Frontend.Execute:
        metrics.statements.inc(PT_LABELS);
        this.queue.push({
          kind: Kind.Execute,
          swallow: false,
          start: performance.now(),
          observer: this.passthroughObserver,
        });
        break;
    }
  }

  /** At the first message of a round while idle, the session takes the config in force. */
  private beginRound(): void {
    if (this.roundsInFlight > 0 || this.txStatus !== 0x49) return;
    const snap = this.deps.store.current;
    if (snap === this.snap) return;
    this.snap = snap;
    const rules = snap.rules.session;
    this.killSwitch = this.deps.store.killSwitch;
    this.rulesApply = rules.active && (rules.database === undefined || rules.database === this.database);
  }

  private planContext(): PlanContext {
    return {
      searchPath: this.localSearchPath ?? this.searchPath,
      user: currentRole(this.localRoles ?? this.roles) ?? this.user,
      killSwitch: this.killSwitch,
      onUnmirrorable: this.snap.config.onUnmirrorable,
      version: this.snap.version,
      defaultSearchPath: this.defaultSearchPath,
      prepared: this.sqlPrepared,
    };
  }

  private plan(sql: string): Plan | undefined {
    if (!this.rulesApply) return undefined;
    const plan = this.snap.rules.session.plan(sql, this.planContext());
    for (const p of plan.prepared ?? []) this.sqlPrepared.set(p.name, p);
    if (plan.unmirrored) {
      metrics.unmirroredWrites.inc({ mapping: plan.unmirrored.mapping, reason: plan.unmirrored.reason });
      this.deps.logger.warn(
        {
          client: this.remote,
          mapping: plan.unmirrored.mapping,
          reason: plan.unmirrored.reason,
          rejected: !!plan.reject,
        },
        'write to a mapped table cannot be mirrored',
      );
    }
    return plan;
  }

  /**
   * Follows what a statement the client sent does to name resolution, after
   * it was planned (a SET applies to the statements after it): search_path
   * changes, and the savepoints and rollbacks that undo them.
   */
  private trackSearchPath(sql: string): void {
    if (!this.rulesApply) return;
    if (this.txStatus !== 0x49 && TX_CONTROL.test(sql)) this.trackSavepoint(sql);
    this.trackRoles(sql);
    if (!SEARCH_PATH_HINT.test(sql)) return;
    const change = this.snap.rules.session.searchPathChange(sql);
    if (!change) return;
    const value = change.value ?? this.defaultSearchPath;
    if (change.local) {
      this.localSearchPath = value;
      return;
    }
    if (this.txStatus !== 0x49 && this.txSearchPath === undefined) this.txSearchPath = this.searchPath;
    this.searchPath = value;
  }

  /** SET ROLE and SET SESSION AUTHORIZATION change what "$user" names (savepoint rollbacks are not followed). */
  private trackRoles(sql: string): void {
    for (const c of this.snap.rules.session.roleChanges?.(sql) ?? []) {
      const apply = (r: Roles): Roles =>
        c.what === 'role' ? { ...r, role: c.role ?? undefined } : { session: c.role ?? undefined };
      if (c.local) {
        // SET LOCAL outside a transaction block has no effect.
        if (this.txStatus !== 0x49) this.localRoles = apply(this.localRoles ?? this.roles);
        continue;
      }
      if (this.txStatus !== 0x49 && this.txRoles === undefined) this.txRoles = this.roles;
      this.roles = apply(this.roles);
      this.localRoles = undefined;
    }
  }

  private trackSavepoint(sql: string): void {
    const m = SAVEPOINT_STMT.exec(sql);
    if (!m) return;
    const name = m[2].startsWith('"') ? m[2].slice(1, -1).replaceAll('""', '"') : m[2].toLowerCase();
    const verb = m[1].toLowerCase();
    const at = this.savepoints.findLastIndex((sp) => sp.name === name);
    if (verb === 'savepoint') {
      this.savepoints.push({ name, path: this.searchPath });
    } else if (at >= 0 && verb === 'release') {
      this.savepoints.length = at;
    } else if (at >= 0) {
      this.searchPath = this.savepoints[at].path;
      this.savepoints.length = at + 1;
    }
  }

  /** At the end of a transaction: a rollback undoes the transaction's search_path changes. */
  private endTransaction(previous: number): void {
    this.localSearchPath = undefined;
    this.portals.clear();
    this.savepoints.length = 0;
    const rolledBack = previous === 0x45 || this.lastTag.startsWith('ROLLBACK');
    if (this.txSearchPath !== undefined && rolledBack) {
      this.searchPath = this.txSearchPath;
    }
    this.txSearchPath = undefined;
    if (this.txRoles !== undefined && rolledBack) this.roles = this.txRoles;
    this.txRoles = undefined;
    this.localRoles = undefined;
    this.lastTag = '';
  }

  private observerFor(plan: Plan | undefined): Observer {
    if (!plan || (plan.route === 'passthrough' && plan.mapping === '')) return this.passthroughObserver;
    return {
      latency: metrics.statementLatency.labels(plan.route, plan.mapping),
      route: plan.route,
      mapping: plan.mapping,
    };
  }

  private onQuery(msg: Buffer): Buffer | Buffer[] | undefined {
    this.beginRound();
    this.roundsInFlight++;
    const sql = readQuery(msg);
    const closes = DEALLOCATE_HINT.test(sql) ? this.forgetStatements(sql) : NONE;
    const plan = this.plan(sql);
    this.trackSearchPath(sql);
    const observer = this.observerFor(plan);
    metrics.statements.inc({ route: observer.route, mapping: observer.mapping });
    if (plan?.reject) {
      // The server raises the error itself, so an open transaction is aborted
      // exactly as it would be for any failed statement.
      this.queue.push({ kind: Kind.Query, swallow: false, start: performance.now(), observer });
      return [...closes, queryMessage(raiseSql(plan.reject.message))];
    }
    this.queue.push({
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
  private forgetStatements(sql: string): Buffer[] {
    const m = /^\s*(?:deallocate\s+(?:prepare\s+)?(all|"(?:[^"]|"")+"|\w+)|discard\s+all)\s*;?\s*$/i.exec(
      sql,
    );
    if (!m) return NONE;
    if (m[1] === undefined || m[1].toLowerCase() === 'all') {
      this.statements.clear();
      this.sqlPrepared.clear();
      return NONE;
    }
    const name = m[1].startsWith('"') ? m[1].slice(1, -1).replaceAll('""', '"') : m[1].toLowerCase();
    this.sqlPrepared.delete(name);
    const info = this.statements.get(name);
    if (!info) return NONE;
    this.statements.delete(name);
    return this.retire(info);
  }

  private onParse(msg: Buffer): Buffer | Buffer[] | null | undefined {
    this.beginRound();
    const p = readParse(msg);
    const out: Buffer[] = [];
    const prev = this.statements.get(p.name);
    if (prev) out.push(...this.retire(prev));
    const plan = this.plan(p.query);
    this.trackSearchPath(p.query);
    if (plan?.reject) {
      this.statements.delete(p.name);
      this.rejectExtended(plan.reject.message);
      return out.length ? out : null;
    }
    // Every statement is remembered, so a reload that adds (or removes) a
    // mapping reaches statements prepared before it.
    this.statements.set(p.name, {
      sql: p.query,
      paramTypes: p.paramTypes,
      plan,
      version: this.snap.version,
      serverName: p.name,
      serverSql: plan?.rewritten ? plan.sql : p.query,
      retired: [],
    });
    if (plan?.rewritten) this.everRewritten = true;
    this.queue.push({ kind: Kind.Parse, swallow: false });
    if (plan?.rewritten) out.push(parseMessage(p.name, plan.sql, p.paramTypes));
    else out.push(msg);
    return out.length === 1 && out[0] === msg ? undefined : out;
  }

  /** Closes the server-side names of re-planned versions of a statement (replies swallowed). */
  private retire(info: StatementInfo): Buffer[] {
    const names = [...info.retired];
    if (info.serverName.startsWith(INTERNAL_PREFIX)) names.push(info.serverName);
    const out: Buffer[] = [];
    for (const n of new Set(names)) {
      this.queue.push({ kind: Kind.Close, swallow: true });
      out.push(closeMessage('S', n));
    }
    info.retired = [];
    return out;
  }

  /** The proxy answers an error for an extended-protocol message and skips to Sync, as the server would. */
  private rejectExtended(message: string): void {
    const err = errorResponse({ severity: 'ERROR', code: '0A000', message });
    this.pushSynthetic([err]);
    this.skipToSync = true;
    if (this.txStatus !== 0x49) this.abortAtSync = message;
  }

  private pushSynthetic(bytes: Buffer[]): void {
    if (this.queue.length === 0) {
      this.forward(this.client, this.upstream!, bytes);
      return;
    }
    this.queue.push({ kind: Kind.Synthetic, swallow: false, bytes });
  }

  /** The Sync after a rejected message inside a transaction: make the server abort it too. */
  private onSyncAbort(_msg: Buffer): Buffer {
    const message = this.abortAtSync ?? 'rejected';
    this.abortAtSync = undefined;
    this.beginRound();
    this.roundsInFlight++;
    // The client already has its ErrorResponse: swallow the server's copy, keep its ReadyForQuery.
    this.queue.push({ kind: Kind.Query, swallow: false, swallowError: true });
    return queryMessage(raiseSql(message));
  }

  private onBind(msg: Buffer): Buffer | Buffer[] | null | undefined {
    this.beginRound();
    const b = readBind(msg);
    const info = this.statements.get(b.statement);
    const out: Buffer[] = [];
    let serverName = b.statement;
    let plan = info?.plan;
    if (info && info.version !== this.snap.version) {
      // The config changed since this statement was planned: plan it again and
      // prepare the new text under an internal name if it differs.
      const next = this.plan(info.sql);
      info.version = this.snap.version;
      if (next?.reject) {
        this.rejectExtended(next.reject.message);
        return null;
      }
      const nextSql = next?.rewritten ? next.sql : info.sql;
      if (nextSql !== info.serverSql) {
        const name = `${INTERNAL_PREFIX}${++internalCounter}`;
        if (info.serverName.startsWith(INTERNAL_PREFIX)) info.retired.push(info.serverName);
        info.serverName = name;
        info.serverSql = nextSql;
        this.everRewritten = true;
        this.queue.push({ kind: Kind.Parse, swallow: true });
        out.push(parseMessage(name, nextSql, info.paramTypes));
      }
      info.plan = next;
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
    this.portals.set(b.portal, {
      shape,
      observer: this.observerFor(plan),
      binary:
        shape.kind === 'mirror' &&
        !shape.returning &&
        formats.length > 0 &&
        formats[formats.length - 1] === 1,
    });
    this.queue.push({ kind: Kind.Bind, swallow: false });
    if (serverName !== b.statement || formats !== b.resultFormats) {
      out.push(rebind(msg, b.portal, serverName, b.paramsStart, b.paramsEnd, formats, b.resultsEnd));
    } else {
      out.push(msg);
    }
    return out.length === 1 && out[0] === msg ? undefined : out;
  }

  private onDescribe(msg: Buffer): Buffer | undefined {
    this.beginRound();
    const d = readTarget(msg);
    let shape: StatementShape = FORWARD;
    let rename: string | undefined;
    if (d.kind === 'S') {
      const info = this.statements.get(d.name);
      if (info?.plan?.rewritten) shape = info.plan.statements[0] ?? FORWARD;
      if (info && info.serverName !== d.name) rename = info.serverName;
    } else {
      shape = this.portals.get(d.name)?.shape ?? FORWARD;
    }
    this.queue.push({ kind: Kind.Describe, swallow: false, shape });
    return rename !== undefined ? describeMessage('S', rename) : undefined;
  }

  private onClose(msg: Buffer): Buffer | Buffer[] | undefined {
    this.beginRound();
    const c = readTarget(msg);
    this.queue.push({ kind: Kind.Close, swallow: false });
    if (c.kind === 'P') {
      this.portals.delete(c.name);
      return undefined;
    }
    const info = this.statements.get(c.name);
    if (!info) return undefined;
    this.statements.delete(c.name);
    const extra = this.retire(info);
    return extra.length ? [msg, ...extra] : undefined;
  }

  private onExecute(msg: Buffer): Buffer | undefined {
    this.beginRound();
    const e = readExecute(msg);
    const portal = this.portals.get(e.portal);
    const observer = portal?.observer ?? this.passthroughObserver;
    metrics.statements.inc({ route: observer.route, mapping: observer.mapping });
    this.queue.push({
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

  // ---- server messages -----------------------------------------------------

  private readonly serverSink: FrameSink = {
    header: (type) => {
      if (this.phase !== 'ready') return Action.Inspect;
      switch (type) {
        case Backend.DataRow: {
          const e = this.queue.peek();
          if (e === undefined) return Action.Pass;
          const shape = this.queue.currentShape(e);
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
          this.queue.shift();
          return this.afterPop();
        }
        default:
          return Action.Inspect;
      }
    },
    inspect: (type, msg) => {
      if (this.phase !== 'ready') return this.onStartupReply(type, msg);
      return this.onReply(type, msg);
    },
  };

  /** After popping an entry: a made-up reply now at the head must follow the current message. */
  private afterPop(): Action {
    const head = this.queue.peek();
    return head?.kind === Kind.Synthetic ? Action.Inspect : Action.Pass;
  }

  private drainSynthetic(out: Buffer[]): void {
    for (let e = this.queue.peek(); e?.kind === Kind.Synthetic; e = this.queue.peek()) {
      this.queue.shift();
      if (e.bytes) out.push(...e.bytes);
    }
  }

  private onStartupReply(type: number, msg: Buffer): Buffer | undefined {
    if (type === Backend.ReadyForQuery) {
      this.phase = 'ready';
      this.txStatus = msg[5];
      if (this.startupTimer) clearTimeout(this.startupTimer);
      this.snap = undefined as unknown as Snapshot<{ session: SessionRules }>;
      this.beginRound();
      this.deps.logger.info(
        { client: this.remote, user: this.user, database: this.database, session: this.id },
        'session ready',
      );
    } else if (type === Backend.ErrorResponse) {
      this.serverSaidFatal = true;
      const restored =
        this.repeatedRequest === undefined ? undefined : restoreRepeated(msg, this.repeatedRequest);
      const e = errorText(restored ?? msg);
      this.deps.logger.info(
        { client: this.remote, user: this.user, code: e.code, error: e.message },
        'startup refused',
      );
      return restored;
    } else if (type === Backend.Authentication) {
      return stripChannelBinding(msg);
    }
    return undefined;
  }

  private onReply(type: number, msg: Buffer): Buffer | Buffer[] | null | undefined {
    const out: Buffer[] = [];
    const e = this.queue.peek();
    switch (type) {
      case Backend.ReadyForQuery: {
        const previous = this.txStatus;
        this.txStatus = msg[5];
        const head = this.queue.shift();
        if (head && (head.kind === Kind.Sync || head.kind === Kind.Query)) {
          this.roundsInFlight--;
          if (head.kind === Kind.Query && head.observer && head.start !== undefined) {
            head.observer.latency.observe((performance.now() - head.start) / 1000);
          }
        }
        if (this.txStatus === 0x49 && previous !== 0x49) this.endTransaction(previous);
        if (head?.swallow) break;
        out.push(msg);
        break;
      }
      case Backend.ErrorResponse: {
        if (isFatal(msg)) this.serverSaidFatal = true;
        if (!e) {
          out.push(msg);
          break;
        }
        if (e.observer) metrics.statementErrors.inc({ route: e.observer.route, mapping: e.observer.mapping });
        const shape = this.queue.currentShape(e);
        if (shape?.kind === 'mirror' && e.observer)
          countMirroredStatementError(msg, this.snap.rules.session, e.observer.mapping);
        if (e.kind === Kind.Query) {
          if (!e.swallowError) out.push(msg);
          break;
        }
        // Extended protocol: the server skips to Sync; drop what it will not answer.
        while (this.queue.peek() && this.queue.peek()!.kind !== Kind.Sync) this.queue.shift();
        out.push(msg);
        break;
      }
      case Backend.ParseComplete:
      case Backend.CloseComplete:
      case Backend.NoData: {
        this.queue.shift();
        if (!e?.swallow) out.push(msg);
        break;
      }
      case Backend.RowDescription: {
        const shape = e ? this.queue.currentShape(e) : undefined;
        if (e?.kind === Kind.Describe) this.queue.shift();
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
        const shape = e ? this.queue.currentShape(e) : undefined;
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
        const shape = e ? this.queue.currentShape(e) : undefined;
        if (
          (this.txSearchPath !== undefined || this.txRoles !== undefined) &&
          type === Backend.CommandComplete
        ) {
          this.lastTag = msg.toString('latin1', 5, Math.min(msg.length - 1, 13));
        }
        if (shape?.kind === 'mirror' && type === Backend.CommandComplete) {
          out.push(mirrorTag(shape.tag, shape.returning ? tagCount(msg) : (e!.count ?? 0)));
          e!.count = undefined;
        } else {
          out.push(msg);
        }
        if (e?.kind === Kind.Execute) {
          this.queue.shift();
          if (e.observer && e.start !== undefined)
            e.observer.latency.observe((performance.now() - e.start) / 1000);
        } else if (e?.kind === Kind.Query && e.shapes) {
          e.shapeIndex = (e.shapeIndex ?? 0) + 1;
        }
        break;
      }
      default:
        out.push(msg);
    }
    this.drainSynthetic(out);
    return out.length === 1 && out[0] === msg ? undefined : out;
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
    if (!this.client.destroyed && this.client.writable) {
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
      if (this.client.writableLength > 0 || this.client.writableEnded) this.client.end();
      else this.client.destroy();
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

const FORWARD: StatementShape = { kind: 'forward' };
const NONE: Buffer[] = [];
// A Unicode-escaped name (SET U&"\0073earch_path") can spell search_path without the word.
const SEARCH_PATH_HINT = /search_path|reset\s+all|discard\s+all|u&"/i;
const DEALLOCATE_HINT = /^\s*(discard|deallocate)/i;
const TX_CONTROL = /^\s*(savepoint|release|rollback)/i;
const SAVEPOINT_STMT =
  /^\s*(savepoint|release|rollback)\s+(?:(?:work|transaction)\s+)?(?:to\s+)?(?:savepoint\s+)?("(?:[^"]|"")+"|[\p{L}_][\p{L}\p{N}_$]*)\s*;?\s*$/iu;
/** Server-side names of re-planned statements; never a name a client chose. */
const INTERNAL_PREFIX = '__sy_';
const PT_LABELS = { route: 'passthrough', mapping: '' } as const;

/** ErrorResponse whose severity is FATAL or PANIC (the server closes after it). */
function isFatal(msg: Buffer): boolean {
  // Fields start at 5; severity ('S') comes first in every server version.
  return (
    msg[5] === 0x53 &&
    (msg.toString('latin1', 6, 11) === 'FATAL' || msg.toString('latin1', 6, 11) === 'PANIC')
  );
}

function printable(type: number): string {
  return type >= 0x20 && type < 0x7f ? `"${String.fromCharCode(type)}"` : `0x${type.toString(16)}`;
}

interface Roles {
  role?: string;
  session?: string;
}

function currentRole(r: Roles): string | undefined {
  return r.role ?? r.session;
}

function searchPathFromOptions(options: string | undefined): string | undefined {
  if (!options) return undefined;
  const m = /(?:-c\s*|--)search_path=((?:\\ |[^ ])+)/.exec(options);
  return m ? m[1].replaceAll('\\ ', ' ') : undefined;
}

/** A statement that makes the server itself raise the proxy's refusal (SQLSTATE 0A000). */
function raiseSql(message: string): string {
  const tag = '$sy$';
  const safe = message.replaceAll(tag, '');
  return `DO ${tag}BEGIN RAISE EXCEPTION USING ERRCODE = '0A000', MESSAGE = ${quoteDollar(safe)}; END${tag}`;
}

function quoteDollar(s: string): string {
  return `'${s.replaceAll("'", "''")}'`;
}

/**
 * A client's TLS always ends at the proxy, so channel binding would bind to
 * the proxy's certificate, not the server's, and fail: hide
 * SCRAM-SHA-256-PLUS (offered only when the upstream link is TLS) and let the
 * client use plain SCRAM, which still authenticates end to end.
 */
function stripChannelBinding(msg: Buffer): Buffer | undefined {
  if (msg.length < 9 || msg.readInt32BE(5) !== AUTH_SASL) return undefined;
  const mechs: string[] = [];
  let pos = 9;
  while (pos < msg.length) {
    const zero = msg.indexOf(0, pos);
    if (zero <= pos) break;
    mechs.push(msg.toString('utf8', pos, zero));
    pos = zero + 1;
  }
  const kept = mechs.filter((m) => !m.endsWith('-PLUS'));
  if (kept.length === mechs.length) return undefined;
  const body = Buffer.concat([
    Buffer.from([0, 0, 0, 10]),
    ...kept.map((m) => Buffer.from(`${m}\0`)),
    Buffer.from([0]),
  ]);
  const out = Buffer.allocUnsafe(body.length + 5);
  out[0] = 0x52;
  out.writeInt32BE(body.length + 4, 1);
  body.copy(out, 5);
  return out;
}

// The startup phase: everything a connection does before it is a session.
// The client's first packets (SSLRequest / GSSENCRequest answered, TLS taken
// up, CancelRequest relayed), the startup packet read, the upstream
// connection opened (with TLS when configured), and, while authentication
// is relayed, the server's replies that the proxy must look at.
import { metrics } from '../metrics.ts';
import type { Connector, TlsUpgrade, Transport } from '../transport/transport.ts';
import { AUTH_SASL, Backend, StartupCode } from '../wire/codes.ts';
import { readStartup, type StartupPacket } from '../wire/reader.ts';
import { errorResponse, SSL_NO } from '../wire/writer.ts';
import { disguise, restore } from './repeated-request.ts';

/** Postgres's MAX_STARTUP_PACKET_LENGTH counts the body after the length word: 10000 + 4 in all. */
const MAX_STARTUP_PACKET = 10_000 + 4;
/** What Postgres says when bytes follow an SSLRequest/GSSENCRequest before its answer was read. */
const INJECTION_DETAIL =
  'This could be either a client-software bug or evidence of an attempted man-in-the-middle attack.';

export interface UpstreamTarget {
  host: string;
  port: number;
  connectTimeoutMs: number;
  /** Upgrades a fresh upstream connection to TLS when configured; undefined = plain. */
  secure?: TlsUpgrade;
}

/** What the startup packets asked for, in order. */
export type StartupEvent =
  /** A violation Postgres answers by closing without a reply. */
  | { kind: 'drop'; why: string }
  /** `trailing`: more bytes followed the request before any answer (sent in the clear). */
  | { kind: 'ssl'; trailing: boolean }
  | { kind: 'gssenc'; trailing: boolean }
  | { kind: 'cancel'; packet: Buffer }
  | {
      kind: 'startup';
      startup: StartupPacket;
      /** What to send the server (a repeated encryption request disguised, see repeated-request.ts). */
      packet: Buffer;
      /** Client bytes after the packet, for after authentication. */
      rest: Buffer;
      /** The code of a repeated SSLRequest/GSSENCRequest, whose refusal the server words for another version. */
      repeated?: number;
      /** A protocol other than 3.x: the server refuses it, in the old framing for 1.x and 2.x. */
      violation?: string;
    };

/**
 * Reads the untyped packets a client sends before its startup message, as
 * ProcessStartupPacket judges them: a bad length is dropped without a word;
 * the first SSLRequest and the first GSSENCRequest are answered; a repeated
 * one, or an unsupported protocol version, goes to the server, which refuses
 * it in its own words.
 */
export class StartupReader {
  private buf: Buffer = Buffer.alloc(0);
  private sslDone = false;
  private gssDone = false;

  /** Part of a packet is buffered: EOF now is Postgres's "incomplete startup packet". */
  get partial(): boolean {
    return this.buf.length > 0;
  }

  /** TLS was taken up: a further request of either kind is a repeated one. */
  tlsTaken(): void {
    this.sslDone = this.gssDone = true;
  }

  push(chunk: Buffer): StartupEvent[] {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    const events: StartupEvent[] = [];
    while (this.buf.length >= 4) {
      const len = this.buf.readInt32BE(0);
      if (len < 8 || len > MAX_STARTUP_PACKET) {
        // node-postgres's end() right after connect() sends Terminate here.
        events.push({ kind: 'drop', why: `invalid length of startup packet (${len})` });
        return events;
      }
      if (this.buf.length < len) break;
      const packet = this.buf.subarray(0, len);
      this.buf = this.buf.subarray(len);
      const code = packet.readInt32BE(4);
      if (code === StartupCode.CancelRequest) {
        events.push({ kind: 'cancel', packet: Buffer.from(packet) });
        return events;
      }
      if (code === StartupCode.SSLRequest && !this.sslDone) {
        this.sslDone = true;
        events.push({ kind: 'ssl', trailing: this.buf.length > 0 });
        if (this.buf.length > 0) return events;
        continue;
      }
      if (code === StartupCode.GSSENCRequest && !this.gssDone) {
        this.gssDone = true;
        events.push({ kind: 'gssenc', trailing: this.buf.length > 0 });
        if (this.buf.length > 0) return events;
        continue;
      }
      const repeated = code === StartupCode.SSLRequest || code === StartupCode.GSSENCRequest;
      const rest = Buffer.from(this.buf);
      this.buf = Buffer.alloc(0);
      events.push({
        kind: 'startup',
        startup: readStartup(packet),
        packet: repeated ? disguise(packet) : Buffer.from(packet),
        rest,
        repeated: repeated ? code : undefined,
        violation:
          code >> 16 !== 3 ? `unsupported frontend protocol ${code >>> 16}.${code & 0xffff}` : undefined,
      });
      return events;
    }
    return events;
  }
}

export interface NegotiationDeps {
  tls?: TlsUpgrade;
  upstream: () => UpstreamTarget;
  connect: Connector;
}

/** What the session does for each startup event (the parts that reach beyond the client socket). */
export interface NegotiationHost {
  client: Transport;
  /** TLS is up: the session reads and writes the new transport from now on. */
  replaceClient(t: Transport): void;
  closed: boolean;
  close(why: string): void;
  /** Counts and logs a startup violation, whoever answers it (or nobody). */
  startupViolation(message: string): void;
}

/**
 * Answers SSLRequest / GSSENCRequest (taking up TLS when configured), relays
 * CancelRequest, drops what Postgres drops. Returns false once the client
 * connection is handed over or closed.
 */
export function negotiate(
  event: Exclude<StartupEvent, { kind: 'startup' }>,
  reader: StartupReader,
  host: NegotiationHost,
  deps: NegotiationDeps,
): boolean {
  switch (event.kind) {
    case 'drop':
      host.startupViolation(event.why);
      host.close(event.why);
      return false;
    case 'ssl':
      if (deps.tls && !event.trailing) {
        reader.tlsTaken();
        host.client.write([SSL_YES]);
        deps.tls(host.client).then(
          (secure) => {
            if (host.closed) secure.destroy();
            else host.replaceClient(secure);
          },
          (err: Error) => host.close(`TLS handshake failed: ${err.message}`),
        );
        return false;
      }
      // Bytes already here were sent in the clear before the answer: anyone on
      // the path could have injected them (CVE-2021-23214). Refuse them.
      if (!deps.tls) host.client.write([SSL_NO]);
      if (event.trailing) return refuseInjected(host, 'received unencrypted data after SSL request');
      return true;
    case 'gssenc':
      host.client.write([SSL_NO]);
      if (event.trailing)
        return refuseInjected(host, 'received unencrypted data after GSSAPI encryption request');
      return true;
    case 'cancel': {
      // The client holds the server's own key data (BackendKeyData is relayed
      // untouched), so the request is forwarded as it is.
      // Bounded by the connect timeout, before and after the connection opens: a
      // server that never answers holds nothing.
      const target = deps.upstream();
      deps
        .connect({
          host: target.host,
          port: target.port,
          signal: AbortSignal.timeout(target.connectTimeoutMs),
        })
        .then(
          (t) => {
            t.bind({ data: () => {}, closed: () => {} });
            t.end(event.packet);
            setTimeout(() => t.destroy(), target.connectTimeoutMs).unref();
          },
          () => {},
        );
      host.close('cancel request');
      return false;
    }
  }
}

/** Clear-text bytes behind an encryption request: Postgres's FATAL, word for word. */
function refuseInjected(host: NegotiationHost, message: string): false {
  host.startupViolation(message);
  if (host.client.writable) {
    host.client.end(errorResponse({ severity: 'FATAL', code: '08P01', message, detail: INJECTION_DETAIL }));
  }
  host.close(message);
  return false;
}

const SSL_YES = Buffer.from('S');

/**
 * Opens the upstream connection (TLS included) within the connect timeout.
 * Rejects with a message for the client's 08001 error; counts why.
 */
export function openUpstream(
  target: UpstreamTarget,
  connect: Connector,
  readBuffer: () => Buffer,
): Promise<Transport> {
  return new Promise((resolve, reject) => {
    let settled = false;
    const fail = (reason: string, message: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      metrics.upstreamConnectErrors.inc({ reason });
      reject(new Error(message));
    };
    const where = `${target.host}:${target.port}`;
    // The timeout covers the TLS handshake too: a server that accepts and never answers is not usable.
    const abort = new AbortController();
    const timer = setTimeout(() => {
      abort.abort();
      fail('timeout', `could not connect to upstream ${where}: timeout after ${target.connectTimeoutMs} ms`);
    }, target.connectTimeoutMs);
    // Plain TCP reads into a buffer the session keeps (no allocation and no
    // stream machinery per read); TLS reads through its own socket.
    connect({
      host: target.host,
      port: target.port,
      readBuffer: target.secure ? undefined : readBuffer,
      signal: abort.signal,
    }).then(
      async (t) => {
        if (settled) {
          t.destroy();
          return;
        }
        let up = t;
        if (target.secure) {
          abort.signal.addEventListener('abort', () => t.destroy());
          try {
            up = await target.secure(t);
          } catch (err) {
            t.destroy();
            fail('tls', `upstream TLS failed: ${(err as Error).message}`);
            return;
          }
        }
        if (settled) {
          up.destroy();
          return;
        }
        settled = true;
        clearTimeout(timer);
        resolve(up);
      },
      (err: NodeJS.ErrnoException) =>
        fail(err.code ?? 'error', `could not connect to upstream ${where}: ${err.code ?? err.message}`),
    );
  });
}

/** What an authentication-phase server message means to the session. */
export type AuthReply = { ready: number } | { refused: Buffer | undefined } | { replace: Buffer } | undefined;

/** `repeated`: the code of a repeated encryption request the server was asked as another version. */
export function authReply(type: number, msg: Buffer, repeated?: number): AuthReply {
  if (type === Backend.ReadyForQuery) return { ready: msg[5] };
  if (type === Backend.ErrorResponse)
    return { refused: repeated === undefined ? undefined : restore(msg, repeated) };
  if (type === Backend.Authentication) {
    const stripped = stripChannelBinding(msg);
    return stripped ? { replace: stripped } : undefined;
  }
  return undefined;
}

/**
 * A client's TLS always ends at the proxy, so channel binding would bind to
 * the proxy's certificate, not the server's, and fail: hide
 * SCRAM-SHA-256-PLUS (offered only when the upstream link is TLS) and let the
 * client use plain SCRAM, which still authenticates end to end.
 */
export function stripChannelBinding(msg: Buffer): Buffer | undefined {
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

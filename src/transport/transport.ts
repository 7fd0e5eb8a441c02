// The seam between the protocol code and the sockets under it. Sessions,
// the startup phase and the listener speak only to these interfaces, so the
// socket layer (and the runtime under it) can change without them noticing.

/** What a connection tells its owner. Set once with `bind`. */
export interface TransportHandlers {
  /**
   * Bytes in. The chunk may live in a buffer the transport reuses after the
   * call returns: keep slices only while the peer has not yet written them,
   * or copy them.
   */
  data(chunk: Buffer): void;
  /** The connection is gone: closed (no error) or failed. Called once. */
  closed(error?: Error): void;
}

export interface Transport {
  /** `address:port` of the peer, for logs. */
  readonly remote: string;
  bind(handlers: TransportHandlers): void;
  /**
   * Writes the pieces in order as one batch. Returns false when the
   * transport's buffer is past its high-water mark: the caller stops reading
   * its source until `onceDrain` fires.
   */
  write(pieces: readonly Buffer[]): boolean;
  onceDrain(cb: () => void): void;
  /** Stop / restart delivering `data`. */
  pause(): void;
  resume(): void;
  readonly paused: boolean;
  /** Bytes accepted by `write` and not yet handed to the kernel. */
  readonly pendingBytes: number;
  /** False once ended or destroyed: nothing more can be written. */
  readonly writable: boolean;
  readonly destroyed: boolean;
  /** Writes `last` (if any), then closes the sending side; the peer sees EOF after the bytes. */
  end(last?: Buffer): void;
  /** Closes at once, dropping unsent bytes. */
  destroy(): void;
}

export interface ConnectOptions {
  host: string;
  port: number;
  /**
   * Where each read lands (plain TCP only): the reader keeps one buffer and
   * hands out slices of it instead of allocating per read.
   */
  readBuffer?: () => Buffer;
  /** Aborting gives up the attempt and closes the socket. */
  signal?: AbortSignal;
}

/** Opens outgoing connections; rejects with an error whose `code` says why (ECONNREFUSED, ...). */
export type Connector = (opts: ConnectOptions) => Promise<Transport>;

/** Upgrades a connection to TLS (the SSLRequest exchange already done or done by the upgrader). */
export type TlsUpgrade = (t: Transport) => Promise<Transport>;

/** Accepts incoming connections on host:port. */
export type Listen = (
  host: string,
  port: number,
  accept: (t: Transport) => void,
  onError: (err: Error) => void,
) => Promise<Listener>;

/** A socket layer: how the proxy listens and connects. */
export interface SocketLayer {
  name: string;
  listen: Listen;
  connect: Connector;
}

export interface Listener {
  readonly address: { address: string; port: number; family: string };
  /** Stops accepting; resolves when the listening socket is closed. */
  close(): Promise<void>;
}

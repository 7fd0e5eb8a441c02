// A sidecar's one control connection. It LISTENs for switch changes, reads
// the whole state after every notification, on every (re)connect (a
// notification sent while it was away is lost, the state is not) and at a slow
// poll, and hands it to the config store. When the control table cannot be
// reached it keeps what it applied last, says so, and retries with backoff: a
// lost connection is never a reason to flip anything.
import pg from 'pg';
import type { FleetSwitches } from '../config/overlay.ts';
import type { Logger } from '../log.ts';
import { metrics } from '../metrics.ts';
import { sqlState } from '../pg/connect.ts';
import { forgetGoneSidecars, removeHeartbeat, type SidecarIdentity, writeHeartbeat } from './sidecars.ts';
import { CHANNEL, ensureControlTables, readSwitches } from './tables.ts';

export interface FollowerOptions {
  clientConfig: pg.ClientConfig;
  who: SidecarIdentity;
  pollMs: number;
  heartbeatMs: number;
  /** Installs a state; throws when it cannot apply (the state in force stays). */
  apply(fleet: FleetSwitches): Promise<{ changes: string[] } | undefined>;
  /** This sidecar's own overrides, reported in its heartbeat. */
  localOverrides(): Record<string, unknown>;
  logger: Logger;
  minBackoffMs?: number;
  maxBackoffMs?: number;
  /** A control query that takes longer means the connection is gone. */
  queryTimeoutMs?: number;
}

export interface ControlState {
  connected: boolean;
  /** The control-table version in force here (0: nothing read yet, the file alone). */
  appliedVersion: number;
  lastSyncAt: Date | null;
  /** Why the control table cannot be reached, while it cannot. */
  error: string | null;
  errorSince: Date | null;
  /** Why the latest state read could not be applied, while it cannot. */
  applyError: string | null;
}

type Killable = { connection?: { stream?: { destroy(): void } } };

export class ControlFollower {
  readonly state: ControlState = {
    connected: false,
    appliedVersion: 0,
    lastSyncAt: null,
    error: null,
    errorSince: null,
    applyError: null,
  };
  private client: pg.Client | undefined;
  private closed = false;
  private appliedKey = '';
  private syncing: Promise<void> | undefined;
  private syncAgain = false;
  private timers: NodeJS.Timeout[] = [];
  private wake: (() => void) | undefined;
  private loop: Promise<void> | undefined;
  private firstDone!: () => void;
  /** Settles after the first attempt to read the state, whether it worked or not. */
  readonly firstAttempt = new Promise<void>((r) => {
    this.firstDone = r;
  });

  constructor(private readonly opts: FollowerOptions) {}

  /** The state for /status and /readyz. */
  view() {
    const s = this.state;
    return {
      enabled: true,
      id: this.opts.who.id,
      name: this.opts.who.name,
      connected: s.connected,
      appliedVersion: s.appliedVersion,
      lastSyncAt: s.lastSyncAt?.toISOString() ?? null,
      error: s.error,
      errorSince: s.errorSince?.toISOString() ?? null,
      applyError: s.applyError,
    };
  }

  /** Writes the heartbeat now (a local override changed, say), when connected. */
  report(): void {
    const c = this.client;
    if (c && this.state.connected) void this.beat(c);
  }

  start(): void {
    this.loop ??= this.run();
  }

  async close(): Promise<void> {
    this.closed = true;
    this.wake?.();
    const c = this.client;
    if (c) {
      await Promise.race([
        removeHeartbeat(c, this.opts.who.id).catch(() => {}),
        new Promise((r) => setTimeout(r, 1000)),
      ]);
      this.kill(c);
    }
    await this.loop;
  }

  private async run(): Promise<void> {
    const log = this.opts.logger;
    let attempt = 0;
    while (!this.closed) {
      let lastError: Error | undefined;
      const client = new pg.Client({
        ...this.opts.clientConfig,
        application_name: 'switchyard-control',
        query_timeout: this.opts.queryTimeoutMs ?? 5000,
      });
      client.on('error', (e) => {
        lastError = e;
      });
      const ended = new Promise<void>((r) => client.once('end', () => r()));
      try {
        await client.connect();
        this.client = client;
        client.on('notification', () => void this.sync().catch((e) => this.fail(client, e)));
        // Only before the first read: tables that vanish later are an outage to
        // wait out, never an empty state to fall back to.
        if (this.state.lastSyncAt === null) await ensureControlTables(client);
        // LISTEN before reading: a change committed in between is read or notified, never missed.
        await client.query(`LISTEN ${CHANNEL}`);
        await this.sync();
        this.connected(attempt);
        attempt = 0;
        this.firstDone();
        await this.beat(client);
        // Housekeeping, not a condition of following: a role without DELETE still follows.
        await forgetGoneSidecars(client).catch((e) => {
          if (sqlState(e) === undefined) throw e;
        });
        this.timers.push(
          setInterval(() => void this.sync().catch((e) => this.fail(client, e)), this.opts.pollMs),
          setInterval(() => void this.beat(client), this.opts.heartbeatMs),
        );
        await ended;
        throw lastError ?? new Error('control connection closed');
      } catch (e) {
        if (!this.closed) this.failed(e as Error, attempt, log);
      } finally {
        for (const t of this.timers) clearInterval(t);
        this.timers = [];
        this.client = undefined;
        this.kill(client);
      }
      this.firstDone();
      if (this.closed) break;
      await this.pause(this.backoff(attempt++));
    }
  }

  /** Reads the state and applies it when it changed; calls made meanwhile collapse into one more read. */
  private sync(): Promise<void> {
    if (this.syncing) {
      this.syncAgain = true;
      return this.syncing;
    }
    this.syncing = (async () => {
      do {
        this.syncAgain = false;
        await this.syncOnce();
      } while (this.syncAgain && !this.closed);
    })().finally(() => {
      this.syncing = undefined;
    });
    return this.syncing;
  }

  private async syncOnce(): Promise<void> {
    const client = this.client;
    if (!client) return;
    const fleet = await readSwitches(client);
    this.state.lastSyncAt = new Date();
    metrics.fleetLastSync.set(this.state.lastSyncAt.getTime() / 1000);
    const key = JSON.stringify(fleet);
    if (key === this.appliedKey) return;
    const log = this.opts.logger;
    try {
      const changes = (await this.opts.apply(fleet))?.changes ?? [];
      this.appliedKey = key;
      this.state.appliedVersion = fleet.version;
      this.state.applyError = null;
      log.info(
        { version: fleet.version, changes },
        `fleet switches applied: version ${fleet.version}${changes.length ? `: ${changes.join('; ')}` : ''}`,
      );
    } catch (e) {
      const why = (e as Error).message;
      if (this.state.applyError !== why) {
        log.error(
          { version: fleet.version, error: why, holding: this.state.appliedVersion },
          'fleet switches refused; the state in force stays',
        );
      }
      this.state.applyError = why;
    }
    // The CLI waits for this row: report at once, not at the next heartbeat.
    await this.beat(client);
  }

  private async beat(client: pg.Client): Promise<void> {
    try {
      await writeHeartbeat(client, this.opts.who, {
        appliedVersion: this.state.appliedVersion,
        localOverrides: this.opts.localOverrides(),
        applyError: this.state.applyError,
      });
    } catch (e) {
      // A refused write (no rights on the sidecars table) costs the fleet view,
      // not the switches; a timeout or a dropped connection means reconnecting.
      if (sqlState(e) === undefined) this.fail(client, e as Error);
      else this.opts.logger.warn({ error: (e as Error).message }, 'fleet heartbeat not written');
    }
  }

  private fail(client: pg.Client, e: Error): void {
    if (this.closed) return;
    this.opts.logger.warn({ error: e.message }, 'control connection failed; reconnecting');
    client.emit('error', e);
    this.kill(client);
  }

  private kill(client: pg.Client): void {
    (client as unknown as Killable).connection?.stream?.destroy();
    client.end().catch(() => {});
  }

  private connected(attempts: number): void {
    if (attempts > 0 || this.state.error) {
      this.opts.logger.info(
        { version: this.state.appliedVersion, down: this.state.errorSince?.toISOString() },
        'control connection restored',
      );
    }
    this.state.connected = true;
    this.state.error = null;
    this.state.errorSince = null;
    metrics.fleetControlConnected.set(1);
  }

  private failed(e: Error, attempt: number, log: Logger): void {
    const first = this.state.error === null;
    this.state.connected = false;
    this.state.error = e.message;
    this.state.errorSince ??= new Date();
    metrics.fleetControlConnected.set(0);
    metrics.fleetControlErrors.inc();
    const fields = { error: e.message, attempt, holding: this.state.appliedVersion };
    if (first) log.warn(fields, 'control table unreachable; keeping the switches in force');
    else log.debug(fields, 'control table still unreachable');
  }

  private backoff(attempt: number): number {
    const min = this.opts.minBackoffMs ?? 200;
    const max = this.opts.maxBackoffMs ?? 10_000;
    const base = Math.min(max, min * 2 ** attempt);
    return base * (0.8 + Math.random() * 0.4);
  }

  private pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(resolve, ms);
      this.wake = () => {
        clearTimeout(t);
        resolve();
      };
    });
  }
}

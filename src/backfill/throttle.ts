// Replica-lag throttle: before each batch, workers ask whether the replicas
// keep up; while the worst lag is above the limit they sleep and ask again,
// and resume on their own once it falls. One measurement serves all workers
// of a process for a short while, so N workers do not poll N times.
import type pg from 'pg';
import type { Logger } from '../log.ts';
import { sleep } from '../pg/connect.ts';

export interface LagReading {
  /** Worst lag in milliseconds over all replicas; 0 when there are none. */
  lagMs: number;
  /** Which replica it was (application_name, address or URL host). */
  source: string;
  replicas: number;
}

export interface LagSource {
  read(): Promise<LagReading>;
  close(): Promise<void>;
}

/**
 * Lag as the primary sees it in pg_stat_replication. A standby that has
 * replayed everything sent to it is not behind, whatever replay_lag still
 * shows from its last burst. One that is behind lags by at least replay_lag,
 * and, since replay_lag only moves when replay does, by at least the time its
 * replay position has stood still (a paused or stuck standby).
 */
export class PrimaryLagSource implements LagSource {
  /** By walsender pid: standbys often share an application_name. */
  private stuckSince = new Map<number, { lsn: string; at: number }>();

  constructor(private readonly client: pg.Client) {}

  async read(): Promise<LagReading> {
    const r = await this.client.query(
      `SELECT pid, coalesce(nullif(application_name, ''), client_addr::text, pid::text) AS name,
              coalesce(EXTRACT(EPOCH FROM replay_lag) * 1000, 0)::float8 AS lag_ms,
              replay_lsn::text AS replay_lsn,
              (replay_lsn IS NULL OR replay_lsn < sent_lsn) AS behind
         FROM pg_stat_replication
        -- sent_lsn is NULL for a standby not streaming yet, and for every standby when this role lacks
        -- pg_monitor: nothing to measure there (documented; use --replica to measure on the standby).
        WHERE sent_lsn IS NOT NULL`,
    );
    const now = Date.now();
    let worst: LagReading = { lagMs: 0, source: 'primary', replicas: r.rows.length };
    const seen = new Set<number>();
    for (const row of r.rows) {
      seen.add(row.pid);
      let lag = 0;
      if (row.behind) {
        lag = row.lag_ms;
        const prev = this.stuckSince.get(row.pid);
        if (!prev || prev.lsn !== row.replay_lsn)
          this.stuckSince.set(row.pid, { lsn: row.replay_lsn, at: now });
        else lag = Math.max(lag, now - prev.at);
      } else {
        this.stuckSince.delete(row.pid);
      }
      if (lag > worst.lagMs) worst = { lagMs: lag, source: row.name, replicas: r.rows.length };
    }
    for (const k of this.stuckSince.keys()) if (!seen.has(k)) this.stuckSince.delete(k);
    return worst;
  }

  async close(): Promise<void> {}
}

/**
 * Lag measured on the replicas themselves: now() - pg_last_xact_replay_timestamp(),
 * and 0 when everything received has been replayed (an idle replica is not behind).
 */
export class ReplicaLagSource implements LagSource {
  constructor(private readonly replicas: { name: string; client: pg.Client }[]) {}

  async read(): Promise<LagReading> {
    let worst: LagReading = { lagMs: 0, source: 'replicas', replicas: this.replicas.length };
    for (const { name, client } of this.replicas) {
      const r = await client.query(
        `SELECT CASE
                  WHEN NOT pg_is_in_recovery() THEN 0
                  WHEN pg_last_wal_receive_lsn() IS NOT NULL AND pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
                  ELSE coalesce(EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()) * 1000, 'Infinity')
                END::float8 AS lag_ms`,
      );
      const lag: number = r.rows[0].lag_ms;
      if (lag > worst.lagMs) worst = { lagMs: lag, source: name, replicas: this.replicas.length };
    }
    return worst;
  }

  async close(): Promise<void> {
    await Promise.all(this.replicas.map((r) => r.client.end().catch(() => {})));
  }
}

export interface ThrottleEvents {
  onLag?(lagMs: number): void;
  onThrottled?(seconds: number): void;
}

export class LagThrottle {
  private last: { at: number; reading: LagReading } | undefined;
  private inflight: Promise<LagReading> | undefined;
  throttledMs = 0;
  /** The reading that keeps the backfill paused, while it is. */
  paused: LagReading | undefined;

  constructor(
    private readonly source: LagSource | undefined,
    private readonly maxLagMs: number,
    private readonly log: Logger,
    private readonly events: ThrottleEvents = {},
    private readonly opts: { cacheMs?: number; pollMs?: number } = {},
  ) {}

  private async measure(): Promise<LagReading> {
    const cacheMs = this.opts.cacheMs ?? 250;
    if (this.last && Date.now() - this.last.at < cacheMs) return this.last.reading;
    if (!this.inflight) {
      this.inflight = this.source!.read().finally(() => {
        this.inflight = undefined;
      });
    }
    const reading = await this.inflight;
    this.last = { at: Date.now(), reading };
    this.events.onLag?.(reading.lagMs);
    return reading;
  }

  /**
   * Returns once the lag is within the limit (immediately when throttling is
   * off). Workers that arrive during a pause share it, so throttled time is
   * wall-clock time, not worker-seconds.
   */
  async wait(signal?: AbortSignal): Promise<void> {
    if (!this.source || this.maxLagMs <= 0) return;
    if (this.pause) return this.pause;
    const reading = await this.measure();
    if (reading.lagMs <= this.maxLagMs) return;
    if (!this.pause) {
      this.pause = this.pauseUntilCaughtUp(reading, signal).finally(() => {
        this.pause = undefined;
      });
    }
    return this.pause;
  }

  private pause: Promise<void> | undefined;

  private async pauseUntilCaughtUp(first: LagReading, signal?: AbortSignal): Promise<void> {
    let reading = first;
    this.paused = reading;
    const started = Date.now();
    this.log.warn(
      { lagMs: Math.round(reading.lagMs), maxLagMs: this.maxLagMs, replica: reading.source },
      'replica lag above limit: backfill paused',
    );
    const pollMs = this.opts.pollMs ?? 1000;
    let mark = started;
    while (reading.lagMs > this.maxLagMs) {
      if (signal?.aborted) break;
      await sleep(pollMs);
      reading = await this.measure();
      this.paused = reading;
      const now = Date.now();
      this.events.onThrottled?.((now - mark) / 1000);
      mark = now;
    }
    const waited = Date.now() - started;
    this.paused = undefined;
    this.throttledMs += waited;
    this.log.info(
      { lagMs: Math.round(reading.lagMs), throttledMs: waited, replica: reading.source },
      'replica lag back within limit: backfill resumed',
    );
  }

  async close(): Promise<void> {
    await this.source?.close();
  }
}

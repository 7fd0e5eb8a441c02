// A backfill run in one process: plan or join the run, then N workers, each
// on its own connection, claim chunks and copy them batch by batch until no
// chunk is left. Other processes running the same mapping share the chunks.
import os from 'node:os';
import type pg from 'pg';
import type { Logger } from '../log.ts';
import { metrics } from '../metrics.ts';
import { connect, sleep, sqlState } from '../pg/connect.ts';
import type { KeyColumn } from '../pg/keys.ts';
import { keyColumns } from '../rules/key-columns.ts';
import type { CompiledMapping } from '../rules/mapping.ts';
import { BatchSizer, batchStatements, copyBatch } from './batch.ts';
import {
  type Chunk,
  claimChunk,
  deleteRun,
  ensureSchema,
  finishRunIfDone,
  markCopied,
  markDone,
  olderTransactions,
  readRun,
  runTotals,
} from './checkpoint.ts';
import { planOrResume } from './plan.ts';
import { RateMeter } from './progress.ts';
import { settleChunk } from './settle.ts';
import { type LagSource, LagThrottle, PrimaryLagSource, ReplicaLagSource } from './throttle.ts';

export interface BackfillOptions {
  batchSize: number;
  targetBatchMs: number;
  workers: number;
  /** 0 turns the throttle off. */
  maxLagMs: number;
  /** Replica URLs; none: measure on the primary (pg_stat_replication). */
  replicas: string[];
  lockTimeoutMs: number;
  statementTimeoutMs: number;
  /** Attempts per statement on lock/statement timeouts, deadlocks and serialization failures. */
  maxRetries: number;
  chunkRows: number;
  restart: boolean;
  lagPollMs?: number;
}

export const DEFAULT_OPTIONS: BackfillOptions = {
  batchSize: 2000,
  targetBatchMs: 500,
  workers: 1,
  maxLagMs: 3000,
  replicas: [],
  // Below Postgres's deadlock_timeout (1 s): if a batch and an application
  // transaction wait on each other, the batch gives up first and retries,
  // so the application never sees a deadlock error caused by the backfill.
  lockTimeoutMs: 500,
  statementTimeoutMs: 10_000,
  maxRetries: 30,
  chunkRows: 50_000,
  restart: false,
};

export interface BackfillStats {
  outcome: 'done' | 'already-done' | 'partial' | 'interrupted';
  rowsScanned: number;
  rowsInserted: number;
  batches: number;
  /** Chunks copied and settled by this process. */
  chunks: number;
  /** New rows removed by settling: rows the application deleted while their batch copied them. */
  orphansRemoved: number;
  retries: number;
  /** Batches that met a key the dual-write inserted meanwhile and ran again with ON CONFLICT DO NOTHING. */
  conflicts: number;
  throttledMs: number;
  elapsedMs: number;
  estimatedRows: number;
  /** Rows already done by earlier runs when this one started. */
  rowsBefore: number;
  /** Chunks still owned by other processes when this one ran out of work. */
  chunksElsewhere: number;
}

/** Errors a batch retries after a pause: the batch did nothing, trying again is safe. */
const RETRYABLE = new Map([
  ['55P03', 'lock timeout'],
  ['57014', 'statement timeout'],
  ['40P01', 'deadlock'],
  ['40001', 'serialization failure'],
]);

export interface RunHooks {
  signal?: AbortSignal;
  /** Called after every committed batch (progress display). */
  onBatch?(stats: Readonly<BackfillStats>): void;
  onPlanned?(info: { estimatedRows: number; rowsBefore: number; chunks: number; resumed: boolean }): void;
}

export class Backfill {
  readonly stats: BackfillStats = {
    outcome: 'partial',
    rowsScanned: 0,
    rowsInserted: 0,
    batches: 0,
    chunks: 0,
    orphansRemoved: 0,
    retries: 0,
    conflicts: 0,
    throttledMs: 0,
    elapsedMs: 0,
    estimatedRows: 0,
    rowsBefore: 0,
    chunksElsewhere: 0,
  };
  readonly rate = new RateMeter();
  private readonly owner = `${os.hostname()}:${process.pid}`;
  private readonly failed = new AbortController();
  private readonly signal: AbortSignal;
  private readonly labels: { mapping: string };

  constructor(
    private readonly m: CompiledMapping,
    private readonly clientConfig: pg.ClientConfig,
    private readonly opts: BackfillOptions,
    private readonly log: Logger,
    private readonly hooks: RunHooks = {},
  ) {
    this.labels = { mapping: m.name };
    this.signal = hooks.signal ? AbortSignal.any([hooks.signal, this.failed.signal]) : this.failed.signal;
  }

  async run(): Promise<BackfillStats> {
    const started = Date.now();
    const keys = keyColumns(this.m);
    const control = await connect(this.clientConfig, { statement_timeout: 0, lock_timeout: 10_000 });
    let throttle: LagThrottle | undefined;
    try {
      await ensureSchema(control);
      if (this.opts.restart && (await readRun(control, this.m.name))) {
        await deleteRun(control, this.m.name);
        this.log.info({ mapping: this.m.name }, 'previous backfill run forgotten (--restart)');
      }
      const plan = await planOrResume(control, this.m, keys, {
        chunkRows: this.opts.chunkRows,
        workers: this.opts.workers,
      });
      const before = await runTotals(control, this.m.name);
      this.stats.estimatedRows = Number(plan.run.estimated_rows);
      this.stats.rowsBefore = before.rowsScanned;
      this.log.info(
        {
          mapping: this.m.name,
          plan: plan.kind,
          upperKey: plan.run.upper_key,
          estimatedRows: this.stats.estimatedRows,
          chunks: before.chunks,
          chunksDone: before.done,
          rowsDone: before.rowsScanned,
          workers: this.opts.workers,
        },
        plan.kind === 'created' ? 'backfill planned' : 'backfill joined existing run',
      );
      if (plan.kind === 'complete') {
        this.stats.outcome = 'already-done';
        return this.stats;
      }
      this.hooks.onPlanned?.({
        estimatedRows: this.stats.estimatedRows,
        rowsBefore: before.rowsScanned,
        chunks: before.chunks,
        resumed: plan.kind === 'resumed',
      });
      throttle = await this.makeThrottle();
      const statements = batchStatements(this.m, keys);
      // One worker failing stops the others after their current batch: the run is resumable as it stands.
      const workers = Array.from({ length: this.opts.workers }, (_, i) =>
        this.worker(i + 1, keys, statements, throttle!).catch((e) => {
          this.failed.abort();
          throw e;
        }),
      );
      const results = await Promise.allSettled(workers);
      const failed = results.find((r) => r.status === 'rejected');
      if (failed) throw (failed as PromiseRejectedResult).reason;
      this.stats.throttledMs = throttle.throttledMs;
      if (this.signal.aborted) {
        this.stats.outcome = 'interrupted';
      } else if (await finishRunIfDone(control, this.m.name)) {
        this.stats.outcome = 'done';
      } else {
        const t = await runTotals(control, this.m.name);
        this.stats.chunksElsewhere = t.chunks - t.done;
        this.stats.outcome = 'partial';
      }
      return this.stats;
    } finally {
      this.stats.elapsedMs = Date.now() - started;
      await throttle?.close();
      await control.end().catch(() => {});
    }
  }

  private async makeThrottle(): Promise<LagThrottle> {
    const events = {
      onLag: (ms: number) => metrics.backfillLag.set(this.labels, ms / 1000),
      onThrottled: (s: number) => metrics.backfillThrottled.inc(this.labels, s),
    };
    let source: LagSource | undefined;
    if (this.opts.maxLagMs > 0) {
      if (this.opts.replicas.length > 0) {
        const replicas = await Promise.all(
          this.opts.replicas.map(async (url) => ({
            name: new URL(url).host,
            client: await connect({ connectionString: url, application_name: 'switchyard-backfill-lag' }),
          })),
        );
        source = new ReplicaLagSource(replicas);
      } else {
        const c = await connect(this.clientConfig, { statement_timeout: 5000 });
        source = new PrimaryLagSource(c);
        const close = source.close.bind(source);
        source.close = async () => {
          await close();
          await c.end().catch(() => {});
        };
      }
    }
    this.throttle = new LagThrottle(
      source,
      this.opts.maxLagMs,
      this.log.child({ mapping: this.m.name }),
      events,
      {
        pollMs: this.opts.lagPollMs,
      },
    );
    return this.throttle;
  }

  private throttle: LagThrottle | undefined;

  /** Why the run is not copying right now, if it is paused by replica lag. */
  get pausedNote(): string | undefined {
    const p = this.throttle?.paused;
    return p
      ? `paused: replica lag ${(p.lagMs / 1000).toFixed(1)}s > ${this.opts.maxLagMs / 1000}s`
      : undefined;
  }

  private async worker(
    n: number,
    keys: KeyColumn[],
    s: ReturnType<typeof batchStatements>,
    throttle: LagThrottle,
  ): Promise<void> {
    const settings = {
      lock_timeout: this.opts.lockTimeoutMs,
      statement_timeout: this.opts.statementTimeoutMs,
      // A batch's rows and its checkpoint commit in one transaction, and Postgres
      // loses only a suffix of asynchronously committed transactions in a crash:
      // a lost batch is lost whole, cursor included, and is copied again on resume
      // (a write that depends on it, such as a mirrored update of a copied row,
      // flushes it with its own commit). So the batch need not wait for its flush.
      synchronous_commit: 'off',
    };
    const cfg = { ...this.clientConfig, application_name: 'switchyard-backfill' };
    // The settle sweep of a copied chunk runs on a second connection while the
    // worker copies the next chunk: it reads both key ranges again (about a
    // quarter of the copy's time), which would otherwise stall the copy. A
    // column migration leaves nothing to settle, so it settles nothing.
    const [opened, openedSettler] = await Promise.allSettled([
      connect(cfg, settings),
      this.m.sameTable ? undefined : connect(cfg, settings),
    ]);
    if (opened.status === 'rejected' || openedSettler.status === 'rejected') {
      for (const o of [opened, openedSettler])
        if (o.status === 'fulfilled') await o.value?.end().catch(() => {});
      throw opened.status === 'rejected' ? opened.reason : (openedSettler as PromiseRejectedResult).reason;
    }
    const c = opened.value;
    const settler = openedSettler.value ?? c;
    const ownerPid: number = (await c.query('SELECT pg_backend_pid() AS pid')).rows[0].pid;
    const log = this.log.child({ mapping: this.m.name, worker: n });
    const sizer = new BatchSizer(this.opts.batchSize, this.opts.targetBatchMs);
    // Copied chunks waiting for older transactions to end before they are settled.
    const pending: { chunk: Chunk; copiedAt: Date }[] = [];
    // At most one settle pass at a time, in chunk order; its error fails the worker.
    let settling: Promise<void> | undefined;
    let settleError: unknown;
    const settleInBackground = () => {
      if (settleError) throw settleError;
      settling ??= this.settleReady(settler, keys, pending, sizer, log, false, ownerPid)
        .catch((e) => {
          settleError ??= e;
        })
        .finally(() => {
          settling = undefined;
        });
    };
    try {
      for (;;) {
        settleInBackground();
        if (this.signal.aborted) return;
        const chunk = await this.retrying(log, sizer, () => claimChunk(c, this.m.name, `${this.owner}/${n}`));
        if (!chunk) break;
        log.debug(
          { chunk: chunk.chunkNo, lo: chunk.lo, hi: chunk.hi, cursor: chunk.cursor },
          'chunk claimed',
        );
        if (this.m.sameTable) {
          if (!(await this.copyChunk(c, s, chunk, sizer, throttle, log))) return;
          await this.retrying(log, sizer, () => markDone(c, this.m.name, chunk.chunkNo));
          this.stats.chunks++;
          continue;
        }
        let copiedAt: Date | null = chunk.copiedAt;
        if (!copiedAt) {
          if (!(await this.copyChunk(c, s, chunk, sizer, throttle, log))) return;
          copiedAt = await markCopied(c, this.m.name, chunk.chunkNo);
        }
        pending.push({ chunk, copiedAt });
      }
      await settling;
      if (settleError) throw settleError;
      await this.settleReady(settler, keys, pending, sizer, log, true, ownerPid);
    } finally {
      await settling;
      if (settler !== c) await settler.end().catch(() => {});
      await c.end().catch(() => {});
    }
  }

  /** Settles the pending chunks no older transaction can still affect; with `wait`, all of them. */
  private async settleReady(
    c: pg.Client,
    keys: KeyColumn[],
    pending: { chunk: Chunk; copiedAt: Date }[],
    sizer: BatchSizer,
    log: Logger,
    wait: boolean,
    ownerPid: number,
  ): Promise<void> {
    let lastReport = Date.now();
    while (pending.length > 0) {
      const { chunk, copiedAt } = pending[0];
      const older = await olderTransactions(c, copiedAt);
      if (older.length > 0) {
        if (!wait || this.signal.aborted) return;
        if (Date.now() - lastReport > 5000) {
          lastReport = Date.now();
          log.info(
            {
              chunk: chunk.chunkNo,
              transactions: older.slice(0, 5).map((t) => ({
                pid: t.pid,
                application: t.application_name,
                state: t.state,
                since: t.xact_start,
              })),
              count: older.length,
            },
            'waiting for transactions older than the last batch to end before settling',
          );
        }
        await sleep(50);
        continue;
      }
      const removed = await this.retrying(log, sizer, () => settleChunk(c, this.m, keys, chunk, ownerPid));
      pending.shift();
      this.stats.chunks++;
      this.stats.orphansRemoved += removed;
      if (removed > 0) {
        log.info(
          { chunk: chunk.chunkNo, removed },
          'settled: removed rows deleted by the application during the copy',
        );
      }
    }
  }

  private async copyChunk(
    c: pg.Client,
    s: ReturnType<typeof batchStatements>,
    chunk: Chunk,
    sizer: BatchSizer,
    throttle: LagThrottle,
    log: Logger,
  ): Promise<boolean> {
    let cursor = chunk.cursor ?? chunk.lo;
    for (;;) {
      if (this.signal.aborted) return false;
      await throttle.wait(this.signal);
      const t0 = performance.now();
      const limit = sizer.size;
      const res = await this.retrying(log, sizer, () =>
        copyBatch(c, s, cursor, chunk.hi, limit, this.m.name, chunk.chunkNo),
      );
      if (res.checkpointed !== 1) {
        throw new Error(`backfill lost ownership of chunk ${chunk.chunkNo} of ${this.m.name}`);
      }
      if (res.conflicted) {
        this.stats.conflicts++;
        log.debug(
          { chunk: chunk.chunkNo },
          'batch met a concurrently written key: copied with ON CONFLICT DO NOTHING',
        );
      }
      const ms = performance.now() - t0;
      sizer.observe(res.scanned, ms);
      cursor = res.upper;
      this.stats.rowsScanned += res.scanned;
      this.stats.rowsInserted += res.inserted;
      this.stats.batches++;
      this.rate.add(this.stats.rowsScanned);
      metrics.backfillRows.inc(this.labels, res.inserted);
      metrics.backfillBatches.inc(this.labels);
      metrics.backfillRate.set(this.labels, this.rate.rate());
      if (this.stats.estimatedRows > 0) {
        metrics.backfillProgress.set(
          this.labels,
          Math.min(1, (this.stats.rowsBefore + this.stats.rowsScanned) / this.stats.estimatedRows),
        );
      }
      log.debug(
        {
          chunk: chunk.chunkNo,
          rows: res.scanned,
          inserted: res.inserted,
          ms: Math.round(ms),
          next: sizer.size,
        },
        'batch committed',
      );
      this.hooks.onBatch?.(this.stats);
      // A short batch reached the end of the chunk: no need to ask again.
      if (!res.full) break;
    }
    return true;
  }

  private async retrying<T>(log: Logger, sizer: BatchSizer, f: () => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await f();
      } catch (e) {
        const state = sqlState(e);
        const what = state ? RETRYABLE.get(state) : undefined;
        if (!what || attempt >= this.opts.maxRetries) throw e;
        if (state === '55P03' || state === '57014') sizer.shrink();
        const backoff = Math.min(5000, 50 * 2 ** Math.min(attempt, 10)) * (0.5 + Math.random() / 2);
        this.stats.retries++;
        log.warn(
          { attempt, sqlstate: state, backoffMs: Math.round(backoff), batchSize: sizer.size },
          `batch ${what}: retrying`,
        );
        await sleep(backoff);
      }
    }
  }
}

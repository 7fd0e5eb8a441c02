// `switchyard backfill`: copy the old table's history into the new table.
import type { AddressInfo } from 'node:net';
import { dryRunPlan } from '../backfill/dryrun.ts';
import { PlanError } from '../backfill/plan.ts';
import { ProgressReporter } from '../backfill/progress.ts';
import { Backfill, type BackfillOptions, DEFAULT_OPTIONS } from '../backfill/runner.ts';
import { loadMapping, positiveInt, SetupError, serveMetrics } from '../backfill/setup.ts';
import { ConfigError } from '../config/load.ts';
import { createLogger } from '../log.ts';
import { connect } from '../pg/connect.ts';
import { KeyError } from '../rules/key-columns.ts';
import { parseCommandArgs } from './args.ts';

const USAGE = `Usage: switchyard backfill --config FILE --mapping NAME [options]

Copies every old row that existed when the run started into the new table,
through the mapping's up expressions, in short resumable batches. For a column
migration inside one table, sets the new columns where they differ from up(row).

  --batch-size N            rows in the first batch (default ${DEFAULT_OPTIONS.batchSize}); then adapts
  --target-batch-ms N       batch duration the size adapts toward (default ${DEFAULT_OPTIONS.targetBatchMs})
  --workers N               parallel workers in this process (default 1); other processes
                            running the same command share the work
  --max-lag-ms N            pause while replica lag exceeds N ms (default ${DEFAULT_OPTIONS.maxLagMs}; 0: off)
  --replica URL             measure lag on this replica (repeatable); default: pg_stat_replication
  --lock-timeout-ms N       per batch (default ${DEFAULT_OPTIONS.lockTimeoutMs}); timeouts are retried with backoff
  --statement-timeout-ms N  per batch (default ${DEFAULT_OPTIONS.statementTimeoutMs})
  --chunk-rows N            rows per claimable chunk when planning (default ${DEFAULT_OPTIONS.chunkRows})
  --restart                 forget a previous run's checkpoints and plan again
  --dry-run                 print the plan (key range, estimated rows, batches) and touch nothing
  --metrics-port N          serve Prometheus /metrics on 127.0.0.1:N while running
  --progress-interval-ms N  JSON progress line interval when not on a terminal (default 5000)

Exit status: 0 done (or nothing left for this process), 2 error, 130 interrupted (resumable).
`;

const OPTIONS = {
  config: { type: 'string' },
  mapping: { type: 'string' },
  'batch-size': { type: 'string' },
  'target-batch-ms': { type: 'string' },
  workers: { type: 'string' },
  'max-lag-ms': { type: 'string' },
  replica: { type: 'string', multiple: true },
  'lock-timeout-ms': { type: 'string' },
  'statement-timeout-ms': { type: 'string' },
  'chunk-rows': { type: 'string' },
  restart: { type: 'boolean' },
  'dry-run': { type: 'boolean' },
  'metrics-port': { type: 'string' },
  'progress-interval-ms': { type: 'string' },
  'log-level': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

export async function run(argv: string[]): Promise<number> {
  const values = parseCommandArgs('backfill', argv, OPTIONS, USAGE, ['config', 'mapping']);
  if (typeof values === 'number') return values;
  const tty = process.stderr.isTTY === true;
  const log = createLogger(values['log-level'] ?? 'info', { destination: 2, pretty: tty });
  try {
    const opts: BackfillOptions = {
      ...DEFAULT_OPTIONS,
      batchSize: positiveInt('--batch-size', values['batch-size']) ?? DEFAULT_OPTIONS.batchSize,
      targetBatchMs:
        positiveInt('--target-batch-ms', values['target-batch-ms']) ?? DEFAULT_OPTIONS.targetBatchMs,
      workers: positiveInt('--workers', values.workers) ?? DEFAULT_OPTIONS.workers,
      maxLagMs: positiveInt('--max-lag-ms', values['max-lag-ms'], 0) ?? DEFAULT_OPTIONS.maxLagMs,
      replicas: values.replica ?? [],
      lockTimeoutMs:
        positiveInt('--lock-timeout-ms', values['lock-timeout-ms']) ?? DEFAULT_OPTIONS.lockTimeoutMs,
      statementTimeoutMs:
        positiveInt('--statement-timeout-ms', values['statement-timeout-ms']) ??
        DEFAULT_OPTIONS.statementTimeoutMs,
      chunkRows: positiveInt('--chunk-rows', values['chunk-rows']) ?? DEFAULT_OPTIONS.chunkRows,
      restart: values.restart === true,
    };
    for (const url of opts.replicas) {
      if (!/^postgres(?:ql)?:\/\//.test(url))
        throw new SetupError(`--replica ${url} is not a postgres:// URL`);
    }
    const progressInterval = positiveInt('--progress-interval-ms', values['progress-interval-ms']) ?? 5000;
    const metricsPort = positiveInt('--metrics-port', values['metrics-port'], 0);
    const { config, mapping, clientConfig } = await loadMapping(
      values.config as string,
      values.mapping as string,
      'switchyard-backfill',
    );

    if (values['dry-run']) {
      const c = await connect(clientConfig, { default_transaction_read_only: 'on' });
      try {
        process.stdout.write(await dryRunPlan(c, mapping, opts));
      } finally {
        await c.end().catch(() => {});
      }
      return 0;
    }

    if (!mapping.config.dualWrite || config.killSwitch) {
      log.warn(
        { mapping: mapping.name, dualWrite: mapping.config.dualWrite, killSwitch: config.killSwitch },
        'dual-write is off in this config: rows the application changes during and after the backfill will not reach the new table',
      );
    }
    const metricsServer = metricsPort === undefined ? undefined : await serveMetrics(metricsPort);
    if (metricsServer) {
      const { port } = metricsServer.address() as AddressInfo;
      log.info({ url: `http://127.0.0.1:${port}/metrics` }, 'serving metrics');
    }

    const abort = new AbortController();
    const onSignal = () => {
      log.warn('interrupted: finishing the batches in flight, then stopping (run again to resume)');
      abort.abort();
    };
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);

    let reporter: ProgressReporter | undefined;
    const backfill: Backfill = new Backfill(mapping, clientConfig, opts, log, {
      signal: abort.signal,
      onPlanned: (info) => {
        reporter = new ProgressReporter(
          () => {
            const rows = info.rowsBefore + backfill.stats.rowsScanned;
            const rate = backfill.rate.rate();
            const left = Math.max(0, info.estimatedRows - rows);
            return {
              rows,
              inserted: backfill.stats.rowsInserted,
              total: Math.max(info.estimatedRows, rows),
              rate,
              etaSeconds: rate > 0 ? left / rate : undefined,
              note: backfill.pausedNote,
            };
          },
          { tty, stream: process.stderr, log, intervalMs: progressInterval },
        );
        reporter.start();
      },
    });
    let stats: Awaited<ReturnType<Backfill['run']>>;
    try {
      stats = await backfill.run();
    } finally {
      reporter?.stop();
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      metricsServer?.close();
    }
    const summary = {
      mapping: mapping.name,
      outcome: stats.outcome,
      rowsScanned: stats.rowsScanned,
      rowsInserted: stats.rowsInserted,
      rowsBefore: stats.rowsBefore,
      batches: stats.batches,
      chunks: stats.chunks,
      orphansRemoved: stats.orphansRemoved,
      conflicts: stats.conflicts,
      retries: stats.retries,
      throttledSeconds: Math.round(stats.throttledMs / 100) / 10,
      seconds: Math.round(stats.elapsedMs / 100) / 10,
      rowsPerSecond: stats.elapsedMs > 0 ? Math.round((stats.rowsScanned * 1000) / stats.elapsedMs) : 0,
      peakRssMb: Math.round(process.resourceUsage().maxRSS / 1024),
    };
    log.info(summary, `backfill ${stats.outcome}`);
    // A column migration writes by UPDATE: rows_inserted counts the rows it filled.
    const written = mapping.sameTable ? 'updated' : 'inserted';
    const messages: Record<typeof stats.outcome, string> = {
      done: `backfill of ${mapping.name} complete: ${stats.rowsScanned} rows scanned, ${stats.rowsInserted} ${written} in ${summary.seconds}s`,
      'already-done': `backfill of ${mapping.name} was already complete (use --restart to run it again)`,
      partial: `backfill of ${mapping.name}: no chunk left for this process; ${stats.chunksElsewhere} chunk(s) still being copied by other processes`,
      interrupted: `backfill of ${mapping.name} interrupted after ${stats.rowsScanned} rows; run the same command to resume`,
    };
    process.stdout.write(`${messages[stats.outcome]}\n`);
    return stats.outcome === 'interrupted' ? 130 : 0;
  } catch (e) {
    if (
      e instanceof SetupError ||
      e instanceof ConfigError ||
      e instanceof KeyError ||
      e instanceof PlanError
    ) {
      process.stderr.write(`switchyard backfill: ${e.message}\n`);
      return 2;
    }
    log.error({ err: e }, 'backfill failed');
    process.stderr.write(`switchyard backfill: ${(e as Error).message} (the run can be resumed)\n`);
    return 2;
  } finally {
    log.flush?.();
  }
}

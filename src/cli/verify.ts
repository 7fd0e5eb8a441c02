// `switchyard verify`: prove new = up(old), or say exactly where it is not.
import { once } from 'node:events';
import { createWriteStream, type WriteStream } from 'node:fs';
import type { AddressInfo } from 'node:net';
import type pg from 'pg';
import { ProgressReporter, RateMeter } from '../backfill/progress.ts';
import { loadMapping, positiveInt, SetupError, serveMetrics } from '../backfill/setup.ts';
import { ConfigError } from '../config/load.ts';
import { createLogger, type Logger } from '../log.ts';
import { connect } from '../pg/connect.ts';
import { reversedColumns } from '../rules/columns-sql.ts';
import { KeyError } from '../rules/key-columns.ts';
import type { CompiledMapping } from '../rules/mapping.ts';
import { qualified } from '../rules/rowsql.ts';
import { DEFAULT_VERIFY_OPTIONS, type Drift, type VerifyOptions, verifyMapping } from '../verify/compare.ts';
import { parseCommandArgs } from './args.ts';

const USAGE = `Usage: switchyard verify --config FILE --mapping NAME [--direction D] [--repair] [--out FILE] [options]

Compares up(old) with new in key-ordered chunks, in one consistent snapshot,
without blocking writers, and reports every missing, extra and different row.

  --direction D       old-to-new (default): new = up(old); new-to-old: old = down(new),
                      what dualWrite: both keeps (walks new, keyed by the old key);
                      both: one after the other
  --repair            fix exactly the rows found (same statements as the mirror and
                      backfill), then compare those rows again; new-to-old repairs old
  --out FILE          write every drifted row as a JSON line
  --show N            drifted rows listed on stdout (default 10)
  --chunk-rows N      old rows per compared chunk (default ${DEFAULT_VERIFY_OPTIONS.chunkRows})
  --metrics-port N    serve Prometheus /metrics on 127.0.0.1:N while running
  --progress-interval-ms N  JSON progress line interval when not on a terminal (default 5000)

Exit status: 0 no drift in any direction asked (after --repair: every drifted row
repaired), 1 drift found (and, with --repair, not all of it repaired), 2 error.
`;

const OPTIONS = {
  config: { type: 'string' },
  mapping: { type: 'string' },
  direction: { type: 'string' },
  repair: { type: 'boolean' },
  out: { type: 'string' },
  show: { type: 'string' },
  'chunk-rows': { type: 'string' },
  'metrics-port': { type: 'string' },
  'progress-interval-ms': { type: 'string' },
  'log-level': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

function describe(d: Drift): string {
  const key = JSON.stringify(d.key);
  if (d.kind !== 'different') return `  ${d.kind.padEnd(9)} ${key}`;
  const cols = (d.columns ?? [])
    .slice(0, 3)
    .map((c) => `${c}: ${JSON.stringify(d.actual?.[c])} (expected ${JSON.stringify(d.expected?.[c])})`)
    .join('; ');
  return `  ${d.kind.padEnd(9)} ${key} ${cols}`;
}

const DIRECTIONS = ['old-to-new', 'new-to-old', 'both'];

interface Side {
  mapping: CompiledMapping;
  name: string;
  /** What no drift means, in the report. */
  rule: string;
}

interface Report {
  log: Logger;
  tty: boolean;
  show: number;
  progressInterval: number;
  out?: WriteStream;
  outPath?: string;
}

/** Verifies one direction and prints its report; the exit status it deserves. */
async function verifySide(
  side: Side,
  clientConfig: pg.ClientConfig,
  opts: VerifyOptions,
  report: Report,
): Promise<number> {
  const { mapping } = side;
  const { log, out } = report;
  const c = await connect(clientConfig);
  const est = await c.query(
    `SELECT greatest(reltuples, 0)::float8 AS n FROM pg_class WHERE oid = $1::regclass`,
    [qualified(mapping.old)],
  );
  await c.end();
  const estimated: number = est.rows[0].n;

  const listed: Drift[] = [];
  let rowsSeen = 0;
  const rate = new RateMeter();
  const reporter = new ProgressReporter(
    () => {
      const r = rate.rate();
      return {
        rows: rowsSeen,
        inserted: 0,
        total: Math.max(estimated, rowsSeen),
        rate: r,
        etaSeconds: r > 0 ? Math.max(0, estimated - rowsSeen) / r : undefined,
      };
    },
    {
      tty: report.tty,
      stream: process.stderr,
      log,
      intervalMs: report.progressInterval,
      message: 'verify progress',
    },
  );
  reporter.start();
  let result: Awaited<ReturnType<typeof verifyMapping>>;
  try {
    result = await verifyMapping(mapping, clientConfig, opts, log, {
      onDrift: async (d) => {
        if (listed.length < report.show) listed.push(d);
        if (
          out &&
          !out.write(
            `${JSON.stringify({ mapping: mapping.name, direction: side.name, ...d, keyValues: undefined })}\n`,
          )
        ) {
          await once(out, 'drain');
        }
      },
      onChunk: (progress) => {
        rowsSeen = progress.oldRows;
        rate.add(rowsSeen);
      },
    });
  } finally {
    reporter.stop();
  }
  const total = result.drift.missing + result.drift.extra + result.drift.different;
  const what = mapping.sameTable
    ? `${qualified(mapping.new)} columns ${mapping.up.map((u) => u.column).join(', ')}: ${result.oldRows} rows`
    : `${qualified(mapping.old)} -> ${qualified(mapping.new)}: ${result.oldRows} ${side.name === 'old-to-new' ? 'old' : 'new'} rows`;
  const lines = [
    `verify ${mapping.name}: ${what} in ${result.chunks} chunks, ${result.chunksDiffer} differ (${(result.elapsedMs / 1000).toFixed(1)}s)`,
  ];
  if (total === 0) {
    lines.push(`  no drift: ${side.rule}`);
  } else {
    lines.push(
      `  drift: ${total} rows (missing ${result.drift.missing}, extra ${result.drift.extra}, different ${result.drift.different})`,
    );
    for (const d of listed) lines.push(describe(d));
    if (total > listed.length)
      lines.push(`  ... ${total - listed.length} more${report.outPath ? '' : ' (use --out FILE for all)'}`);
    if (opts.repair)
      lines.push(`  repaired: ${result.repaired}, still different after repair: ${result.unrepaired}`);
    if (report.outPath) lines.push(`  all drifted rows: ${report.outPath}`);
  }
  process.stdout.write(`${lines.join('\n')}\n`);
  log.info({ mapping: mapping.name, direction: side.name, ...result }, 'verify finished');
  if (total === 0) return 0;
  return opts.repair && result.unrepaired === 0 ? 0 : 1;
}

export async function run(argv: string[]): Promise<number> {
  const values = parseCommandArgs('verify', argv, OPTIONS, USAGE, ['config', 'mapping']);
  if (typeof values === 'number') return values;
  const tty = process.stderr.isTTY === true;
  const log = createLogger(values['log-level'] ?? 'info', { destination: 2, pretty: tty });
  let out: WriteStream | undefined;
  try {
    const opts: VerifyOptions = {
      ...DEFAULT_VERIFY_OPTIONS,
      repair: values.repair === true,
      chunkRows: positiveInt('--chunk-rows', values['chunk-rows']) ?? DEFAULT_VERIFY_OPTIONS.chunkRows,
    };
    const show = positiveInt('--show', values.show, 0) ?? 10;
    const metricsPort = positiveInt('--metrics-port', values['metrics-port'], 0);
    const progressInterval = positiveInt('--progress-interval-ms', values['progress-interval-ms']) ?? 5000;
    const direction = values.direction ?? 'old-to-new';
    if (!DIRECTIONS.includes(direction)) {
      throw new SetupError(`--direction must be ${DIRECTIONS.join(', ')}, not ${direction}`);
    }
    const { mapping: loaded, clientConfig } = await loadMapping(
      values.config as string,
      values.mapping as string,
      'switchyard-verify',
      direction === 'old-to-new' ? {} : { reverse: `verify --direction ${direction}` },
    );
    if (values.out) {
      out = createWriteStream(values.out);
      await once(out, 'open');
    }
    const metricsServer = metricsPort === undefined ? undefined : await serveMetrics(metricsPort);
    if (metricsServer) {
      const { port } = metricsServer.address() as AddressInfo;
      log.info({ url: `http://127.0.0.1:${port}/metrics` }, 'serving metrics');
    }
    // The mapping seen from new (old and new, up and down swapped): verify walks it the same way.
    const sides: Side[] = [];
    // A column migration compares columns of one row: its old side is the same row seen through down.
    const columns = loaded.sameTable !== undefined;
    if (direction !== 'new-to-old') {
      const rule = columns ? 'new columns match up(row)' : 'new matches up(old)';
      sides.push({ mapping: loaded, name: 'old-to-new', rule });
    }
    if (direction !== 'old-to-new') {
      sides.push(
        columns
          ? { mapping: reversedColumns(loaded), name: 'new-to-old', rule: 'old columns match down(row)' }
          : { mapping: loaded.reverse!, name: 'new-to-old', rule: 'old matches down(new)' },
      );
    }
    let exit = 0;
    try {
      for (const side of sides) {
        exit = Math.max(
          exit,
          await verifySide(side, clientConfig, opts, {
            log,
            tty,
            show,
            progressInterval,
            out,
            outPath: values.out,
          }),
        );
      }
    } finally {
      metricsServer?.close();
    }
    if (out) {
      out.end();
      await once(out, 'finish');
    }
    return exit;
  } catch (e) {
    out?.destroy();
    if (e instanceof SetupError || e instanceof ConfigError || e instanceof KeyError) {
      process.stderr.write(`switchyard verify: ${e.message}\n`);
      return 2;
    }
    log.error({ err: e }, 'verify failed');
    process.stderr.write(`switchyard verify: ${(e as Error).message}\n`);
    return 2;
  } finally {
    log.flush?.();
  }
}

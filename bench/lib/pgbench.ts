// Runs pgbench and reads its figures: TPS from its summary, latency
// percentiles from its per-transaction log (-l), which records every
// transaction's elapsed time in microseconds.
import { execFile as execFileCb } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { quantile } from './stats.ts';

const execFile = promisify(execFileCb);

export interface Target {
  host: string;
  port: number;
  database: string;
  user: string;
}

export interface PgbenchRun {
  /** Built-in script (-b) or a file (-f). */
  builtin?: 'select-only' | 'tpcb-like';
  file?: string;
  mode: 'simple' | 'extended' | 'prepared';
  clients: number;
  seconds: number;
  /** Directory for the transaction logs (deleted after reading). */
  logDir: string;
  extra?: string[];
}

export interface PgbenchResult {
  tps: number;
  transactions: number;
  failed: number;
  /** Latency in microseconds. */
  p50: number;
  p99: number;
  mean: number;
  /** Every transaction's latency (µs), sorted: runs are pooled through these. */
  latencies: Float64Array;
}

export function pgbenchBin(): string {
  return process.env.SWITCHYARD_BENCH_PGBENCH ?? 'pgbench';
}

export async function pgbenchVersion(): Promise<string | undefined> {
  try {
    const { stdout } = await execFile(pgbenchBin(), ['--version']);
    return stdout.trim();
  } catch {
    return undefined;
  }
}

function connArgs(t: Target): string[] {
  return ['-h', t.host, '-p', String(t.port), '-U', t.user];
}

/** pgbench -i: the standard tables at the given scale. */
export async function pgbenchInit(t: Target, scale: number): Promise<void> {
  await execFile(pgbenchBin(), ['-i', '-q', '-s', String(scale), ...connArgs(t), t.database], {
    env: { ...process.env, PGCONNECT_TIMEOUT: '10' },
    maxBuffer: 16 * 1024 * 1024,
  });
}

let seq = 0;

export async function pgbench(t: Target, run: PgbenchRun): Promise<PgbenchResult> {
  const prefix = path.join(run.logDir, `tx${++seq}`);
  const threads = Math.min(run.clients, 2);
  const args = [
    ...connArgs(t),
    '-n',
    '-M',
    run.mode,
    '-c',
    String(run.clients),
    '-j',
    String(threads),
    '-T',
    String(run.seconds),
    '-l',
    `--log-prefix=${prefix}`,
    ...(run.builtin ? ['-b', run.builtin] : ['-f', run.file!]),
    ...(run.extra ?? []),
    t.database,
  ];
  let stdout: string;
  try {
    ({ stdout } = await execFile(pgbenchBin(), args, {
      cwd: run.logDir,
      maxBuffer: 16 * 1024 * 1024,
      timeout: (run.seconds + 60) * 1000,
    }));
  } catch (e) {
    const err = e as { stderr?: string; message: string };
    throw new Error(`pgbench ${args.join(' ')} failed: ${(err.stderr ?? err.message).trim().slice(-800)}`);
  }
  const tps = Number(
    /tps = ([\d.]+) \((?:without initial connection time|excluding connections)/.exec(stdout)?.[1],
  );
  const transactions = Number(/number of transactions actually processed: (\d+)/.exec(stdout)?.[1] ?? 0);
  const failed = Number(/number of failed transactions: (\d+)/.exec(stdout)?.[1] ?? 0);
  const lat = await readLatencies(run.logDir, path.basename(prefix));
  lat.sort();
  let sum = 0;
  for (const v of lat) sum += v;
  return {
    tps,
    transactions,
    failed,
    p50: quantile(lat, 0.5),
    p99: quantile(lat, 0.99),
    mean: lat.length ? sum / lat.length : Number.NaN,
    latencies: lat,
  };
}

/** Every transaction's latency (µs) from the log files of one run (one per thread). */
async function readLatencies(dir: string, base: string): Promise<Float64Array> {
  const files = (await fs.readdir(dir)).filter((f) => f.startsWith(`${base}.`));
  const values: number[] = [];
  for (const f of files) {
    const full = path.join(dir, f);
    const text = await fs.readFile(full, 'latin1');
    // client_id transaction_no time script_no time_epoch time_us
    for (const line of text.split('\n')) {
      if (line.length === 0) continue;
      const a = line.indexOf(' ');
      const b = line.indexOf(' ', a + 1);
      const c = line.indexOf(' ', b + 1);
      const v = line.slice(b + 1, c);
      if (v === 'failed' || v === 'skipped') continue;
      values.push(Number(v));
    }
    await fs.rm(full, { force: true });
  }
  return Float64Array.from(values);
}

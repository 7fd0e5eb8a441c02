// `npm run bench:profile`: switchyard under `node --cpu-prof` while pgbench
// runs select-only, -M prepared, 8 clients through it; prints the functions
// with the most self time and keeps the .cpuprofile for a closer look
// (Chrome DevTools or speedscope).
//
// Environment: SWITCHYARD_BENCH_SECONDS (default 15), SWITCHYARD_PROFILE_MODE
// (prepared | simple), SWITCHYARD_PROFILE_CLIENTS (8), SWITCHYARD_PROFILE_MAPPINGS=1
// to configure the users mapping, SWITCHYARD_PROFILE_TARGET=pipe to profile the bare
// pipe() forwarder instead, SWITCHYARD_PROFILE_SCRIPT=file.sql for a pgbench script of
// your own (tables from bench/lib/schema.ts), SWITCHYARD_BENCH_PG_BIN.
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { LocalCluster } from '../src/demo/cluster.ts';
import { pgbench, pgbenchInit } from './lib/pgbench.ts';
import { cpuMicros } from './lib/proc.ts';
import { MAPPING, SETUP_SQL } from './lib/schema.ts';
import { fmt, ms } from './lib/stats.ts';
import { startPipe, startSwitchyard, type Upstream } from './lib/systems.ts';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface CpuProfile {
  startTime: number;
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

const env = process.env;
const SECONDS = Number(env.SWITCHYARD_BENCH_SECONDS ?? 15);
const MODE = (env.SWITCHYARD_PROFILE_MODE ?? 'prepared') as 'prepared' | 'simple';
const CLIENTS = Number(env.SWITCHYARD_PROFILE_CLIENTS ?? 8);
const TARGET = env.SWITCHYARD_PROFILE_TARGET ?? 'switchyard';
/** A pgbench script file instead of the built-in select-only. */
const SCRIPT = env.SWITCHYARD_PROFILE_SCRIPT;

async function main(): Promise<void> {
  const work = await fs.mkdtemp(path.join(os.tmpdir(), 'sy-prof-'));
  await fs.chmod(work, 0o755);
  const outDir = path.resolve('bench/out/profiles');
  await fs.mkdir(outDir, { recursive: true });
  const cluster = await LocalCluster.start({ binDir: env.SWITCHYARD_BENCH_PG_BIN });
  try {
    await cluster.createDatabase('bench');
    const up: Upstream = { host: cluster.host, port: cluster.port, database: 'bench', user: 'postgres' };
    await pgbenchInit(up, 10);
    await cluster.psqlSuper(SETUP_SQL, 'bench');
    const before = new Set(await fs.readdir(outDir));
    const nodeArgs = ['--cpu-prof', '--cpu-prof-dir', outDir];
    const sy =
      TARGET === 'pipe'
        ? await startPipe(work, up, nodeArgs)
        : await startSwitchyard(work, up, {
            name: 'switchyard-profile',
            mappings: env.SWITCHYARD_PROFILE_MAPPINGS === '1' ? [MAPPING] : [],
            nodeArgs,
          });
    // The profiler's clock is CLOCK_MONOTONIC in µs, like hrtime: keep only the samples taken under load.
    const from = Number(process.hrtime.bigint() / 1000n);
    const cpu0 = await cpuMicros(sy.pid());
    const r = await pgbench(
      { host: '127.0.0.1', port: sy.port, database: 'bench', user: 'postgres' },
      {
        ...(SCRIPT ? { file: path.resolve(SCRIPT) } : { builtin: 'select-only' as const }),
        mode: MODE,
        clients: CLIENTS,
        seconds: SECONDS,
        logDir: work,
      },
    );
    const to = Number(process.hrtime.bigint() / 1000n);
    const cpu1 = await cpuMicros(sy.pid());
    await sy.stop();
    if (TARGET !== 'pipe') {
      await fs.copyFile(path.join(work, 'switchyard-profile.log'), path.join(outDir, 'switchyard.log'));
    }
    process.stdout.write(
      `${TARGET}: pgbench ${SCRIPT ? path.basename(SCRIPT) : '-S'} -M ${MODE} -c ${CLIENTS} -T ${SECONDS}: ${fmt(r.tps)} tps, p50 ${ms(r.p50)} ms, p99 ${ms(r.p99)} ms; proxy CPU (user+sys) ${fmt(((cpu1 ?? 0) - (cpu0 ?? 0)) / r.transactions, 1)} µs per transaction\n`,
    );
    const file = (await fs.readdir(outDir)).find((f) => /\.0\.\d+\.cpuprofile$/.test(f) && !before.has(f)); // thread 0: the main thread
    if (!file) throw new Error('the proxy wrote no .cpuprofile (did it exit cleanly on SIGTERM?)');
    report(
      JSON.parse(await fs.readFile(path.join(outDir, file), 'utf8')) as CpuProfile,
      r.transactions,
      from,
      to,
    );
    // Per-function µs per transaction, for comparing two runs.
    await fs.writeFile(path.join(outDir, `${TARGET}-by-function.json`), JSON.stringify(lastByFn, null, 1));
    process.stdout.write(`\nprofile: ${path.join(outDir, file)}\n`);
  } finally {
    await cluster.stop();
    await fs.rm(work, { recursive: true, force: true });
  }
}

let lastByFn: Record<string, number> = {};

function report(p: CpuProfile, transactions: number, from: number, to: number): void {
  const self = new Map<number, number>();
  let t = p.startTime;
  for (let i = 0; i < p.samples.length; i++) {
    t += p.timeDeltas[i];
    if (t < from || t > to) continue;
    self.set(p.samples[i], (self.get(p.samples[i]) ?? 0) + p.timeDeltas[i]);
  }
  const byFn = new Map<string, number>();
  const byFile = new Map<string, number>();
  let total = 0;
  let idle = 0;
  for (const n of p.nodes) {
    const t = self.get(n.id) ?? 0;
    total += t;
    const f = n.callFrame;
    if (f.functionName === '(idle)') idle += t;
    const file = f.url
      ? f.url
          .replace(/^.*\/(node_modules\/)/, '$1')
          .replace(/^.*\/work\/main\//, '')
          .replace(/^file:\/\//, '')
      : '(native)';
    const key = `${f.functionName || '(anonymous)'}  ${file}:${f.lineNumber + 1}`;
    byFn.set(key, (byFn.get(key) ?? 0) + t);
    const fileKey = file.replace(/:\d+$/, '');
    byFile.set(fileKey, (byFile.get(fileKey) ?? 0) + t);
  }
  const busy = total - idle;
  process.stdout.write(
    `\nsampled ${fmt(total / 1000)} ms, idle ${fmt(idle / 1000)} ms, busy ${fmt(busy / 1000)} ms = ${fmt(busy / transactions, 1)} µs per transaction\n`,
  );
  const top = (m: Map<string, number>, n: number, title: string) => {
    process.stdout.write(`\n${title}\n`);
    for (const [k, v] of [...m].sort((a, b) => b[1] - a[1]).slice(0, n)) {
      process.stdout.write(
        `${((100 * v) / busy).toFixed(1).padStart(5)}%  ${fmt(v / transactions, 2).padStart(6)} µs/tx  ${k}\n`,
      );
    }
  };
  byFn.delete(`(idle)  (native):0`);
  lastByFn = Object.fromEntries([...byFn].map(([k, v]) => [k, v / transactions]));
  byFile.delete('(native)');
  top(byFn, 40, 'self time by function (share of busy time, per transaction)');
  top(byFile, 20, 'self time by file');
}

main().catch((e) => {
  process.stderr.write(`profile failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exitCode = 1;
});

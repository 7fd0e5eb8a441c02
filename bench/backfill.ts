// `npx tsx bench/backfill.ts`: backfill rows per second at 100k and 1M rows
// with 1, 2 and 4 workers, each next to one `INSERT INTO new SELECT up(old)
// FROM old` over the same data timed just before it (the upper limit: one
// statement, no batches, no checkpoints, no settling). The machine is shared,
// so only the ratio in one pair means much: each pair is repeated and the
// median ratio and its range are printed, with the backfill's peak RSS and its
// rate early and late in the run (it must stay flat as the table grows).
//
//   SIZES=100000,1000000 WORKERS=1,2,4 REPEAT=3 SWITCHYARD_BENCH_PG_BIN=/usr/lib/postgresql/15/bin npx tsx bench/backfill.ts
import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { parseConfigText } from '../src/config/load.ts';
import { LocalCluster } from '../src/demo/cluster.ts';
import { qualified, upSelect } from '../src/rules/rowsql.ts';
import { compileRules } from '../src/rules/ruleset.ts';
import { createUsers, USERS_MAPPING } from '../test/support/backfill-fixtures.ts';
import { fmt, median, table } from './lib/stats.ts';

const env = process.env;
const SIZES = (env.SIZES ?? '100000,1000000').split(',').map(Number);
const WORKERS = (env.WORKERS ?? '1,2,4').split(',').map(Number);
const REPEAT = Number(env.REPEAT ?? 3);
const ROOT = path.resolve(import.meta.dirname, '..');

interface Pair {
  /** rows/s of the single INSERT … SELECT and of the backfill, in one pair of runs. */
  single: number;
  backfill: number;
  batches: number;
  rssMb: number;
  rates: number[];
}

interface CliRun {
  code: number | null;
  lines: Record<string, unknown>[];
}

function backfillCli(configPath: string, workers: number): Promise<CliRun> {
  return new Promise((resolve) => {
    const child = spawn(
      process.execPath,
      [
        path.join(ROOT, 'bin/switchyard.js'),
        ...['backfill', '--config', configPath, '--mapping', 'users', '--max-lag-ms', '0'],
        ...['--workers', String(workers), '--progress-interval-ms', '1000'],
      ],
      { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'] },
    );
    let err = '';
    child.stderr.on('data', (d) => {
      err += d;
    });
    child.on('close', (code) => {
      const lines = err
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as Record<string, unknown>);
      if (code !== 0) process.stderr.write(err);
      resolve({ code, lines });
    });
  });
}

async function main(): Promise<void> {
  const work = await fs.mkdtemp(path.join(os.tmpdir(), 'sy-bench-bf-'));
  const cluster = await LocalCluster.start({ binDir: env.SWITCHYARD_BENCH_PG_BIN });
  const rows: string[][] = [];
  try {
    for (const n of SIZES) {
      const url = await cluster.createDatabase(`bf_${n}`);
      const c = new pg.Client({ connectionString: url });
      await c.connect();
      try {
        await createUsers((sql) => c.query(sql), n);
        await c.query('VACUUM ANALYZE users');
        const text = `upstream:\n  url: ${url}\nmappings:${USERS_MAPPING}`;
        const configPath = path.join(work, `bf_${n}.yaml`);
        await fs.writeFile(configPath, text);
        const m = (await compileRules(parseConfigText(text))).mappings[0];
        const cols = m.up.map((u) => `"${u.column}"`).join(', ');
        const fresh = async () => {
          await c.query('TRUNCATE users_v2');
          await c.query('VACUUM users_v2');
          await c.query('DROP SCHEMA IF EXISTS switchyard CASCADE');
          await c.query('CHECKPOINT');
        };
        const byWorkers = new Map<number, Pair[]>(WORKERS.map((w) => [w, []]));
        // Rounds over all worker counts, so that a busy spell of the machine hits each of them alike.
        for (let round = 0; round < REPEAT; round++) {
          for (const w of WORKERS) {
            await fresh();
            const t0 = performance.now();
            await c.query(
              `INSERT INTO ${qualified(m.new)} (${cols}) ${upSelect(m, `SELECT * FROM ${qualified(m.old)}`)}`,
            );
            const single = performance.now() - t0;
            await fresh();
            const run = await backfillCli(configPath, w);
            if (run.code !== 0) throw new Error(`backfill exited ${run.code}`);
            const done = run.lines.find((l) => l.msg === 'backfill done')!;
            const count = (await c.query('SELECT count(*)::int AS n FROM users_v2')).rows[0].n;
            if (count !== n) throw new Error(`backfill copied ${count} of ${n} rows`);
            const rates = run.lines
              .filter((l) => l.msg === 'backfill progress' && Number(l.rate) > 0)
              .map((l) => Number(l.rate));
            const pair: Pair = {
              single: (n * 1000) / single,
              backfill: Number(done.rowsPerSecond),
              batches: Number(done.batches),
              rssMb: Number(done.peakRssMb),
              rates,
            };
            byWorkers.get(w)!.push(pair);
            process.stderr.write(
              `${n} rows, ${w} worker(s), round ${round + 1}: INSERT…SELECT ${fmt(single)} ms, backfill ${done.seconds} s, ratio ${(pair.backfill / pair.single).toFixed(2)}\n`,
            );
          }
        }
        const one = median(byWorkers.get(WORKERS[0])!.map((p) => p.backfill));
        for (const [w, pairs] of byWorkers) {
          const ratios = pairs.map((p) => p.backfill / p.single);
          // Early and late thirds of one run: a rate that falls with table size shows here.
          const rates = pairs[pairs.length - 1].rates;
          const third = Math.max(1, Math.floor(rates.length / 3));
          const avg = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
          const bf = median(pairs.map((p) => p.backfill));
          rows.push([
            fmt(n),
            String(w),
            fmt(median(pairs.map((p) => p.single))),
            fmt(bf),
            `${median(ratios).toFixed(2)} (${Math.min(...ratios).toFixed(2)}–${Math.max(...ratios).toFixed(2)})`,
            `${(bf / one).toFixed(2)}×`,
            rates.length >= 3 ? `${fmt(avg(rates.slice(0, third)))} / ${fmt(avg(rates.slice(-third)))}` : '–',
            fmt(median(pairs.map((p) => p.batches))),
            `${Math.max(...pairs.map((p) => p.rssMb))} MB`,
          ]);
        }
      } finally {
        await c.end();
      }
    }
    process.stdout.write(
      `\nbackfill, Postgres ${cluster.version}, ${os.cpus().length} cores, median of ${REPEAT} pairs (range)\n\n` +
        table(
          [
            'rows',
            'workers',
            'INSERT…SELECT rows/s',
            'backfill rows/s',
            'ratio',
            'vs 1 worker',
            'rate early / late third',
            'batches',
            'peak RSS',
          ],
          rows,
        ) +
        '\n',
    );
  } finally {
    await cluster.stop();
    await fs.rm(work, { recursive: true, force: true });
  }
}

await main();

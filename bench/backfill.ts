// `npx tsx bench/backfill.ts`: backfill rows per second at 100k and 1M rows,
// next to one `INSERT INTO new SELECT up(old) FROM old` over the same data
// (the upper limit: one statement, no batches, no checkpoints), with the
// backfill's peak RSS and its rate early and late in the run (it must stay
// flat as the table grows).
//
//   SIZES=100000,1000000 WORKERS=1 SWITCHYARD_BENCH_PG_BIN=/usr/lib/postgresql/15/bin npx tsx bench/backfill.ts
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
import { fmt, ratio, table } from './lib/stats.ts';

const env = process.env;
const SIZES = (env.SIZES ?? '100000,1000000').split(',').map(Number);
const WORKERS = env.WORKERS ?? '1';
const ROOT = path.resolve(import.meta.dirname, '..');

interface CliRun {
  code: number | null;
  lines: Record<string, unknown>[];
}

function backfillCli(configPath: string): Promise<CliRun> {
  return new Promise((resolve) => {
    const child = spawn(
      process.execPath,
      [
        path.join(ROOT, 'bin/switchyard.js'),
        ...['backfill', '--config', configPath, '--mapping', 'users', '--max-lag-ms', '0'],
        ...['--workers', WORKERS, '--progress-interval-ms', '1000'],
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

        // The upper limit: everything in one statement.
        await c.query('CHECKPOINT');
        const t0 = performance.now();
        await c.query(
          `INSERT INTO ${qualified(m.new)} (${cols}) ${upSelect(m, `SELECT * FROM ${qualified(m.old)}`)}`,
        );
        const single = performance.now() - t0;
        await c.query('TRUNCATE users_v2');
        await c.query('VACUUM users_v2');
        await c.query('CHECKPOINT');

        const run = await backfillCli(configPath);
        if (run.code !== 0) throw new Error(`backfill exited ${run.code}`);
        const done = run.lines.find((l) => l.msg === 'backfill done')!;
        const progress = run.lines.filter((l) => l.msg === 'backfill progress' && Number(l.rate) > 0);
        const rates = progress.map((l) => Number(l.rate));
        // Early and late thirds of the run: a rate that falls with table size shows here.
        const third = Math.max(1, Math.floor(rates.length / 3));
        const early = rates.slice(0, third);
        const late = rates.slice(-third);
        const avg = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
        const count = (await c.query('SELECT count(*)::int AS n FROM users_v2')).rows[0].n;
        if (count !== n) throw new Error(`backfill copied ${count} of ${n} rows`);
        const singleRate = (n * 1000) / single;
        const bfRate = Number(done.rowsPerSecond);
        rows.push([
          fmt(n),
          fmt(singleRate),
          fmt(bfRate),
          ratio(bfRate, singleRate),
          rates.length >= 3 ? `${fmt(avg(early))} / ${fmt(avg(late))}` : '–',
          fmt(Number(done.batches)),
          `${done.peakRssMb} MB`,
        ]);
        process.stderr.write(`${n} rows: single INSERT ${fmt(single)} ms, backfill ${done.seconds} s\n`);
      } finally {
        await c.end();
      }
    }
    process.stdout.write(
      `\nbackfill, ${WORKERS} worker(s), Postgres ${cluster.version}, ${os.cpus().length} cores\n\n` +
        table(
          [
            'rows',
            'INSERT…SELECT rows/s',
            'backfill rows/s',
            'ratio',
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

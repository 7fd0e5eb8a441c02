// `npx tsx bench/backfill-columns.ts`: the backfill of a column migration
// inside one table (users: first_name + last_name -> full_name, price ->
// price_cents) in rows per second, each run next to one
// `UPDATE users SET full_name = up, price_cents = up` of the whole table timed
// just before it on the same data (the upper limit: one statement, no
// batches, no checkpoints, one long lock on every row). DIFFER is the share of
// rows whose new columns are out of step before each run (the rest are
// already right, which the single statement rewrites anyway and the backfill
// does not). Pairs are repeated in rounds; the median and range are printed.
//
//   SIZES=1000000 WORKERS=1,2 DIFFER=1,0.25 REPEAT=3 SWITCHYARD_BENCH_PG_BIN=/usr/lib/postgresql/15/bin npx tsx bench/backfill-columns.ts
import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { LocalCluster } from '../src/demo/cluster.ts';
import { COLUMNS_MAPPING } from '../test/support/backfill-fixtures.ts';
import { fmt, median, table } from './lib/stats.ts';

const env = process.env;
const SIZES = (env.SIZES ?? '1000000').split(',').map(Number);
const WORKERS = (env.WORKERS ?? '1,2').split(',').map(Number);
const DIFFER = (env.DIFFER ?? '1,0.25').split(',').map(Number);
const REPEAT = Number(env.REPEAT ?? 3);
const ROOT = path.resolve(import.meta.dirname, '..');

const FILL_ALL = `UPDATE users SET full_name = first_name || ' ' || last_name, price_cents = round(price * 100)::bigint`;

function backfillCli(configPath: string, workers: number): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      [
        path.join(ROOT, 'bin/switchyard.js'),
        ...['backfill', '--config', configPath, '--mapping', 'user-columns', '--max-lag-ms', '0'],
        ...['--workers', String(workers)],
      ],
      { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'] },
    );
    let err = '';
    child.stderr.on('data', (d) => {
      err += d;
    });
    child.on('close', (code) => {
      const done = err
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as Record<string, unknown>)
        .find((l) => l.msg === 'backfill done');
      if (code !== 0 || !done) reject(new Error(`backfill exited ${code}: ${err}`));
      else resolve(done);
    });
  });
}

async function main(): Promise<void> {
  const work = await fs.mkdtemp(path.join(os.tmpdir(), 'sy-bench-cols-'));
  const cluster = await LocalCluster.start({ binDir: env.SWITCHYARD_BENCH_PG_BIN });
  const rows: string[][] = [];
  try {
    for (const n of SIZES) {
      const url = await cluster.createDatabase(`cols_${n}`);
      const c = new pg.Client({ connectionString: url });
      await c.connect();
      try {
        await c.query(`
          CREATE TABLE users (id int PRIMARY KEY, first_name text NOT NULL, last_name text NOT NULL,
                              price numeric(10,2) NOT NULL, full_name text, price_cents bigint);
          INSERT INTO users (id, first_name, last_name, price)
            SELECT g, 'first' || g, 'last' || g, (g % 100000) / 100.0 FROM generate_series(1, ${n}) g`);
        await c.query('VACUUM ANALYZE users');
        const configPath = path.join(work, `cols_${n}.yaml`);
        await fs.writeFile(configPath, `upstream:\n  url: ${url}\nmappings:${COLUMNS_MAPPING}`);
        /** New columns right in every row except a share `differ` of them (spread over the whole table). */
        const fresh = async (differ: number) => {
          await c.query(FILL_ALL);
          await c.query(
            `UPDATE users SET full_name = NULL, price_cents = NULL WHERE id % 1000 < ${Math.round(differ * 1000)}`,
          );
          await c.query('VACUUM ANALYZE users');
          await c.query('DROP SCHEMA IF EXISTS switchyard CASCADE');
          await c.query('CHECKPOINT');
        };
        const cases = DIFFER.flatMap((d) => WORKERS.map((w) => ({ d, w, pairs: [] as number[][] })));
        for (let round = 0; round < REPEAT; round++) {
          for (const k of cases) {
            await fresh(k.d);
            const t0 = performance.now();
            await c.query(FILL_ALL);
            const single = performance.now() - t0;
            await fresh(k.d);
            const done = await backfillCli(configPath, k.w);
            const off = await c.query(`SELECT count(*)::int AS n FROM users
              WHERE full_name IS DISTINCT FROM first_name || ' ' || last_name
                 OR price_cents IS DISTINCT FROM round(price * 100)::bigint`);
            if (off.rows[0].n !== 0) throw new Error(`${off.rows[0].n} rows out of step after the backfill`);
            const pair = [(n * 1000) / single, Number(done.rowsPerSecond), Number(done.rowsInserted)];
            k.pairs.push(pair);
            process.stderr.write(
              `${n} rows, ${k.d * 100}% differ, ${k.w} worker(s), round ${round + 1}: UPDATE ${fmt(single)} ms, backfill ${done.seconds} s (${done.rowsInserted} updated), ratio ${(pair[1] / pair[0]).toFixed(2)}\n`,
            );
          }
        }
        for (const k of cases) {
          const ratios = k.pairs.map((p) => p[1] / p[0]);
          rows.push([
            fmt(n),
            `${k.d * 100}%`,
            String(k.w),
            fmt(median(k.pairs.map((p) => p[0]))),
            fmt(median(k.pairs.map((p) => p[1]))),
            `${median(ratios).toFixed(2)} (${Math.min(...ratios).toFixed(2)}–${Math.max(...ratios).toFixed(2)})`,
            fmt(median(k.pairs.map((p) => p[2]))),
          ]);
        }
      } finally {
        await c.end();
      }
    }
    process.stdout.write(
      `\ncolumn backfill, Postgres ${cluster.version}, ${os.cpus().length} cores, median of ${REPEAT} pairs (range)\n\n` +
        table(
          ['rows', 'differ', 'workers', 'UPDATE rows/s', 'backfill rows/s', 'ratio', 'rows updated'],
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

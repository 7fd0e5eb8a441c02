// `npx tsx bench/shadow.ts`: does a shadow read move the client's latency?
// The same simple-protocol point read through three switchyard processes:
// without shadowReads, with the documented sample (0.01), and with a shadow
// read on every read (sample 1), maxConcurrent 2; pgbench -M simple at 1 and 8
// clients, the systems taking turns in a rotating order; p50, p99 and TPS
// side by side, ratios against no shadow reads. The shadow reads run off the
// client's path but on the same machine and database: at sample 1 they triple
// the database's work per read.
//
// Environment: SWITCHYARD_BENCH_SECONDS (default 4), SWITCHYARD_BENCH_ROUNDS
// (default 3), SWITCHYARD_BENCH_PG_BIN (default: embedded PG 18).
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { LocalCluster } from '../src/demo/cluster.ts';
import { ITEMS as MAPPING } from '../test/support/items.ts';
import { type PgbenchResult, pgbench } from './lib/pgbench.ts';
import { loadAvg } from './lib/proc.ts';
import { fmt, ms, ratio, table } from './lib/stats.ts';
import { type Proc, startSwitchyard } from './lib/systems.ts';

const SECONDS = Number(process.env.SWITCHYARD_BENCH_SECONDS ?? 4);
const ROUNDS = Number(process.env.SWITCHYARD_BENCH_ROUNDS ?? 3);
const ROWS = 100_000;

async function main(): Promise<void> {
  const work = await fs.mkdtemp(path.join(os.tmpdir(), 'sy-bench-shadow-'));
  const cluster = await LocalCluster.start({ binDir: process.env.SWITCHYARD_BENCH_PG_BIN });
  const procs: Proc[] = [];
  try {
    await cluster.createDatabase('bench');
    const c = new pg.Client({ connectionString: cluster.url('bench') });
    await c.connect();
    await c.query(`CREATE TABLE items (id int PRIMARY KEY, v text NOT NULL);
      CREATE TABLE items_v2 (id int PRIMARY KEY, label text NOT NULL);
      INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, ${ROWS}) g;
      INSERT INTO items_v2 SELECT id, v FROM items;`);
    await c.query('VACUUM ANALYZE');
    await c.end();
    const up = { host: '127.0.0.1', port: cluster.port, database: 'bench', user: 'postgres' };
    const off = await startSwitchyard(work, up, { name: 'plain', mappings: [MAPPING], logLevel: 'error' });
    const sampled = await startSwitchyard(work, up, {
      name: 'sampled',
      mappings: [{ ...MAPPING, shadowReads: { sample: 0.01, maxConcurrent: 2 } }],
      logLevel: 'error',
    });
    const every = await startSwitchyard(work, up, {
      name: 'every',
      mappings: [{ ...MAPPING, shadowReads: { sample: 1, maxConcurrent: 2 } }],
      logLevel: 'error',
    });
    procs.push(off, sampled, every);
    const file = path.join(work, 'read.sql');
    await fs.writeFile(file, `\\set id random(1, ${ROWS})\nSELECT v FROM items WHERE id = :id;\n`);
    const systems = [
      { key: 'no shadow reads', port: off.port },
      { key: 'sample 0.01', port: sampled.port },
      { key: 'sample 1', port: every.port },
    ];
    const load0 = await loadAvg();
    const rows: string[][] = [];
    for (const clients of [1, 8]) {
      const pooled = new Map<string, PgbenchResult[]>();
      for (let r = 0; r < ROUNDS; r++) {
        for (const s of systems.map((_, i) => systems[(i + r) % systems.length])) {
          const res = await pgbench(
            { ...up, port: s.port },
            { file, mode: 'simple', clients, seconds: SECONDS, logDir: work },
          );
          pooled.set(s.key, [...(pooled.get(s.key) ?? []), res]);
        }
      }
      const stat = (k: string) => {
        const runs = pooled.get(k) ?? [];
        const all = runs.flatMap((x) => [...x.latencies]).sort((a, b) => a - b);
        return {
          tps: runs.reduce((a, x) => a + x.tps, 0) / runs.length,
          p50: all[Math.floor(all.length / 2)] ?? 0,
          p99: all[Math.floor(all.length * 0.99)] ?? 0,
        };
      };
      const [a, b, c] = systems.map((s) => stat(s.key));
      const cell = (x: typeof a) => `${fmt(x.tps)} TPS, p50 ${ms(x.p50)}, p99 ${ms(x.p99)}`;
      rows.push([
        `-M simple -c ${clients}`,
        cell(a),
        cell(b),
        cell(c),
        `${ratio(b.p50, a.p50)} / ${ratio(c.p50, a.p50)}`,
        `${ratio(b.tps, a.tps)} / ${ratio(c.tps, a.tps)}`,
      ]);
      process.stderr.write(`${rows.at(-1)!.join(' | ')}\n`);
    }
    process.stdout.write(
      `${[
        `Shadow reads and the client's latency, ${new Date().toISOString().slice(0, 16)} UTC, ${os.cpus().length} cores, load average ${load0.toFixed(1)} at the start; ${ROUNDS} rounds of ${SECONDS} s per system, pooled.`,
        '',
        table(
          ['pgbench', ...systems.map((s) => s.key), 'p50 ratio (0.01 / 1)', 'TPS ratio (0.01 / 1)'],
          rows,
        ),
      ].join('\n')}\n`,
    );
  } finally {
    for (const p of procs) await p.stop();
    await cluster.stop();
    await fs.rm(work, { recursive: true, force: true });
  }
}

await main();

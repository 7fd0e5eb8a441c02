// `npx tsx bench/columns.ts`: what keeping a column migration in step costs
// on the table being migrated. One table with an old column (`display`) and
// its new one (`nickname`); single-row UPDATE and INSERT by the old name,
// pgbench, 1 and 8 clients, -M simple and -M prepared:
//   switchyard  the proxy with a same-table mapping (nickname = display in the statement)
//   trigger     direct, a BEFORE INSERT OR UPDATE trigger setting nickname := display
//   direct      direct, nothing kept in step
//   unmapped    the proxy with no mapping (its own cost, for the split)
// The systems take turns within each cell, in a rotating order, and are
// pooled over SWITCHYARD_BENCH_ROUNDS runs; ratios are against the trigger.
//
// Environment: SWITCHYARD_BENCH_SECONDS (default 4), SWITCHYARD_BENCH_ROUNDS
// (default 3), SWITCHYARD_BENCH_PG_BIN (default: embedded PG 18).
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { LocalCluster } from '../src/demo/cluster.ts';
import { type PgbenchResult, pgbench, type Target } from './lib/pgbench.ts';
import { loadAvg } from './lib/proc.ts';
import { fmt, ms, ratio, table } from './lib/stats.ts';
import { type Proc, startSwitchyard } from './lib/systems.ts';

const SECONDS = Number(process.env.SWITCHYARD_BENCH_SECONDS ?? 4);
const ROUNDS = Number(process.env.SWITCHYARD_BENCH_ROUNDS ?? 3);
const ROWS = 100_000;
const say = (s: string) => process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${s}\n`);

const SETUP = `
CREATE TABLE people (id int PRIMARY KEY, email text NOT NULL, display text, visits int NOT NULL DEFAULT 0, nickname text);
INSERT INTO people SELECT g, 'p' || g || '@example.com', 'name' || g, 0, 'name' || g FROM generate_series(1, ${ROWS}) g;
CREATE TABLE people_t (LIKE people INCLUDING ALL);
INSERT INTO people_t SELECT * FROM people;
CREATE FUNCTION people_t_nickname() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN NEW.nickname := NEW.display; RETURN NEW; END $$;
CREATE TRIGGER people_t_nickname BEFORE INSERT OR UPDATE ON people_t FOR EACH ROW EXECUTE FUNCTION people_t_nickname();`;

const MAPPING = {
  name: 'people-nickname',
  old: 'people',
  new: 'people',
  key: ['id'],
  dualWrite: true,
  up: { nickname: 'display' },
  down: { display: 'nickname' },
};

const SCRIPTS: Record<string, (table: string) => string> = {
  update: (t) => `\\set id random(1, ${ROWS})\nUPDATE ${t} SET display = 'n' || :id WHERE id = :id;\n`,
  insert: (t) =>
    `\\set id random(1, 1000000000)\nINSERT INTO ${t} (id, email, display) VALUES (:id + ${ROWS}, 'x', 'n') ON CONFLICT (id) DO NOTHING;\n`,
};

interface System {
  key: string;
  port: number;
  table: string;
}

async function main(): Promise<void> {
  const work = await fs.mkdtemp(path.join(os.tmpdir(), 'sy-bench-cols-'));
  const cluster = await LocalCluster.start({ binDir: process.env.SWITCHYARD_BENCH_PG_BIN });
  const procs: Proc[] = [];
  try {
    await cluster.createDatabase('bench');
    const c = new pg.Client({ connectionString: cluster.url('bench') });
    await c.connect();
    c.on('error', () => {});
    await c.query(SETUP);
    await c.query('VACUUM ANALYZE');
    await c.end();
    const up = { host: '127.0.0.1', port: cluster.port, database: 'bench', user: 'postgres' };
    const mapped = await startSwitchyard(work, up, {
      name: 'switchyard',
      mappings: [MAPPING],
      logLevel: 'warn',
    });
    const unmapped = await startSwitchyard(work, up, { name: 'unmapped', logLevel: 'warn' });
    procs.push(mapped, unmapped);
    const systems: System[] = [
      { key: 'switchyard', port: mapped.port, table: 'people' },
      { key: 'trigger', port: cluster.port, table: 'people_t' },
      { key: 'direct', port: cluster.port, table: 'people' },
      { key: 'unmapped', port: unmapped.port, table: 'people' },
    ];
    const rows: string[][] = [];
    const load0 = await loadAvg();
    for (const [what, script] of Object.entries(SCRIPTS)) {
      for (const mode of ['simple', 'prepared'] as const) {
        for (const clients of [1, 8]) {
          const pooled = new Map<string, PgbenchResult[]>();
          for (let r = 0; r < ROUNDS; r++) {
            // Rotating order: each system runs first once every ROUNDS rounds.
            const order = systems.map((_, i) => systems[(i + r) % systems.length]);
            for (const s of order) {
              const file = path.join(work, `${what}-${s.table}.sql`);
              await fs.writeFile(file, script(s.table));
              const t: Target = { host: '127.0.0.1', port: s.port, database: 'bench', user: 'postgres' };
              const res = await pgbench(t, { file, mode, clients, seconds: SECONDS, logDir: work });
              pooled.set(s.key, [...(pooled.get(s.key) ?? []), res]);
            }
          }
          const tps = (k: string) => (pooled.get(k) ?? []).reduce((a, x) => a + x.tps, 0) / ROUNDS;
          const p50 = (k: string) => {
            const all = (pooled.get(k) ?? []).flatMap((x) => [...x.latencies]).sort((a, b) => a - b);
            return all[Math.floor(all.length / 2)] ?? 0;
          };
          rows.push([
            `${what} -M ${mode} -c ${clients}`,
            ...systems.map((s) => `${fmt(tps(s.key))} TPS, p50 ${ms(p50(s.key))}`),
            ratio(tps('switchyard'), tps('trigger')),
            ratio(p50('switchyard'), p50('trigger')),
          ]);
          say(`${rows.at(-1)!.join(' | ')}`);
        }
      }
    }
    const out = [
      `Column migration write cost, ${new Date().toISOString().slice(0, 16)} UTC, ${os.cpus().length} cores, load average ${load0.toFixed(1)} at the start; ${ROUNDS} rounds of ${SECONDS} s per system and cell, pooled.`,
      '',
      table(['statement', ...systems.map((s) => s.key), 'TPS vs trigger', 'p50 vs trigger'], rows),
    ].join('\n');
    process.stdout.write(`${out}\n`);
  } finally {
    for (const p of procs) await p.stop();
    await cluster.stop();
    await fs.rm(work, { recursive: true, force: true });
  }
}

await main();

// `npx tsx bench/mirror-cost.ts`: where a mirrored single-row write's time
// goes, 1 client. For the bench's UPDATE and INSERT on the mapped table it
// runs, in alternating turns:
//   - through switchyard (the mirror),
//   - the SQL switchyard sends (captured from the server log), sent
//     directly: the same server work without the proxy hop, and through
//     the bare pipe forwarder and PgBouncer: the same work behind a proxy
//     hop that does nothing else,
//   - the write on the trigger's table (BEFORE trigger doing the upsert),
//   - the plain write on an unmirrored table;
// and reports latency, the proxy's CPU per statement (/proc), the server's
// CPU per statement (all its processes, /proc) and its own execution time
// per statement (pg_stat_statements mean_exec_time, planning counted), plus
// EXPLAIN (ANALYZE, BUFFERS) of the mirror's SQL and of the trigger's write.
//
//   MODE=prepared ROUNDS=3 SECONDS=4 npx tsx bench/mirror-cost.ts
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { LocalCluster } from '../src/demo/cluster.ts';
import { pgbench, pgbenchInit } from './lib/pgbench.ts';
import { cpuMicros, loadAvg, treeCpuMicros } from './lib/proc.ts';
import { MAPPING, SETUP_SQL, WRITE_SCRIPTS } from './lib/schema.ts';
import { fmt, median, ms } from './lib/stats.ts';
import {
  type Proc,
  pgbouncerBin,
  startPgbouncer,
  startPipe,
  startSwitchyard,
  type Upstream,
} from './lib/systems.ts';

const env = process.env;
const MODE = (env.MODE ?? 'prepared') as 'prepared' | 'simple';
const ROUNDS = Number(env.ROUNDS ?? 3);
const SECONDS = Number(env.SECONDS ?? 4);

/** pgbench sends each variable reference as its own parameter, $1, $2, ... in order. */
function variablesOf(script: string): string[] {
  const seen: string[] = [];
  for (const line of script.split('\n')) {
    if (line.startsWith('\\')) continue;
    for (const m of line.matchAll(/:(\w+)/g)) seen.push(m[1]);
  }
  return seen;
}

/** The script with its statement replaced by `sql`, whose $n are the script's variables. */
function withStatement(script: string, sql: string): string {
  const vars = variablesOf(script);
  const lines = script.split('\n').filter((l) => l.startsWith('\\'));
  return `${lines.join('\n')}\n${sql.replace(/\$(\d+)/g, (_, n) => `:${vars[Number(n) - 1]}`)};\n`;
}

async function main(): Promise<void> {
  const work = await fs.mkdtemp(path.join(os.tmpdir(), 'sy-mc-'));
  await fs.chmod(work, 0o755);
  const cluster = await LocalCluster.start({
    binDir: env.SWITCHYARD_BENCH_PG_BIN,
    settings: {
      shared_preload_libraries: "'pg_stat_statements'",
      'pg_stat_statements.track': "'all'",
      'pg_stat_statements.track_planning': 'on',
    },
  });
  const up: Upstream = { host: cluster.host, port: cluster.port, database: 'bench', user: 'postgres' };
  const admin = new pg.Client({ host: '127.0.0.1', port: cluster.port, database: 'bench', user: 'postgres' });
  const procs: Proc[] = [];
  try {
    await cluster.createDatabase('bench');
    await pgbenchInit(up, 1);
    await cluster.psqlSuper(`${SETUP_SQL}\nCREATE EXTENSION pg_stat_statements;`, 'bench');
    await admin.connect();
    const sy = await startSwitchyard(work, up, { name: 'sy', mappings: [MAPPING], logLevel: 'warn' });
    procs.push(sy);
    const pipe = await startPipe(work, up);
    procs.push(pipe);
    const bouncerBin = pgbouncerBin();
    const bouncer = bouncerBin ? await startPgbouncer(work, up, bouncerBin) : undefined;
    if (bouncer) procs.push(bouncer);
    const postmaster = Number(
      (await fs.readFile(path.join(cluster.dataDir, 'postmaster.pid'), 'utf8')).split('\n')[0],
    );
    const loads = [await loadAvg()];
    for (const write of ['update', 'insert'] as const) {
      const base = WRITE_SCRIPTS[write].plain;
      const file = async (name: string, text: string) => {
        const f = path.join(work, `${write}-${name}.sql`);
        await fs.writeFile(f, text);
        return f;
      };
      const target = (port: number) => ({ host: '127.0.0.1', port, database: 'bench', user: 'postgres' });
      // One short run through the proxy with every statement logged: the SQL it sends, as sent.
      const proxied = await file('switchyard', base('users'));
      const cte = await captureSent(cluster, admin, () =>
        pgbench(target(sy.port), { file: proxied, mode: 'prepared', clients: 1, seconds: 1, logDir: work }),
      );
      process.stdout.write(`\n${write.toUpperCase()}: the SQL switchyard sends\n  ${cte}\n`);
      const cteFile = await file('cte', withStatement(base('users'), cte));
      const variants: { key: string; port: number; file: string; pid?: number }[] = [
        { key: 'switchyard', port: sy.port, file: proxied, pid: sy.pid() },
        { key: 'mirror SQL, direct', port: cluster.port, file: cteFile },
        { key: 'mirror SQL, pipe()', port: pipe.port, file: cteFile, pid: pipe.pid() },
        ...(bouncer
          ? [{ key: 'mirror SQL, PgBouncer', port: bouncer.port, file: cteFile, pid: bouncer.pid() }]
          : []),
        { key: 'trigger, direct', port: cluster.port, file: await file('trigger', base('users_trg')) },
        { key: 'no mirror, direct', port: cluster.port, file: await file('plain', base('users_app')) },
      ];
      await admin.query('SELECT pg_stat_statements_reset()');
      const res = new Map<string, { p50: number[]; tps: number[]; cpu: number[]; server: number[] }>();
      for (let r = 0; r < ROUNDS; r++) {
        for (let k = 0; k < variants.length; k++) {
          const v = variants[(k + r) % variants.length];
          const c0 = await cpuMicros(v.pid);
          const s0 = await treeCpuMicros(postmaster);
          const m = await pgbench(target(v.port), {
            file: v.file,
            mode: MODE,
            clients: 1,
            seconds: SECONDS,
            logDir: work,
          });
          const c1 = await cpuMicros(v.pid);
          // The backend has exited once pgbench is done; let the postmaster reap it.
          await new Promise((r) => setTimeout(r, 300));
          const s1 = await treeCpuMicros(postmaster);
          const e = res.get(v.key) ?? { p50: [], tps: [], cpu: [], server: [] };
          e.server.push((s1 - s0) / m.transactions);
          e.p50.push(m.p50);
          e.tps.push(m.tps);
          if (c0 !== undefined && c1 !== undefined) e.cpu.push((c1 - c0) / m.transactions);
          res.set(v.key, e);
          loads.push(await loadAvg());
        }
      }
      const server = await admin.query<{
        query: string;
        calls: string;
        mean: number;
        plans: string;
        plan: number;
      }>(
        `SELECT query, calls, mean_exec_time * 1000 AS mean, plans, mean_plan_time * 1000 AS plan FROM pg_stat_statements
          WHERE calls > 100 AND (query ILIKE 'with%' OR query ILIKE 'update%' OR query ILIKE 'insert%')
          ORDER BY calls DESC`,
      );
      const serverUs = (pred: (q: string) => boolean) => {
        const rows = server.rows.filter((r) => pred(r.query));
        const calls = rows.reduce((a, r) => a + Number(r.calls), 0);
        const plans = rows.reduce((a, r) => a + Number(r.plans), 0);
        const exec = calls ? rows.reduce((a, r) => a + r.mean * Number(r.calls), 0) / calls : Number.NaN;
        const plan = plans ? rows.reduce((a, r) => a + r.plan * Number(r.plans), 0) / plans : 0;
        return `exec ${fmt(exec, 1)} µs, planned ${fmt(plans / calls, 2)}x per call at ${fmt(plan, 1)} µs`;
      };
      const mirrorSql = serverUs((q) => q.includes('"__sy_w"'));
      const serverOf: Record<string, string> = {
        switchyard: mirrorSql,
        'mirror SQL, direct': mirrorSql,
        'mirror SQL, pipe()': mirrorSql,
        'mirror SQL, PgBouncer': mirrorSql,
        'trigger, direct': serverUs((q) => q.includes('users_trg')),
        'no mirror, direct': serverUs((q) => q.includes('users_app')),
      };
      const trigger = median(res.get('trigger, direct')!.p50);
      process.stdout.write(
        `\n${write.toUpperCase()} -M ${MODE} -c 1, ${ROUNDS} x ${SECONDS} s (medians; server CPU: min and median over the runs, every Postgres process)\n`,
      );
      for (const v of variants) {
        const e = res.get(v.key)!;
        process.stdout.write(
          `${v.key.padEnd(24)} ${fmt(median(e.tps)).padStart(7)} tps  p50 ${ms(median(e.p50))} ms (${(median(e.p50) / trigger).toFixed(2)} of the trigger's)  server CPU ${fmt(Math.min(...e.server), 1)} / ${fmt(median(e.server), 1)} µs/stmt (${serverOf[v.key]})${e.cpu.length ? `  proxy CPU ${fmt(median(e.cpu), 1)} µs/stmt` : ''}\n`,
        );
      }
      process.stdout.write('(the exec figure of every mirror SQL row is one pooled figure: the same text)\n');
      await explain(admin, withStatement(base('users'), cte), 'mirror SQL');
      await explain(admin, base('users_trg'), 'trigger');
    }
    process.stdout.write(
      `\n1-min load average min ${Math.min(...loads).toFixed(1)} median ${median(loads).toFixed(1)} max ${Math.max(...loads).toFixed(1)}\n`,
    );
  } finally {
    for (const p of procs) await p.stop().catch(() => {});
    await admin.end().catch(() => {});
    await cluster.stop();
    await fs.rm(work, { recursive: true, force: true });
  }
}

/** The mirrored statement the server parsed while `run` ran (from its log). */
async function captureSent(
  cluster: LocalCluster,
  admin: pg.Client,
  run: () => Promise<unknown>,
): Promise<string> {
  const log = path.join(cluster.dataDir, 'server.log');
  const from = (await fs.stat(log)).size;
  await admin.query('ALTER SYSTEM SET log_min_duration_statement = 0');
  await admin.query('SELECT pg_reload_conf()');
  try {
    await run();
  } finally {
    await admin.query('ALTER SYSTEM RESET log_min_duration_statement');
    await admin.query('SELECT pg_reload_conf()');
  }
  const text = (await fs.readFile(log, 'utf8')).slice(from);
  const m =
    /(?:parse|statement) [^:]*: (WITH "__sy_w".*)$/m.exec(text) ?? /: (WITH .*"__sy_w".*)$/m.exec(text);
  if (!m) throw new Error('no mirrored statement in the server log');
  return m[1];
}

/** EXPLAIN (ANALYZE, BUFFERS) of a script's statement with its variables set, rolled back. */
async function explain(admin: pg.Client, script: string, label: string): Promise<void> {
  const sql = script
    .split('\n')
    .filter((l) => l && !l.startsWith('\\'))
    .join('\n')
    .replace(/;\s*$/, '')
    .replace(/:id\b/g, '4242')
    .replace(/:n\b/g, '77');
  await admin.query('BEGIN');
  try {
    const r = await admin.query(`EXPLAIN (ANALYZE, BUFFERS, TIMING ON) ${sql}`);
    process.stdout.write(`\nEXPLAIN (ANALYZE, BUFFERS) ${label}:\n`);
    for (const row of r.rows) process.stdout.write(`  ${row['QUERY PLAN']}\n`);
  } finally {
    await admin.query('ROLLBACK');
  }
}

main().catch((e) => {
  process.stderr.write(`mirror-cost failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exitCode = 1;
});

// `npm run bench`: every benchmark in one run on one throwaway cluster.
//
//   1. pgbench select-only and TPC-B-like, -M simple and -M prepared, 1/8/32
//      clients, against direct Postgres, a bare socket.pipe() forwarder,
//      switchyard without mappings, switchyard with mappings the statements do
//      not touch, and PgBouncer in session mode. The systems take turns in
//      every cell (in a rotating order) so the machine's drift hits all alike.
//   2. Dual-write cost: single-row INSERT and UPDATE mirrored by switchyard,
//      unmirrored, mirrored by a BEFORE trigger, and written twice by the app.
//   3. Reads switched to the new table against the hand-written query, with
//      both plans.
//   4. 1,000 idle client connections: resident memory of the proxy.
//   5. The mixed OLTP transaction on the table being migrated (update, upsert,
//      read, commit, delete), 8 and 32 clients, -M simple and -M prepared:
//      switchyard mirroring, a trigger doing the same dual write, no mirror.
//   6. The planner under a literal workload: bench/planner.ts, and pgbench
//      -M simple through the proxy with the plan cache's hit ratio read from
//      its metrics. 7. CLI start-up (--help, status). 8. Runtimes: switchyard
//      and bare forwarders on Node and on Bun against PgBouncer (bench/lib/sections.ts).
//
// The figures replace the generated part of bench/RESULTS.md.
//
// Environment:
//   SWITCHYARD_BENCH_SECONDS   seconds per pgbench run (default 6)
//   SWITCHYARD_BENCH_ROUNDS    runs per cell and system, pooled (default 2)
//   SWITCHYARD_BENCH_CLIENTS   client counts (default 1,8,32)
//   SWITCHYARD_BENCH_SCALE     pgbench scale (default 10)
//   SWITCHYARD_BENCH_ONLY      sections to run: pgbench,dualwrite,reads,idle,oltp,planner,cli,runtimes (default all)
//   SWITCHYARD_BENCH_IDLE      idle connections (default 1000)
//   SWITCHYARD_BENCH_PG_BIN    Postgres bin directory (default: embedded PG 18)
//   SWITCHYARD_BENCH_PGBENCH   pgbench binary (default: pgbench on PATH)
//   SWITCHYARD_BENCH_PGBOUNCER pgbouncer binary (default: /usr/sbin/pgbouncer)
//   SWITCHYARD_BENCH_OUT       Markdown file to update (default bench/RESULTS.md)
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { LocalCluster } from '../src/demo/cluster.ts';
import { type PgbenchResult, pgbench, pgbenchInit, pgbenchVersion, type Target } from './lib/pgbench.ts';
import { cpuMicros, loadAvg, rssBytes } from './lib/proc.ts';
import {
  MAPPING,
  oltpScript,
  READ_HAND_SQL,
  READ_OLD_SQL,
  readScript,
  SETUP_SQL,
  WRITE_SCRIPTS,
} from './lib/schema.ts';
import { type Bench, cliStartup, planner, runtimes } from './lib/sections.ts';
import { fmt, median, ms, quantile, ratio, table } from './lib/stats.ts';
import {
  type Proc,
  pgbouncerBin,
  pgbouncerVersion,
  startPgbouncer,
  startPipe,
  startSwitchyard,
  type Upstream,
} from './lib/systems.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const env = process.env;
const SECONDS = Number(env.SWITCHYARD_BENCH_SECONDS ?? 3);
const ROUNDS = Number(env.SWITCHYARD_BENCH_ROUNDS ?? 2);
const CLIENTS = (env.SWITCHYARD_BENCH_CLIENTS ?? '1,8,32').split(',').map(Number);
const SCALE = Number(env.SWITCHYARD_BENCH_SCALE ?? 10);
const IDLE = Number(env.SWITCHYARD_BENCH_IDLE ?? 1000);
const ONLY = new Set(
  (env.SWITCHYARD_BENCH_ONLY ?? 'pgbench,dualwrite,reads,idle,oltp,planner,cli,runtimes').split(','),
);
const OUT = env.SWITCHYARD_BENCH_OUT ?? path.join(ROOT, 'bench/RESULTS.md');
const DB = 'bench';
const USER = 'postgres';

const say = (s: string) => process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${s}\n`);

interface System {
  key: string;
  label: string;
  port: number;
  proc?: Proc;
}

interface Measured extends PgbenchResult {
  /** CPU time the proxy process spent per transaction, µs (undefined for direct). */
  proxyCpuPerTx?: number;
}

const loadSamples: number[] = [];

async function main(): Promise<void> {
  const started = new Date();
  const pgbenchV = await pgbenchVersion();
  if (!pgbenchV)
    throw new Error('pgbench not found (install postgresql-client or set SWITCHYARD_BENCH_PGBENCH)');
  const work = await fs.mkdtemp(path.join(os.tmpdir(), 'sy-bench-'));
  await fs.chmod(work, 0o755);
  const loadTimer = setInterval(() => loadAvg().then((l) => loadSamples.push(l)), 5000);
  loadSamples.push(await loadAvg());
  say(`starting Postgres (${env.SWITCHYARD_BENCH_PG_BIN ?? 'embedded PG 18'})`);
  const cluster = await LocalCluster.start({
    binDir: env.SWITCHYARD_BENCH_PG_BIN,
    settings: { max_connections: IDLE + 200, shared_buffers: "'256MB'" },
  });
  const procs: Proc[] = [];
  const sections: string[] = [];
  try {
    await cluster.createDatabase(DB);
    const up: Upstream = { host: cluster.host, port: cluster.port, database: DB, user: USER };
    const direct: Target = { ...up };
    say(`pgbench -i -s ${SCALE}`);
    await pgbenchInit(direct, SCALE);
    const admin = new pg.Client({ connectionString: cluster.url(DB) });
    admin.on('error', () => {});
    await admin.connect();
    const serverVersion = (await admin.query('SHOW server_version')).rows[0].server_version as string;
    await admin.query(SETUP_SQL);
    await admin.query('VACUUM ANALYZE');

    say('starting the systems under test');
    const pipe = await startPipe(work, up);
    procs.push(pipe);
    const syPlain = await startSwitchyard(work, up, { name: 'switchyard-plain' });
    procs.push(syPlain);
    const syMapped = await startSwitchyard(work, up, { name: 'switchyard-mapped', mappings: [MAPPING] });
    procs.push(syMapped);
    const bouncerBin = pgbouncerBin();
    let bouncer: Proc | undefined;
    let bouncerNote: string;
    if (bouncerBin) {
      bouncer = await startPgbouncer(work, up, bouncerBin);
      procs.push(bouncer);
      bouncerNote = `${pgbouncerVersion(bouncerBin)}, session mode, auth_type trust, run as the postgres OS user`;
    } else {
      bouncerNote = 'not installed (apt-get install pgbouncer): PgBouncer columns skipped';
      say(`PgBouncer ${bouncerNote}`);
    }
    const systems: System[] = [
      { key: 'direct', label: 'direct', port: cluster.port },
      { key: 'pipe', label: 'pipe()', port: pipe.port, proc: pipe },
      { key: 'plain', label: 'switchyard', port: syPlain.port, proc: syPlain },
      { key: 'mapped', label: 'switchyard+mappings', port: syMapped.port, proc: syMapped },
      ...(bouncer ? [{ key: 'bouncer', label: 'PgBouncer', port: bouncer.port, proc: bouncer }] : []),
    ];

    const machine = [
      `- Date: ${started.toISOString().replace('T', ' ').slice(0, 16)} UTC`,
      `- Machine: ${os.cpus().length} cores (${os.cpus()[0]?.model.trim()}), ${Math.round(os.totalmem() / 2 ** 30)} GiB RAM, ${os.type()} ${os.release()}`,
      `- Postgres ${serverVersion} (${env.SWITCHYARD_BENCH_PG_BIN ?? 'embedded'}; fsync off, synchronous_commit off), ${pgbenchV}, Node ${process.version}`,
      `- PgBouncer: ${bouncerNote}`,
      `- pgbench: scale ${SCALE}, ${SECONDS} s per run, ${ROUNDS} run(s) per cell and system in alternating order (TPS averaged, latencies pooled), -j min(clients, 2), everything on 127.0.0.1 TCP`,
    ];

    // Each section's figures are written as soon as it ends, so a late failure loses nothing.
    const flush = async (done: boolean) => {
      loadSamples.push(await loadAvg());
      const minutes = Math.round((Date.now() - started.getTime()) / 60000);
      const load = `1-minute load average during the run: min ${Math.min(...loadSamples).toFixed(1)}, median ${median(loadSamples).toFixed(1)}, max ${Math.max(...loadSamples).toFixed(1)} (the bench itself keeps about 2 busy; more means other work shared the cores)`;
      const body = [
        '<!-- bench:begin (generated by `npm run bench`; edit outside these markers) -->',
        '## Figures',
        '',
        'Command: `npm run bench`',
        '',
        machine.join('\n'),
        `- Duration: ${minutes} min${done ? '' : ' so far (run not finished)'}; ${load}`,
        '',
        ...sections,
        '<!-- bench:end -->',
      ].join('\n');
      await writeResults(body);
    };
    const section = async (name: string, run: () => Promise<string>) => {
      if (!ONLY.has(name)) return;
      try {
        sections.push(await run());
      } catch (e) {
        say(`${name} failed: ${(e as Error).message}`);
        sections.push(`### ${name}: failed\n\n\`\`\`\n${(e as Error).message}\n\`\`\`\n`);
      }
      await flush(false);
    };
    await section('pgbench', () => pgbenchMatrix(systems, work));
    await section('dualwrite', () => dualWrite(work, cluster.port, syMapped, admin));
    await section('reads', () => reads(work, up, cluster.port, admin, procs));
    await section('idle', () => idle(syMapped, bouncer));
    await section('oltp', () => oltp(work, cluster.port, syMapped, admin, bouncer));
    const bench: Bench = {
      work,
      up,
      say,
      measure: (v, run) => measure(v, run, work),
      alternate: (variants, run) => alternate(variants, run),
    };
    await section('planner', () => planner(bench, syMapped));
    await section('cli', () => cliStartup(bench, syMapped));
    await section('runtimes', () =>
      runtimes(bench, { pipe, syPlain, syMapped, bouncer, directPort: cluster.port }),
    );
    await admin.end();
    await flush(true);
    say(`figures written to ${path.relative(process.cwd(), OUT)}`);
  } finally {
    clearInterval(loadTimer);
    for (const p of procs.reverse()) await p.stop().catch(() => {});
    await cluster.stop();
    await fs.rm(work, { recursive: true, force: true });
  }
}

async function writeResults(body: string): Promise<void> {
  let text = '';
  try {
    text = await fs.readFile(OUT, 'utf8');
  } catch {
    text = '# switchyard benchmarks\n\n<!-- bench:begin -->\n<!-- bench:end -->\n';
  }
  const begin = text.indexOf('<!-- bench:begin');
  const end = text.indexOf('<!-- bench:end -->');
  const next =
    begin >= 0 && end > begin
      ? `${text.slice(0, begin)}${body}${text.slice(end + '<!-- bench:end -->'.length)}`
      : `${text.trimEnd()}\n\n${body}\n`;
  await fs.writeFile(OUT, next);
}

/** One pgbench run against a system, with the proxy's CPU time per transaction. */
async function measure(
  sys: { port: number; proc?: Proc },
  run: Omit<Parameters<typeof pgbench>[1], 'logDir' | 'seconds'> & { seconds?: number },
  work: string,
): Promise<Measured> {
  const pid = sys.proc?.pid();
  const cpu0 = await cpuMicros(pid);
  const r = await pgbench(
    { host: '127.0.0.1', port: sys.port, database: DB, user: USER },
    { seconds: SECONDS, ...run, logDir: work },
  );
  const cpu1 = await cpuMicros(pid);
  const proxyCpuPerTx =
    cpu0 !== undefined && cpu1 !== undefined && r.transactions > 0
      ? (cpu1 - cpu0) / r.transactions
      : undefined;
  if (r.failed > 0) say(`  warning: ${r.failed} failed transactions`);
  return { ...r, proxyCpuPerTx };
}

/** Several runs of one cell as one: mean TPS, pooled latencies, total proxy CPU over total transactions. */
function pooled(rs: Measured[]): Measured {
  if (rs.length === 1) return rs[0];
  const n = rs.reduce((a, r) => a + r.latencies.length, 0);
  const lat = new Float64Array(n);
  let o = 0;
  for (const r of rs) {
    lat.set(r.latencies, o);
    o += r.latencies.length;
  }
  lat.sort();
  const tx = rs.reduce((a, r) => a + r.transactions, 0);
  const cpu = rs.every((r) => r.proxyCpuPerTx !== undefined)
    ? rs.reduce((a, r) => a + r.proxyCpuPerTx! * r.transactions, 0) / tx
    : undefined;
  return {
    tps: rs.reduce((a, r) => a + r.tps, 0) / rs.length,
    transactions: tx,
    failed: rs.reduce((a, r) => a + r.failed, 0),
    p50: quantile(lat, 0.5),
    p99: quantile(lat, 0.99),
    mean: lat.reduce((a, v) => a + v, 0) / (n || 1),
    latencies: lat,
    proxyCpuPerTx: cpu,
  };
}

/** Rotates who goes first from cell to cell, so no system always runs right after the same neighbour. */
let turn = 0;

/** One cell: ROUNDS runs of each variant, in a rotating order, pooled per variant. */
async function alternate<V extends { key: string }>(
  variants: V[],
  run: (v: V) => Promise<Measured>,
): Promise<Map<string, Measured>> {
  const runs = new Map<string, Measured[]>();
  for (let round = 0; round < ROUNDS; round++) {
    const order = variants.map((_, i) => variants[(i + turn) % variants.length]);
    turn++;
    for (const v of order) runs.set(v.key, [...(runs.get(v.key) ?? []), await run(v)]);
  }
  return new Map([...runs].map(([k, rs]) => [k, pooled(rs)] as const));
}

// ---- 1. pgbench matrix -------------------------------------------------------

async function pgbenchMatrix(systems: System[], work: string): Promise<string> {
  const cells: { script: 'select-only' | 'tpcb-like'; mode: 'simple' | 'prepared'; clients: number }[] = [];
  for (const script of ['select-only', 'tpcb-like'] as const)
    for (const mode of ['simple', 'prepared'] as const)
      for (const clients of CLIENTS) cells.push({ script, mode, clients });
  const results = new Map<string, Measured[]>();
  const k = (c: (typeof cells)[number], sys: string) => `${c.script}/${c.mode}/${c.clients}/${sys}`;
  for (let round = 0; round < ROUNDS; round++) {
    for (const cell of cells) {
      const order = systems.map((_, i) => systems[(i + turn) % systems.length]);
      turn++;
      for (const sys of order) {
        say(`pgbench ${cell.script} -M ${cell.mode} -c ${cell.clients} -> ${sys.label}`);
        const r = await measure(sys, { builtin: cell.script, mode: cell.mode, clients: cell.clients }, work);
        const key = k(cell, sys.key);
        results.set(key, [...(results.get(key) ?? []), r]);
      }
    }
  }
  const get = (c: (typeof cells)[number], s: string) => {
    const rs = results.get(k(c, s));
    return rs ? pooled(rs) : undefined;
  };
  const has = (s: string) => systems.some((x) => x.key === s);
  const out: string[] = ['### Passthrough: pgbench through each system', ''];
  out.push(
    'TPS and the ratio to direct Postgres in the same cell. `sy/bouncer` and `sy/pipe` compare switchyard (no mappings) with PgBouncer and with the bare `socket.pipe()` forwarder; `mapped/plain` is switchyard with mappings configured (statements not touching them) over switchyard without.',
    '',
  );
  const head = ['script', 'mode', 'clients', 'direct TPS', 'pipe()', 'switchyard', 'sy+mappings'];
  if (has('bouncer')) head.push('PgBouncer', 'sy/bouncer');
  head.push('sy/pipe', 'mapped/plain');
  const rows: string[][] = [];
  for (const c of cells) {
    const d = get(c, 'direct')!;
    const cell = (s: string) => {
      const r = get(c, s);
      return r ? `${fmt(r.tps)} (${ratio(r.tps, d.tps)})` : '–';
    };
    const row = [
      c.script,
      c.mode,
      String(c.clients),
      fmt(d.tps),
      cell('pipe'),
      cell('plain'),
      cell('mapped'),
    ];
    if (has('bouncer')) row.push(cell('bouncer'), ratio(get(c, 'plain')!.tps, get(c, 'bouncer')!.tps));
    row.push(
      ratio(get(c, 'plain')!.tps, get(c, 'pipe')!.tps),
      ratio(get(c, 'mapped')!.tps, get(c, 'plain')!.tps),
    );
    rows.push(row);
  }
  out.push(table(head, rows), '');

  out.push('### Latency per transaction (ms, p50 / p99)', '');
  const lhead = ['script', 'mode', 'clients', ...systems.map((s) => s.label)];
  const lrows = cells.map((c) => [
    c.script,
    c.mode,
    String(c.clients),
    ...systems.map((s) => {
      const r = get(c, s.key);
      return r ? `${ms(r.p50)} / ${ms(r.p99)}` : '–';
    }),
  ]);
  out.push(table(lhead, lrows), '');

  const one = cells.filter((c) => c.clients === 1);
  if (one.length > 0) {
    out.push('### Added latency at 1 client (p50 minus direct p50, µs per transaction)', '');
    const ahead = [
      'script',
      'mode',
      'statements/tx',
      ...systems.filter((s) => s.key !== 'direct').map((s) => s.label),
    ];
    const arows = one.map((c) => {
      const d = get(c, 'direct')!;
      const stmts = c.script === 'select-only' ? 1 : 7;
      return [
        c.script,
        c.mode,
        String(stmts),
        ...systems
          .filter((s) => s.key !== 'direct')
          .map((s) => {
            const r = get(c, s.key);
            if (!r) return '–';
            const add = r.p50 - d.p50;
            return `${fmt(add)} (${fmt(add / stmts, 1)}/stmt)`;
          }),
      ];
    });
    out.push(table(ahead, arows), '');
  }

  out.push('### Proxy CPU time per transaction (µs, user+system of the proxy process)', '');
  const proxies = systems.filter((s) => s.proc);
  const chead = ['script', 'mode', 'clients', ...proxies.map((s) => s.label)];
  const crows = cells.map((c) => [
    c.script,
    c.mode,
    String(c.clients),
    ...proxies.map((s) => {
      const r = get(c, s.key);
      return r?.proxyCpuPerTx !== undefined ? fmt(r.proxyCpuPerTx, 1) : '–';
    }),
  ]);
  out.push(table(chead, crows), '');
  return out.join('\n');
}

// ---- 2. dual-write cost ----------------------------------------------------------

async function mirroringLive(syPort: number, admin: pg.Client): Promise<boolean> {
  const c = new pg.Client({ host: '127.0.0.1', port: syPort, database: DB, user: USER });
  await c.connect();
  try {
    const r = await c.query(
      "INSERT INTO users (email, first_name, last_name) VALUES ('Probe@Example.com', 'probe', 'row') RETURNING id",
    );
    const id = r.rows[0].id as string;
    const m = await admin.query('SELECT full_name FROM users_v2 WHERE id = $1', [id]);
    return m.rowCount === 1 && m.rows[0].full_name === 'probe row';
  } finally {
    await c.end();
  }
}

async function dualWrite(
  work: string,
  directPort: number,
  syMapped: Proc,
  admin: pg.Client,
): Promise<string> {
  const live = await mirroringLive(syMapped.port, admin);
  say(`dual-write: switchyard is ${live ? '' : 'NOT '}mirroring into users_v2`);
  const scriptFile = async (name: string, text: string) => {
    const f = path.join(work, `${name}.sql`);
    await fs.writeFile(f, text);
    return f;
  };
  const variants = [
    {
      key: 'switchyard',
      label: live ? 'switchyard (mirrored)' : 'switchyard (NOT mirroring: rules not live)',
      port: syMapped.port,
      proc: syMapped,
      script: (op: 'insert' | 'update') => WRITE_SCRIPTS[op].plain('users'),
    },
    {
      key: 'direct',
      label: 'direct, no mirror',
      port: directPort,
      script: (op: 'insert' | 'update') => WRITE_SCRIPTS[op].plain('users'),
    },
    {
      key: 'trigger',
      label: 'direct, BEFORE trigger upsert',
      port: directPort,
      script: (op: 'insert' | 'update') => WRITE_SCRIPTS[op].plain('users_trg'),
    },
    {
      key: 'app',
      label: 'direct, app writes both (BEGIN; old; new; COMMIT)',
      port: directPort,
      script: (op: 'insert' | 'update') => WRITE_SCRIPTS[op].app,
    },
  ];
  const rows: string[][] = [];
  const res = new Map<string, Measured>();
  for (const op of ['insert', 'update'] as const) {
    for (const mode of ['simple', 'prepared'] as const) {
      const cell = await alternate(variants, async (v) => {
        say(`dual-write ${op} -M ${mode} -> ${v.key}`);
        const file = await scriptFile(`${op}-${v.key}`, v.script(op));
        return measure(v, { file, mode, clients: 1 }, work);
      });
      for (const [key, r] of cell) res.set(`${op}/${mode}/${key}`, r);
      for (const v of variants) {
        const r = res.get(`${op}/${mode}/${v.key}`)!;
        const d = res.get(`${op}/${mode}/direct`)!;
        rows.push([
          op.toUpperCase(),
          mode,
          v.label,
          fmt(r.tps),
          ms(r.p50),
          ms(r.p99),
          `${fmt(r.p50 - d.p50)}`,
        ]);
      }
    }
  }
  return [
    '### Dual-write cost: one single-row write per transaction, 1 client',
    '',
    `Mirroring through switchyard at the time of the run: **${live ? 'yes' : 'no'}** (probe: an INSERT through the proxy ${live ? 'appeared' : 'did not appear'} in users_v2). The trigger variant is a BEFORE INSERT OR UPDATE row trigger doing the same upsert (the pgroll approach); the application variant sends BEGIN, the write on the old table, an upsert of the new row built from the old one, COMMIT (4 round trips).`,
    '',
    table(['write', 'mode', 'how', 'writes/s', 'p50 ms', 'p99 ms', 'p50 − direct µs'], rows),
    '',
  ].join('\n');
}

// ---- 3. switched reads -------------------------------------------------------------

async function explain(port: number, sql: string): Promise<string> {
  const c = new pg.Client({ host: '127.0.0.1', port, database: DB, user: USER });
  await c.connect();
  try {
    const r = await c.query(`EXPLAIN (COSTS OFF) ${sql}`);
    return r.rows.map((x) => x['QUERY PLAN']).join('\n');
  } finally {
    await c.end();
  }
}

/** The SQL text the server received, as it saw it (the query reads its own pg_stat_activity row). */
async function sqlAsReceived(port: number, sql: string): Promise<string> {
  const c = new pg.Client({ host: '127.0.0.1', port, database: DB, user: USER });
  await c.connect();
  try {
    const probe = sql.replace(
      'SELECT ',
      'SELECT (SELECT query FROM pg_stat_activity WHERE pid = pg_backend_pid()) AS sy_received, ',
    );
    const r = await c.query(probe);
    return (r.rows[0]?.sy_received as string) ?? '(no row)';
  } finally {
    await c.end();
  }
}

async function reads(
  work: string,
  up: Upstream,
  directPort: number,
  admin: pg.Client,
  procs: Proc[],
): Promise<string> {
  const syNew = await startSwitchyard(work, up, {
    name: 'switchyard-readnew',
    mappings: [{ ...MAPPING, reads: 'new' }],
  });
  procs.push(syNew);
  const oldSql = READ_OLD_SQL.replace(':id', '4242');
  const handSql = READ_HAND_SQL.replace(':id', '4242');
  const received = await sqlAsReceived(syNew.port, oldSql);
  const switched = /users_v2/.test(received);
  say(`reads: switchyard is ${switched ? '' : 'NOT '}switching reads to users_v2`);
  const planSwitched = await explain(syNew.port, oldSql);
  const planHand = await explain(directPort, handSql);
  const planReceived = switched
    ? await explain(
        directPort,
        received.replace(
          /^SELECT \(SELECT query FROM pg_stat_activity WHERE pid = pg_backend_pid\(\)\) AS sy_received, /,
          'SELECT ',
        ),
      )
    : '';
  void admin;
  const variants = [
    {
      key: 'switched',
      label: `old query through switchyard, reads: new${switched ? '' : ' (NOT switched: rules not live)'}`,
      port: syNew.port,
      proc: syNew,
      sql: READ_OLD_SQL,
    },
    {
      key: 'hand-sy',
      label: 'hand-written on users_v2, through switchyard',
      port: syNew.port,
      proc: syNew,
      sql: READ_HAND_SQL,
    },
    { key: 'hand-direct', label: 'hand-written on users_v2, direct', port: directPort, sql: READ_HAND_SQL },
    { key: 'old-direct', label: 'old query on users, direct', port: directPort, sql: READ_OLD_SQL },
  ];
  const rows: string[][] = [];
  for (const mode of ['simple', 'prepared'] as const) {
    const res = await alternate(variants, async (v) => {
      say(`reads -M ${mode} -> ${v.key}`);
      const file = path.join(work, `read-${v.key}.sql`);
      await fs.writeFile(file, readScript(v.sql));
      return measure(v, { file, mode, clients: 1 }, work);
    });
    const base = res.get('hand-sy')!;
    for (const v of variants) {
      const r = res.get(v.key)!;
      rows.push([mode, v.label, fmt(r.tps), ratio(r.tps, base.tps), ms(r.p50), ms(r.p99)]);
    }
  }
  await syNew.stop();
  return [
    '### Reads switched to the new table, 1 client',
    '',
    "The same point lookup: the application's query on `users` sent through switchyard with `reads: new`, against the query written by hand on `users_v2` (through the same proxy, so only the rewrite differs, and direct).",
    '',
    table(['mode', 'query', 'queries/s', 'vs hand-written via switchyard', 'p50 ms', 'p99 ms'], rows),
    '',
    `SQL the server received for \`${oldSql}\` through switchyard:`,
    '',
    '```sql',
    received,
    '```',
    '',
    'Plan of the switched query (EXPLAIN sent through switchyard):',
    '',
    '```',
    planSwitched,
    '```',
    '',
    ...(planReceived ? ['Plan of the received SQL, sent directly:', '', '```', planReceived, '```', ''] : []),
    'Plan of the hand-written query:',
    '',
    '```',
    planHand,
    '```',
    '',
  ].join('\n');
}

// ---- 4. idle connections -----------------------------------------------------------

async function idleRss(proc: Proc, n: number): Promise<{ before: number; after: number; opened: number }> {
  const pid = proc.pid()!;
  const before = await rssBytes(pid);
  const clients: pg.Client[] = [];
  let opened = 0;
  let failed: string | undefined;
  try {
    for (let i = 0; i < n; i += 50) {
      const batch = Array.from({ length: Math.min(50, n - i) }, () => {
        const c = new pg.Client({
          host: '127.0.0.1',
          port: proc.port,
          database: DB,
          user: USER,
          connectionTimeoutMillis: 30_000,
        });
        c.on('error', () => {});
        clients.push(c);
        return c.connect().then(
          () => {
            opened++;
          },
          (e: Error) => {
            failed = e.message;
          },
        );
      });
      await Promise.all(batch);
    }
    await new Promise((r) => setTimeout(r, 2000));
    const after = await rssBytes(pid);
    if (failed) say(`  ${n - opened} connections failed: ${failed}`);
    return { before, after, opened };
  } finally {
    await Promise.all(clients.map((c) => c.end().catch(() => {})));
    // Let the server's backends exit before the next system opens its own.
    await new Promise((r) => setTimeout(r, 2000));
  }
}

async function idle(syMapped: Proc, bouncer?: Proc): Promise<string> {
  const rows: string[][] = [];
  for (const p of [syMapped, ...(bouncer ? [bouncer] : [])]) {
    say(`idle: ${IDLE} connections through ${p.name}`);
    const r = await idleRss(p, IDLE);
    rows.push([p.name, String(r.opened), fmt(r.before / 2 ** 20, 1), fmt(r.after / 2 ** 20, 1)]);
  }
  return [
    `### ${fmt(IDLE)} idle client connections`,
    '',
    'Resident memory (VmRSS) of the proxy process with every connection open and idle (each also holds its own server connection: session mode). Target for switchyard: under 150 MB in total.',
    '',
    table(['proxy', 'connections', 'RSS with no clients MB', 'RSS with the connections open MB'], rows),
    '',
    "The first reading is taken after the other benchmarks, so it holds whatever the garbage collector had not yet returned; Node's heap can shrink between the two readings.",
    '',
  ].join('\n');
}

main().catch((e) => {
  process.stderr.write(`bench failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exitCode = 1;
});

// ---- 5. the mixed OLTP transaction on the migrated table --------------------------

async function oltp(
  work: string,
  directPort: number,
  syMapped: Proc,
  admin: pg.Client,
  bouncer?: Proc,
): Promise<string> {
  const live = await mirroringLive(syMapped.port, admin);
  const variants = [
    {
      key: 'switchyard',
      label: live ? 'switchyard (mirrored)' : 'switchyard (NOT mirroring)',
      port: syMapped.port,
      proc: syMapped,
      table: 'users',
    },
    { key: 'trigger', label: 'direct, trigger dual write', port: directPort, table: 'users_trg' },
    // The same trigger behind a proxy that only relays: what a proxy hop costs on its own.
    ...(bouncer
      ? [
          {
            key: 'bouncer',
            label: 'PgBouncer, trigger dual write',
            port: bouncer.port,
            proc: bouncer,
            table: 'users_trg',
          },
        ]
      : []),
    { key: 'none', label: 'direct, no mirror', port: directPort, table: 'users_app' },
  ];
  const files = new Map<string, string>();
  for (const v of variants) {
    const f = path.join(work, `oltp-${v.key}.sql`);
    await fs.writeFile(f, oltpScript(v.table));
    files.set(v.key, f);
  }
  const rows: string[][] = [];
  for (const clients of CLIENTS.filter((c) => c > 1)) {
    for (const mode of ['simple', 'prepared'] as const) {
      const res = await alternate(variants, (v) => {
        say(`oltp -M ${mode} -c ${clients} -> ${v.key}`);
        return measure(v, { file: files.get(v.key)!, mode, clients }, work);
      });
      const trigger = res.get('trigger')!;
      for (const v of variants) {
        const r = res.get(v.key)!;
        rows.push([
          String(clients),
          mode,
          v.label,
          fmt(r.tps),
          ratio(r.tps, trigger.tps),
          ms(r.p50),
          r.proxyCpuPerTx === undefined ? '–' : fmt(r.proxyCpuPerTx, 1),
          String(r.failed),
        ]);
      }
    }
  }
  return [
    '### The mixed OLTP transaction on the migrated table',
    '',
    `\`BEGIN; UPDATE; INSERT ... ON CONFLICT DO UPDATE; SELECT; COMMIT; DELETE\` on the mapped table, pgbench. Mirroring through switchyard at the time of the run: **${live ? 'yes' : 'no'}**. The trigger variant keeps its new table in step with a BEFORE INSERT OR UPDATE and an AFTER DELETE row trigger; the PgBouncer variant is the same trigger reached through PgBouncer (session mode), the cost of a proxy hop that does nothing else; \`vs trigger\` is TPS over the direct trigger's in the same cell; proxy CPU is the proxy process's CPU time per transaction.`,
    '',
    table(['clients', 'mode', 'how', 'TPS', 'vs trigger', 'p50 ms', 'proxy CPU µs/tx', 'failed'], rows),
    '',
  ].join('\n');
}

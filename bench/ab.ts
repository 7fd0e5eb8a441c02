// `npx tsx bench/ab.ts`: a few systems compared on ONE pgbench workload, in
// alternating short runs, with the proxy's CPU time per transaction (from
// /proc, so it is not skewed by other work on the machine the way TPS is).
// Used to measure hot-path changes before and after: give another checkout
// as switchyard@/path/to/checkout.
//
//   SYSTEMS=direct,pipe,switchyard,bouncer,switchyard@/tmp/before ROUNDS=5 SECONDS=4 \
//   SCRIPT=select-only MODE=prepared CLIENTS=8 npx tsx bench/ab.ts
//
// SCRIPT is a pgbench built-in (select-only, tpcb-like) or one of the scripts
// on the users tables: oltp (the mixed transaction), insert, update (one
// single-row write), read (a point lookup). Those run on the table named after the system as
// kind:table (switchyard-mapped defaults to users, the mapped table; every
// other system to users_trg, the trigger's), so
//   SYSTEMS=mapped,direct,bouncer:users_trg,pipe,direct:users_app SCRIPT=oltp
// compares the mirror with the trigger, direct and through each proxy.
// STRACE=1 counts each proxy's socket reads and writes per transaction with
// strace (the traced runs' TPS and CPU are then strace's, not the proxy's).
// Kinds: direct, pipe, bouncer, switchyard, mapped (switchyard with the users
// mapping), switchyard-bun, mapped-bun (the same under Bun), forwarder and
// forwarder-bun (bench/transport-forwarder.ts: switchyard's socket layer and
// nothing else, on Node and on Bun).
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { LocalCluster } from '../src/demo/cluster.ts';
import { pgbench, pgbenchInit } from './lib/pgbench.ts';
import { cpuTimes, loadAvg } from './lib/proc.ts';
import { MAPPING, oltpScript, READ_OLD_SQL, readScript, SETUP_SQL, WRITE_SCRIPTS } from './lib/schema.ts';
import { fmt, median, ms } from './lib/stats.ts';
import { SyscallTrace } from './lib/syscalls.ts';
import {
  bunBin,
  type Proc,
  pgbouncerBin,
  startPgbouncer,
  startPipe,
  startSwitchyard,
  startTransportForwarder,
  type Upstream,
} from './lib/systems.ts';

const env = process.env;
const SYSTEMS = (env.SYSTEMS ?? 'direct,pipe,switchyard,bouncer').split(',');
const ROUNDS = Number(env.ROUNDS ?? 5);
const SECONDS = Number(env.SECONDS ?? 4);
const SCRIPT = env.SCRIPT ?? 'select-only';
const BUILTIN = SCRIPT === 'select-only' || SCRIPT === 'tpcb-like' ? SCRIPT : undefined;

/** A pgbench script on the users tables, for SCRIPT=oltp|insert|update. */
function scriptOn(table: string): string {
  if (SCRIPT === 'oltp') return oltpScript(table);
  if (SCRIPT === 'insert' || SCRIPT === 'update') return WRITE_SCRIPTS[SCRIPT].plain(table);
  if (SCRIPT === 'read') return readScript(READ_OLD_SQL.replace('FROM users', `FROM ${table}`));
  throw new Error(`unknown SCRIPT ${SCRIPT}`);
}
const MODE = (env.MODE ?? 'prepared') as 'prepared' | 'simple';
const CLIENTS = Number(env.CLIENTS ?? 8);
const STRACE = env.STRACE === '1';

async function main(): Promise<void> {
  const work = await fs.mkdtemp(path.join(os.tmpdir(), 'sy-ab-'));
  await fs.chmod(work, 0o755);
  const cluster = await LocalCluster.start({ binDir: env.SWITCHYARD_BENCH_PG_BIN });
  const procs: Proc[] = [];
  try {
    await cluster.createDatabase('bench');
    const up: Upstream = { host: cluster.host, port: cluster.port, database: 'bench', user: 'postgres' };
    await pgbenchInit(up, 10);
    await cluster.psqlSuper(SETUP_SQL, 'bench');
    const targets: { name: string; port: number; proc?: Proc; file?: string }[] = [];
    for (const [i, s] of SYSTEMS.entries()) {
      const [system, table] = s.split(':');
      const [kind, root] = system.split('@');
      let file: string | undefined;
      if (!BUILTIN) {
        file = path.join(work, `script-${i}.sql`);
        const mapped = kind === 'mapped' || kind === 'mapped-bun';
        await fs.writeFile(file, scriptOn(table ?? (mapped ? 'users' : 'users_trg')));
      }
      let proc: Proc | undefined;
      if (kind === 'direct') {
        targets.push({ name: s, port: cluster.port, file });
        continue;
      }
      if (kind === 'pipe') proc = await startPipe(work, up, [], root);
      else if (kind === 'forwarder') proc = await startTransportForwarder(work, up);
      else if (kind === 'forwarder-bun') proc = await startTransportForwarder(work, up, bunBin());
      else if (kind === 'bouncer') proc = await startPgbouncer(work, up, pgbouncerBin()!);
      else
        proc = await startSwitchyard(work, up, {
          name: `sy${i}`,
          root,
          mappings: kind === 'mapped' || kind === 'mapped-bun' ? [MAPPING] : [],
          runtime: kind.endsWith('-bun') ? bunBin() : undefined,
        });
      procs.push(proc);
      targets.push({ name: s, port: proc.port, proc, file });
    }
    const res = new Map<
      string,
      { tps: number[]; cpu: number[]; user: number[]; p50: number[]; reads: number[]; writes: number[] }
    >();
    const loads = [await loadAvg()];
    for (let r = 0; r < ROUNDS; r++) {
      for (let k = 0; k < targets.length; k++) {
        const t = targets[(k + r) % targets.length];
        const pid = t.proc?.pid();
        const trace =
          STRACE && pid ? await SyscallTrace.attach(pid, path.join(work, 'strace.txt')) : undefined;
        const c0 = await cpuTimes(pid);
        const m = await pgbench(
          { host: '127.0.0.1', port: t.port, database: 'bench', user: 'postgres' },
          {
            ...(BUILTIN ? { builtin: BUILTIN } : { file: t.file }),
            mode: MODE,
            clients: CLIENTS,
            seconds: SECONDS,
            logDir: work,
          },
        );
        const c1 = await cpuTimes(t.proc?.pid());
        const e = res.get(t.name) ?? { tps: [], cpu: [], user: [], p50: [], reads: [], writes: [] };
        if (trace) {
          const calls = await trace.stop();
          e.reads.push(calls.reads / m.transactions);
          e.writes.push(calls.writes / m.transactions);
        }
        e.tps.push(m.tps);
        e.p50.push(m.p50);
        if (c0 !== undefined && c1 !== undefined) {
          e.cpu.push((c1.user + c1.sys - c0.user - c0.sys) / m.transactions);
          e.user.push((c1.user - c0.user) / m.transactions);
        }
        res.set(t.name, e);
        process.stderr.write(`round ${r + 1} ${t.name}: ${fmt(m.tps)} tps\n`);
        loads.push(await loadAvg());
      }
    }
    process.stdout.write(
      `\n${SCRIPT} -M ${MODE} -c ${CLIENTS}, ${ROUNDS} x ${SECONDS} s (medians; ratio to ${targets[0].name}); 1-min load average min ${Math.min(...loads).toFixed(1)} median ${median(loads).toFixed(1)} max ${Math.max(...loads).toFixed(1)}\n`,
    );
    const base = median(res.get(targets[0].name)!.tps);
    for (const t of targets) {
      const e = res.get(t.name)!;
      process.stdout.write(
        `${t.name.padEnd(28)} ${fmt(median(e.tps)).padStart(8)} tps (${(median(e.tps) / base).toFixed(2)})  p50 ${ms(median(e.p50))} ms  proxy CPU ${e.cpu.length ? fmt(median(e.cpu), 1) : '–'} µs/tx (user ${e.user.length ? fmt(median(e.user), 1) : '–'})${e.reads.length ? `  socket reads ${fmt(median(e.reads), 2)} writes ${fmt(median(e.writes), 2)} per tx` : ''}   tps runs: ${e.tps.map((x) => fmt(x)).join(' ')}\n`,
      );
    }
  } finally {
    for (const p of procs) await p.stop().catch(() => {});
    await cluster.stop();
    await fs.rm(work, { recursive: true, force: true });
  }
}

main().catch((e) => {
  process.stderr.write(`ab failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exitCode = 1;
});

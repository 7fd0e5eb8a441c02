// Sections of `npm run bench` beyond the pgbench matrix: the planner under a
// literal workload (in process and through the proxy), CLI start-up, and the
// runtime comparison (Node and Bun, switchyard and bare forwarders, PgBouncer).
// Each returns its Markdown; bench/run.ts provides how a cell is measured.
import { execFile as execFileCb } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { PgbenchResult, PgbenchRun } from './pgbench.ts';
import { MAPPING, oltpScript, READ_OLD_SQL, readScript } from './schema.ts';
import { fmt, median, ms, ratio, table } from './stats.ts';
import { bunBin, type Proc, startSwitchyard, startTransportForwarder, type Upstream } from './systems.ts';

const execFile = promisify(execFileCb);
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

export interface Measured extends PgbenchResult {
  proxyCpuPerTx?: number;
}

export interface Variant {
  key: string;
  label: string;
  port: number;
  proc?: Proc;
}

/** What bench/run.ts lends a section: one measured pgbench run, and a cell of variants in rotating turns. */
export interface Bench {
  work: string;
  up: Upstream;
  say(s: string): void;
  measure(v: Variant, run: Omit<PgbenchRun, 'logDir' | 'seconds'>): Promise<Measured>;
  alternate(variants: Variant[], run: (v: Variant) => Promise<Measured>): Promise<Map<string, Measured>>;
}

// ---- the planner under a literal workload ----------------------------------------------

/** switchyard_plan_cache_total by result and route, from the admin endpoint. */
async function planCacheCounts(adminPort: number): Promise<Map<string, number>> {
  const text = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
  const out = new Map<string, number>();
  for (const m of text.matchAll(/^switchyard_plan_cache_total\{([^}]*)\} (\d+)/gm)) {
    const result = /result="(\w+)"/.exec(m[1])?.[1];
    const route = /route="(\w+)"/.exec(m[1])?.[1];
    const k = `${result}/${route}`;
    out.set(k, (out.get(k) ?? 0) + Number(m[2]));
  }
  return out;
}

export async function planner(b: Bench, syMapped: Proc): Promise<string> {
  b.say('planner: bench/planner.ts');
  const { stdout } = await execFile(
    process.execPath,
    ['--import', 'tsx', path.join(ROOT, 'bench/planner.ts')],
    {
      cwd: ROOT,
      maxBuffer: 1 << 20,
    },
  );
  // The literal workload through the proxy: pgbench -M simple writes each
  // variable into the text, so every statement's text is new.
  const file = async (name: string, sql: string) => {
    const f = path.join(b.work, `literal-${name}.sql`);
    await fs.writeFile(f, readScript(sql));
    return f;
  };
  const mapped = await file('mapped', READ_OLD_SQL);
  const unmapped = await file('unmapped', READ_OLD_SQL.replace('FROM users', 'FROM users_app'));
  const update = await file(
    'update',
    "UPDATE users SET email = 'User' || :id || '@Example.com' WHERE id = :id",
  );
  const variants = [
    { key: 'mapped', label: 'SELECT on users (mapped, reads: old)', file: mapped },
    { key: 'unmapped', label: 'the same SELECT on users_app (no mapping)', file: unmapped },
    { key: 'update', label: 'UPDATE on users (mirrored)', file: update },
  ].map((v) => ({ ...v, port: syMapped.port, proc: syMapped }));
  // Rounds of their own: a few µs per statement is the figure, finer than one pooled cell shows.
  const rounds = 4;
  const runs = new Map<string, Measured[]>();
  const before = await planCacheCounts(syMapped.adminPort!);
  for (let r = 0; r < rounds; r++) {
    for (let k = 0; k < variants.length; k++) {
      const v = variants[(k + r) % variants.length];
      b.say(`planner: literal ${v.key} -M simple -c 1 through switchyard`);
      const m = await b.measure(v, { file: v.file, mode: 'simple', clients: 1 });
      runs.set(v.key, [...(runs.get(v.key) ?? []), m]);
    }
  }
  const after = await planCacheCounts(syMapped.adminPort!);
  const delta = (k: string) => (after.get(k) ?? 0) - (before.get(k) ?? 0);
  const hitRow = (route: string) => {
    const hits = delta(`hit/${route}`);
    const misses = delta(`miss/${route}`);
    return [
      route,
      fmt(hits),
      fmt(misses),
      hits + misses ? `${((100 * hits) / (hits + misses)).toFixed(3)} %` : '–',
    ];
  };
  const med = (k: string, f: (m: Measured) => number) => median(runs.get(k)!.map(f));
  const cpu = (k: string) => med(k, (m) => m.proxyCpuPerTx ?? Number.NaN);
  return [
    '### The planner under a literal workload',
    '',
    `Through switchyard-mapped, \`pgbench -M simple -c 1\`, each variable written into the text (every statement is new text, as with psycopg2, Rails without prepared statements or psql scripts); one statement per transaction; ${rounds} runs per statement in rotating order, medians. Proxy CPU is per statement.`,
    '',
    table(
      ['statement', 'statements/s', 'p50 ms', 'proxy CPU µs'],
      variants.map((v) => [
        v.label,
        fmt(med(v.key, (m) => m.tps)),
        ms(med(v.key, (m) => m.p50)),
        fmt(cpu(v.key), 1),
      ]),
    ),
    '',
    `Mapped over unmapped: **${fmt(cpu('mapped') - cpu('unmapped'), 1)} µs** of proxy CPU per statement (target: within 10 µs).`,
    '',
    'Plan-cache lookups during these runs, from `switchyard_plan_cache_total` on the admin endpoint:',
    '',
    table(['route', 'hits', 'misses', 'hit ratio'], ['read_old', 'mirrored_write'].map(hitRow)),
    '',
    'In process, no Postgres (`npx tsx bench/planner.ts`):',
    '',
    '```',
    stdout.trim(),
    '```',
    '',
  ].join('\n');
}

// ---- CLI start-up ---------------------------------------------------------------------

/** Wall time of each command, median of `runs`. */
async function timed(args: string[], runs: number): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    await execFile(process.execPath, [path.join(ROOT, 'bin/switchyard.js'), ...args], { cwd: ROOT });
    times.push(performance.now() - t0);
  }
  return median(times);
}

export async function cliStartup(b: Bench, syMapped: Proc): Promise<string> {
  b.say('cli: switchyard --help, switchyard status');
  const runs = 7;
  const rows = [
    ['`switchyard --help`', await timed(['--help'], runs)],
    [
      '`switchyard status` (against the running switchyard-mapped)',
      await timed(['status', '--admin', `http://127.0.0.1:${syMapped.adminPort}`], runs),
    ],
    [
      '`node -e ""` (Node itself, for reference)',
      await (async () => {
        const times: number[] = [];
        for (let i = 0; i < runs; i++) {
          const t0 = performance.now();
          await execFile(process.execPath, ['-e', '']);
          times.push(performance.now() - t0);
        }
        return median(times);
      })(),
    ],
  ] as const;
  return [
    '### CLI start-up',
    '',
    `Wall time from spawning \`node bin/switchyard.js\` to its exit, median of ${runs} runs (target: under 0.3 s).`,
    '',
    table(
      ['command', 'seconds'],
      rows.map(([c, t]) => [c, (t / 1000).toFixed(3)]),
    ),
    '',
  ].join('\n');
}

// ---- runtimes -------------------------------------------------------------------------

export async function runtimes(
  b: Bench,
  base: { pipe: Proc; syPlain: Proc; syMapped: Proc; bouncer?: Proc; directPort: number },
): Promise<string> {
  const bun = bunBin();
  const { stdout: bunVersion } = await execFile(bun, ['--version']);
  const procs: Proc[] = [];
  try {
    const start = async (p: Promise<Proc>) => {
      const proc = await p;
      procs.push(proc);
      return proc;
    };
    const nodeFwd = await start(startTransportForwarder(b.work, b.up));
    const bunFwd = await start(startTransportForwarder(b.work, b.up, bun));
    const syBun = await start(startSwitchyard(b.work, b.up, { name: 'switchyard-bun', runtime: bun }));
    const syBunMapped = await start(
      startSwitchyard(b.work, b.up, { name: 'switchyard-bun-mapped', runtime: bun, mappings: [MAPPING] }),
    );
    const passthrough: Variant[] = [
      ...(base.bouncer
        ? [{ key: 'bouncer', label: 'PgBouncer', port: base.bouncer.port, proc: base.bouncer }]
        : []),
      { key: 'pipe', label: 'Node pipe()', port: base.pipe.port, proc: base.pipe },
      { key: 'fwd', label: 'Node transport forwarder', port: nodeFwd.port, proc: nodeFwd },
      { key: 'fwd-bun', label: 'Bun transport forwarder', port: bunFwd.port, proc: bunFwd },
      { key: 'sy', label: 'switchyard on Node', port: base.syPlain.port, proc: base.syPlain },
      { key: 'sy-bun', label: 'switchyard on Bun', port: syBun.port, proc: syBun },
    ];
    const rows: string[][] = [];
    for (const script of ['select-only', 'tpcb-like'] as const) {
      // One run per system (the pgbench matrix above has the Node systems' pooled cells).
      const res = new Map<string, Measured>();
      for (const v of passthrough) {
        b.say(`runtimes: ${script} -M prepared -c 8 -> ${v.key}`);
        res.set(v.key, await b.measure(v, { builtin: script, mode: 'prepared', clients: 8 }));
      }
      const ref = res.get('bouncer') ?? res.get('pipe')!;
      for (const v of passthrough) {
        const r = res.get(v.key)!;
        rows.push([
          script,
          v.label,
          fmt(r.tps),
          ratio(r.tps, ref.tps),
          ms(r.p50),
          fmt(r.proxyCpuPerTx ?? Number.NaN, 1),
        ]);
      }
    }
    const oltpFile = async (t: string) => {
      const f = path.join(b.work, `rt-oltp-${t}.sql`);
      await fs.writeFile(f, oltpScript(t));
      return f;
    };
    const files = { users: await oltpFile('users'), users_trg: await oltpFile('users_trg') };
    const mirrored: (Variant & { table: 'users' | 'users_trg' })[] = [
      { key: 'trigger', label: 'direct, trigger dual write', port: base.directPort, table: 'users_trg' },
      ...(base.bouncer
        ? [
            {
              key: 'bouncer',
              label: 'PgBouncer, trigger dual write',
              port: base.bouncer.port,
              proc: base.bouncer,
              table: 'users_trg' as const,
            },
          ]
        : []),
      {
        key: 'sy',
        label: 'switchyard on Node (mirrored)',
        port: base.syMapped.port,
        proc: base.syMapped,
        table: 'users',
      },
      {
        key: 'sy-bun',
        label: 'switchyard on Bun (mirrored)',
        port: syBunMapped.port,
        proc: syBunMapped,
        table: 'users',
      },
    ];
    const oltpRows: string[][] = [];
    const res = await b.alternate(mirrored, (v) => {
      b.say(`runtimes: oltp -M prepared -c 8 -> ${v.key}`);
      const table = mirrored.find((m) => m.key === v.key)!.table;
      return b.measure(v, { file: files[table], mode: 'prepared', clients: 8 });
    });
    const trigger = res.get('trigger')!;
    for (const v of mirrored) {
      const r = res.get(v.key)!;
      oltpRows.push([
        v.label,
        fmt(r.tps),
        ratio(r.tps, trigger.tps),
        ms(r.p50),
        fmt(r.proxyCpuPerTx ?? Number.NaN, 1),
      ]);
    }
    return [
      '### Runtimes: Node and Bun, switchyard and bare forwarders',
      '',
      `Bun ${bunVersion.trim()} (the \`bun\` npm package). The transport forwarder is \`bench/transport-forwarder.ts\`: switchyard's own socket layer (\`src/transport\`) relaying bytes and nothing else, on Node (node:net) or on Bun (\`Bun.listen\`/\`Bun.connect\`); \`pipe()\` is Node's \`socket.pipe()\`. pgbench -M prepared, 8 clients, one run per system; \`vs ref\` is TPS over ${base.bouncer ? "PgBouncer's" : "the pipe forwarder's"} in the same cell.`,
      '',
      table(['script', 'system', 'TPS', 'vs ref', 'p50 ms', 'proxy CPU µs/tx'], rows),
      '',
      'The mixed OLTP transaction (as in its section below), -M prepared, 8 clients; `vs trigger` is TPS over the direct trigger dual write in the same cell.',
      '',
      table(['system', 'TPS', 'vs trigger', 'p50 ms', 'proxy CPU µs/tx'], oltpRows),
      '',
    ].join('\n');
  } finally {
    for (const p of procs) await p.stop().catch(() => {});
  }
}

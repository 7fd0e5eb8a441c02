// CPU per statement in the planner: plan-cache hit, miss (parse + rewrite),
// the prefilter fast path, and a literal workload (hit ratio and CPU of a
// shape hit next to an exact-text hit). No Postgres needed: the rules are built from
// the corpus mappings with a synthetic catalog.
//   npx tsx bench/planner.ts
import { configSchema } from '../src/config/schema.ts';
import type { CompiledMapping } from '../src/rules/mapping.ts';
import { type PlanContext, Planner } from '../src/rules/planner.ts';
import { type RuleSet, relationKey } from '../src/rules/ruleset.ts';
import { loadParser, parseSql } from '../src/sql/parse.ts';
import { CORPUS_MAPPINGS, ORM_CORPUS } from '../test/fixtures/orm-corpus.ts';

await loadParser();

const TYPES: Record<string, string> = {
  id: 'integer',
  userId: 'integer',
  totalCents: 'integer',
  select: 'integer',
};
const mappings: CompiledMapping[] = configSchema
  .parse({ upstream: { host: 'x' }, mappings: CORPUS_MAPPINGS.map((m) => ({ ...m, reads: 'new' })) })
  .mappings.map((c) => {
    const strip = (s: string) => s.replace(/^"|"$/g, '');
    return {
      name: c.name,
      config: c,
      old: { schema: 'public', name: strip(c.old) },
      new: { schema: 'public', name: strip(c.new) },
      key: c.key,
      up: Object.entries(c.up).map(([column, expr]) => ({ column, expr })),
      down: Object.entries(c.down ?? {}).map(([column, expr]) => ({ column, expr })),
      oldColumns: Object.keys(c.down ?? {}).map((name) => ({ name, type: TYPES[name] ?? 'text' })),
      newColumns: Object.keys(c.up).map((name) => ({ name, type: TYPES[name] ?? 'text' })),
    };
  });
const rules: RuleSet = {
  mappings,
  database: 'bench',
  serverVersion: 18,
  relations: new Set(
    mappings.flatMap((m) => [relationKey('public', m.old.name), relationKey('public', m.new.name)]),
  ),
};
const planner = new Planner(rules);
const ctx: PlanContext = {
  searchPath: ['$user', 'public'],
  user: 'app',
  killSwitch: false,
  onUnmirrorable: 'passthrough',
  version: 1,
};
const sqls = ORM_CORPUS.map((e) => e.sql);
const unmapped = [
  'SELECT "id", "name" FROM "accounts" WHERE "id" = $1 LIMIT 1',
  'INSERT INTO events (kind, payload, created_at) VALUES ($1, $2::jsonb, now()) RETURNING id',
  'UPDATE sessions SET last_seen = now() WHERE token = $1',
  'SELECT count(*) FROM audit_log WHERE entity = $1 AND entity_id = ANY($2::int[])',
];

// CPU time of this process (user + system), not wall time: on a shared machine
// the wall clock also counts the time other processes held the core.
function measure(label: string, rounds: number, fn: (i: number) => void): number {
  for (let i = 0; i < Math.min(rounds, 2000); i++) fn(i); // warm-up
  const c0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < rounds; i++) fn(i);
  const wall = Number(process.hrtime.bigint() - t0) / 1000 / rounds;
  const c = process.cpuUsage(c0);
  const cpu = (c.user + c.system) / rounds;
  console.log(
    `${label.padEnd(40)} ${cpu.toFixed(2).padStart(8)} µs CPU/statement  (wall ${wall.toFixed(2)} µs, ${rounds} runs)`,
  );
  return cpu;
}

// The parser is WebAssembly: V8 first runs it unoptimised and tiers it up
// after many calls. A long-running proxy is in the optimised state.
for (let i = 0; i < 30_000; i++) parseSql(sqls[i % sqls.length]);
for (const s of sqls) planner.plan(s, ctx);
const hit = measure('plan-cache hit (mapped statements)', 200_000, (i) => {
  planner.plan(sqls[i % sqls.length], ctx);
});
measure('prefilter pass (no mapped name)', 500_000, (i) => {
  planner.plan(unmapped[i % unmapped.length], ctx);
});
let v = 1000;
const miss = measure('plan-cache miss (parse + plan + splice)', 5_000, (i) => {
  planner.plan(sqls[i % sqls.length], { ...ctx, version: v++ });
});
measure('  of which libpg-query parse', 5_000, (i) => {
  parseSql(sqls[i % sqls.length]);
});
// The literal workload: a pgbench-like stream of simple-protocol statements
// whose literals change every time (psycopg2, Rails without prepares, psql).
const users = mappings.find((m) => m.old.name === 'users')!;
const literalPlanner = new Planner({
  ...rules,
  mappings: [{ ...users, config: { ...users.config, reads: 'old' } }],
});
const literal = (i: number) => {
  const id = 1 + ((i * 2654435761) % 100_000);
  return i % 2 === 0
    ? `UPDATE users SET login_count = login_count + 1 WHERE id = ${id}`
    : `SELECT id, email, login_count FROM users WHERE id = ${id}`;
};
const exactText = [literal(0), literal(1)];
for (let i = 0; i < 2000; i++) literalPlanner.plan(exactText[i % 2], ctx);
const exactHit = measure('exact-text hit (same text again)', 200_000, (i) => {
  literalPlanner.plan(exactText[i % 2], ctx);
});
// The hit ratio of a fresh cache over the whole stream, first statements included.
const streamPlanner = new Planner(literalPlanner.rules);
for (let i = 0; i < 100_000; i++) streamPlanner.plan(literal(i + 3), ctx);
const { hits, misses } = streamPlanner.cache;
const literalHit = measure('shape hit (literals change)', 200_000, (i) => {
  literalPlanner.plan(literal(i + 7), ctx);
});
const ratio = (100 * hits) / (hits + misses);

const rewrites = sqls.map((s) => planner.plan(s, ctx)).filter((p) => p.rewritten).length;
console.log(`\n${rewrites}/${sqls.length} corpus statements rewritten (reads: new, dual-write on)`);
console.log(`hit ${hit.toFixed(2)} µs (target < 20), miss ${miss.toFixed(1)} µs`);
console.log(
  `literal workload (UPDATE users SET login_count = login_count + 1 / SELECT ... WHERE id = <random>, reads old): hit ratio ${ratio.toFixed(3)}% (${hits} hits, ${misses} misses; target >= 99%), ` +
    `shape hit ${literalHit.toFixed(2)} µs vs exact-text hit ${exactHit.toFixed(2)} µs`,
);

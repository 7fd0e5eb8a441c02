// `switchyard plans`: query plans captured before and after, for the reads
// a read switch would move. The running proxy keeps the statement shapes it
// saw lately on each mapping (GET /shapes); each read shape is planned here as
// served under reads: old and as switched to new, with EXPLAIN, and the
// differences a switch would bring are flagged: a sequential scan the old plan
// did not have, a new sort.
import type pg from 'pg';
import { loadMapping, SetupError } from '../backfill/setup.ts';
import { ConfigError } from '../config/load.ts';
import { connect, upstreamClientConfig } from '../pg/connect.ts';
import type { ShapeSummary as Shape } from '../proxy/shape-stats.ts';
import { Planner } from '../rules/planner.ts';
import { compileRules, type RuleSet, withReads } from '../rules/ruleset.ts';
import { parseCommandArgs } from './args.ts';
import { getText } from './http-get.ts';
import { DEFAULT_ADMIN_URL } from './status.ts';

const USAGE = `Usage: switchyard plans --config FILE --mapping NAME [--admin URL] [--json]

For the read statements the running proxy saw lately on the mapping (by
shape, most frequent first, from its admin endpoint), prints the plan's cost
served from old and switched to new, and flags what the switch would bring: a
sequential scan, a new sort. Statements with $n parameters are planned with
the values the proxy saw bound to them (text values), or else get a generic
plan (PostgreSQL 16 and later). Runs nothing but EXPLAIN.

  --admin URL   admin endpoint of a running proxy (default SWITCHYARD_ADMIN_URL or ${DEFAULT_ADMIN_URL})
  --json        print the comparison as JSON

Exit status: 0 nothing flagged, 1 some shape flagged, 2 error.
`;

const OPTIONS = {
  config: { type: 'string' },
  mapping: { type: 'string' },
  admin: { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

interface PlanSummary {
  cost: number;
  /** "Seq Scan on t", "Index Scan on t", "Sort", ... */
  nodes: string[];
}

export interface PlanComparison {
  sample: string;
  count: number;
  meanMs: number;
  old?: PlanSummary;
  new?: PlanSummary;
  flags: string[];
  note?: string;
}

type PlanNode = { 'Node Type': string; 'Relation Name'?: string; 'Total Cost': number; Plans?: PlanNode[] };

function nodesOf(p: PlanNode, out: string[] = []): string[] {
  out.push(p['Relation Name'] ? `${p['Node Type']} on ${p['Relation Name']}` : p['Node Type']);
  for (const c of p.Plans ?? []) nodesOf(c, out);
  return out;
}

/** EXPLAIN of a text as a client sent it: with its captured values, or a generic plan for $n. */
async function explain(
  c: pg.Client,
  sql: string,
  how: { params?: (string | null)[]; generic: boolean },
): Promise<PlanSummary> {
  const r = await c.query({
    text: `EXPLAIN (FORMAT JSON${how.generic ? ', GENERIC_PLAN' : ''}) ${sql}`,
    ...(how.params ? { values: how.params } : {}),
  });
  const plan = (r.rows[0]['QUERY PLAN'] as { Plan: PlanNode }[])[0].Plan;
  return { cost: plan['Total Cost'], nodes: nodesOf(plan) };
}

/** What the switched plan has that the old one does not: a sequential scan, more sorts. */
export function planFlags(old: PlanSummary, now: PlanSummary): string[] {
  const flags: string[] = [];
  const seqOld = old.nodes.some((n) => n.startsWith('Seq Scan'));
  for (const n of now.nodes.filter((x) => x.startsWith('Seq Scan'))) if (!seqOld) flags.push(`new ${n}`);
  const sorts = (p: PlanSummary) => p.nodes.filter((n) => n === 'Sort' || n === 'Incremental Sort').length;
  if (sorts(now) > sorts(old)) flags.push('new Sort');
  return [...new Set(flags)];
}

async function compare(
  c: pg.Client,
  rules: RuleSet,
  shapes: Shape[],
  version: number,
): Promise<PlanComparison[]> {
  const [asOld, asNew] = [new Planner(withReads(rules, 'old')), new Planner(withReads(rules, 'new'))];
  const user = (await c.query<{ u: string }>('SELECT current_user AS u')).rows[0].u;
  const ctx = {
    searchPath: ['$user', 'public'],
    user,
    killSwitch: true,
    onUnmirrorable: 'passthrough' as const,
    version: 1,
    simpleQuery: true,
  };
  const out: PlanComparison[] = [];
  for (const s of shapes) {
    const row: PlanComparison = { sample: s.sample, count: s.count, meanMs: s.meanMs, flags: [] };
    // $n parameters: the values the proxy captured, else a generic plan (PostgreSQL 16 and later).
    const generic = /\$\d/.test(s.sample) && !s.params;
    if (generic && version < 16) {
      row.note =
        'a statement with $n parameters and no captured values needs PostgreSQL 16 for a generic plan';
      out.push(row);
      continue;
    }
    const how = { generic, ...(s.params ? { params: s.params } : {}) };
    try {
      row.old = await explain(c, asOld.plan(s.sample, ctx).sql, how);
      row.new = await explain(c, asNew.plan(s.sample, ctx).sql, how);
      row.flags = planFlags(row.old, row.new);
    } catch (e) {
      row.note = `EXPLAIN failed: ${(e as Error).message}`;
    }
    out.push(row);
  }
  return out;
}

function render(mapping: string, rows: PlanComparison[]): string {
  if (rows.length === 0) return `plans ${mapping}: the proxy has seen no read of this mapping lately\n`;
  const lines = [
    `plans ${mapping}: ${rows.length} read shape${rows.length === 1 ? '' : 's'}, most frequent first`,
  ];
  for (const r of rows) {
    const text = r.sample.replace(/\s+/g, ' ');
    lines.push(
      `  ${r.count}x, ${r.meanMs.toFixed(2)} ms: ${text.length > 100 ? `${text.slice(0, 97)}...` : text}`,
    );
    if (r.note) lines.push(`    ${r.note}`);
    if (r.old && r.new) {
      lines.push(`    old: cost ${r.old.cost.toFixed(2)}  ${r.old.nodes.join(' > ')}`);
      lines.push(`    new: cost ${r.new.cost.toFixed(2)}  ${r.new.nodes.join(' > ')}`);
      lines.push(r.flags.length > 0 ? `    FLAGGED: ${r.flags.join(', ')}` : '    no new scan or sort');
    }
  }
  return `${lines.join('\n')}\n`;
}

export async function run(argv: string[]): Promise<number> {
  const values = parseCommandArgs('plans', argv, OPTIONS, USAGE, ['config', 'mapping']);
  if (typeof values === 'number') return values;
  const base = values.admin ?? process.env.SWITCHYARD_ADMIN_URL ?? DEFAULT_ADMIN_URL;
  try {
    const { config, mapping } = await loadMapping(
      values.config as string,
      values.mapping as string,
      'switchyard-plans',
    );
    let answer: { status: number; text: string };
    try {
      answer = await getText(new URL('/shapes', base), 5000);
    } catch (e) {
      throw new SetupError(`cannot reach the proxy's admin endpoint at ${base}: ${(e as Error).message}`);
    }
    if (answer.status !== 200) throw new SetupError(`${base}/shapes answered ${answer.status}`);
    const shapes = ((JSON.parse(answer.text) as { shapes: Shape[] }).shapes ?? []).filter(
      (s) => s.mapping === mapping.name && (s.route === 'read_old' || s.route === 'read_new'),
    );
    const rules = await compileRules({ ...config, mappings: [mapping.config] }, { installHelpers: false });
    const c = await connect(upstreamClientConfig(config, { application_name: 'switchyard-plans' }));
    let rows: PlanComparison[];
    try {
      const v = (await c.query<{ v: string }>("SELECT current_setting('server_version_num') AS v")).rows[0].v;
      rows = await compare(c, rules, shapes, Math.floor(Number(v) / 10000));
    } finally {
      await c.end().catch(() => {});
    }
    process.stdout.write(values.json ? `${JSON.stringify(rows, null, 2)}\n` : render(mapping.name, rows));
    return rows.some((r) => r.flags.length > 0) ? 1 : 0;
  } catch (e) {
    const plain = e instanceof SetupError || e instanceof ConfigError;
    process.stderr.write(`switchyard plans: ${plain ? '' : 'failed: '}${(e as Error).message}\n`);
    return 2;
  }
}

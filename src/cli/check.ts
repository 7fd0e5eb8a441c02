// `switchyard check`: before turning on dualWrite: both, find what a round
// trip through the other table would change (see verify/roundtrip.ts).
import { loadMapping, positiveInt, SetupError } from '../backfill/setup.ts';
import { ConfigError } from '../config/load.ts';
import { connect } from '../pg/connect.ts';
import { checkRoundTrip, DEFAULT_ROUND_TRIP, type RoundTripReport } from '../verify/roundtrip.ts';
import { parseCommandArgs } from './args.ts';

const USAGE = `Usage: switchyard check --config FILE --mapping NAME [--sample N] [--json]

Evaluates down(up(old)) = old and up(down(new)) = new over sampled rows of both
tables and over edge values made from the column types (NULL, empty strings,
separators inside names, extreme numbers and timestamps), and lists every
column that does not come back, with examples. Writes nothing. Run it before
dualWrite: both: a column that does not round-trip changes when a row written
through one name is read or written again through the other.

  --sample N   rows sampled from each table (default ${DEFAULT_ROUND_TRIP.sample})
  --json       print the report as JSON

Exit status: 0 every column round-trips, 1 some column does not, 2 error.
`;

const OPTIONS = {
  config: { type: 'string' },
  mapping: { type: 'string' },
  sample: { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

function show(v: unknown): string {
  const s = JSON.stringify(v);
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}

/** The report for a person: one block per direction, one line per column that does not round-trip. */
export function renderRoundTrip(r: RoundTripReport): string {
  const lines = [`check ${r.mapping}`];
  for (const s of r.sides) {
    const what = `${s.sampledRows} sampled rows and ${s.edgeValues} edge values of ${s.table}`;
    lines.push(
      s.lossy.length === 0
        ? `  ${s.rule}: every column round-trips (${what})`
        : `  ${s.rule}: ${s.lossy.length} column${s.lossy.length === 1 ? '' : 's'} do not round-trip (${what})`,
    );
    for (const l of s.lossy) {
      lines.push(`    ${l.column}: ${l.sampledRows} sampled rows, ${l.edgeValues} edge values`);
      for (const e of l.examples) {
        const where = e.source === 'sample' ? `row ${show(e.key)}` : 'edge value';
        lines.push(
          e.error !== undefined
            ? `      ${where}: ${show(e.value)} raises: ${e.error}`
            : `      ${where}: ${show(e.value)} comes back as ${show(e.back)}`,
        );
      }
    }
    if (s.uncovered.length > 0) {
      lines.push(`    not written from the other side (defaults): ${s.uncovered.join(', ')}`);
    }
  }
  return `${lines.join('\n')}\n`;
}

export async function run(argv: string[]): Promise<number> {
  const values = parseCommandArgs('check', argv, OPTIONS, USAGE, ['config', 'mapping']);
  if (typeof values === 'number') return values;
  try {
    const sample = positiveInt('--sample', values.sample, 0) ?? DEFAULT_ROUND_TRIP.sample;
    const { mapping, clientConfig } = await loadMapping(
      values.config as string,
      values.mapping as string,
      'switchyard-check',
      { reverse: 'check' },
    );
    const c = await connect(clientConfig);
    let report: RoundTripReport;
    try {
      report = await checkRoundTrip(c, mapping, { ...DEFAULT_ROUND_TRIP, sample });
    } finally {
      await c.end().catch(() => {});
    }
    process.stdout.write(values.json ? `${JSON.stringify(report, null, 2)}\n` : renderRoundTrip(report));
    return report.lossy ? 1 : 0;
  } catch (e) {
    // Setup and config errors are the user's own terms already; others name what failed.
    const plain = e instanceof SetupError || e instanceof ConfigError;
    process.stderr.write(`switchyard check: ${plain ? '' : 'failed: '}${(e as Error).message}\n`);
    return 2;
  }
}

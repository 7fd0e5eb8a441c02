// `switchyard switch`: flip a switch for the whole fleet through the control
// table, then wait until every live sidecar says it applies the change.
import os from 'node:os';
import type pg from 'pg';
import { ConfigError, loadConfigFile } from '../config/load.ts';
import type { Config } from '../config/schema.ts';
import { type AppliedReport, awaitApplied } from '../fleet/await-applied.ts';
import { ensureControlTables, type NewChange, recordChanges } from '../fleet/tables.ts';
import { connect, upstreamClientConfig } from '../pg/connect.ts';
import { parseCommandArgs } from './args.ts';
import { databaseError, FleetCliError } from './fleet-errors.ts';

const USAGE = `Usage: switchyard switch --config FILE --mapping NAME [--reads old|new|file] [--dual-write on|off|both|file]
       switchyard switch --config FILE --kill-switch on|off|file --reason TEXT

Records the change in the control table (switchyard.switch_changes, with who,
when and why), which every sidecar with fleet.enabled follows within a second,
then waits until every live sidecar reports it applies the new version.
'file' hands the switch back to the config file's value.

  --reason TEXT   why (kept in the history; required for the kill switch)
  --by NAME       who (default: the OS user @ this host)
  --wait SECONDS  how long to wait for the fleet (default 10; 0: do not wait)
  --json          print the outcome as JSON

Exit status: 0 every live sidecar applies the change, 1 some did not within
--wait, 2 error (nothing was changed).
`;

const OPTIONS = {
  config: { type: 'string' },
  mapping: { type: 'string' },
  reads: { type: 'string' },
  'dual-write': { type: 'string' },
  'kill-switch': { type: 'string' },
  reason: { type: 'string' },
  by: { type: 'string' },
  wait: { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

type Values = Exclude<ReturnType<typeof parseCommandArgs<typeof OPTIONS>>, number>;

function oneOf(flag: string, v: string, allowed: string[]): string {
  if (!allowed.includes(v)) throw new FleetCliError(`${flag} must be ${allowed.join(', ')}; got ${v}`);
  return v;
}

/** The changes asked for, checked against the config the fleet runs. */
function changesFrom(v: Values, config: Config, configPath: string): NewChange[] {
  const by = v.by ?? `${os.userInfo().username}@${os.hostname()}`;
  const reason = v.reason ?? null;
  if (v['kill-switch'] !== undefined) {
    if (v.mapping || v.reads || v['dual-write'])
      throw new FleetCliError(
        '--kill-switch is fleet-wide: give it without --mapping, --reads or --dual-write',
      );
    const value = oneOf('--kill-switch', v['kill-switch'], ['on', 'off', 'file']);
    if (!reason) throw new FleetCliError('--kill-switch needs --reason "why" (kept in the switch history)');
    return [{ mapping: null, setting: 'killSwitch', value, by, reason }];
  }
  if (!v.mapping)
    throw new FleetCliError('say --mapping NAME with --reads or --dual-write, or --kill-switch');
  const m = config.mappings.find((x) => x.name === v.mapping);
  if (!m) {
    const known = config.mappings.map((x) => x.name).join(', ') || 'none';
    throw new FleetCliError(`unknown mapping ${v.mapping} in ${configPath} (mappings: ${known})`);
  }
  const out: NewChange[] = [];
  if (v.reads !== undefined) {
    const value = oneOf('--reads', v.reads, ['old', 'new', 'file']);
    if (value === 'new' && !m.down)
      throw new FleetCliError(
        `mapping ${m.name} has no down expressions in ${configPath}: reads cannot switch to new`,
      );
    out.push({ mapping: m.name, setting: 'reads', value, by, reason });
  }
  if (v['dual-write'] !== undefined) {
    const value = oneOf('--dual-write', v['dual-write'], ['on', 'off', 'both', 'file']);
    out.push({ mapping: m.name, setting: 'dualWrite', value, by, reason });
  }
  if (out.length === 0) throw new FleetCliError(`say --reads or --dual-write for mapping ${m.name}`);
  return out;
}

function seconds(ms: number | null): string {
  return ms === null ? '?' : `${(ms / 1000).toFixed(3)}s`;
}

function describeChange(c: NewChange): string {
  const what = c.setting === 'killSwitch' ? 'kill switch' : `mapping ${c.mapping} ${c.setting}`;
  return `${what} ${c.value}`;
}

function render(version: number, changes: NewChange[], r: AppliedReport | undefined): string {
  const lines = [`version ${version}: ${changes.map(describeChange).join(', ')}`];
  if (!r) return `${lines.join('\n')}\n`;
  const live = r.applied.length + r.pending.length;
  if (live === 0)
    lines.push('no live sidecar is following the control table (fleet.enabled in their config?)');
  else if (r.pending.length === 0)
    lines.push(`applied by all ${live} live sidecars in ${seconds(r.convergedMs)}`);
  else
    lines.push(
      `NOT applied by ${r.pending.length} of ${live} live sidecars after waiting ${seconds(r.waitedMs)}`,
    );
  for (const s of r.applied) lines.push(`  applied  ${s.name}  ${s.id}  after ${seconds(s.delayMs)}`);
  for (const s of r.pending)
    lines.push(
      `  PENDING  ${s.name}  ${s.id}  still at version ${s.appliedVersion}${s.applyError ? `: refused: ${s.applyError}` : ''}`,
    );
  for (const s of r.stale)
    lines.push(`  stale    ${s.name}  ${s.id}  last seen ${Math.round(s.ageSeconds)}s ago (not waited for)`);
  return `${lines.join('\n')}\n`;
}

export async function run(argv: string[]): Promise<number> {
  const values = parseCommandArgs('switch', argv, OPTIONS, USAGE, ['config']);
  if (typeof values === 'number') return values;
  let client: pg.Client | undefined;
  try {
    const configPath = values.config as string;
    const { config } = loadConfigFile(configPath);
    const changes = changesFrom(values, config, configPath);
    const waitS = values.wait === undefined ? 10 : Number(values.wait);
    if (!Number.isFinite(waitS) || waitS < 0)
      throw new FleetCliError(`--wait must be seconds >= 0; got ${values.wait}`);
    const cfg = upstreamClientConfig(config, { application_name: 'switchyard-switch' });
    client = await connect(cfg).catch((e) => {
      throw databaseError(cfg, e);
    });
    await ensureControlTables(client);
    const change = await recordChanges(client, changes);
    const report =
      waitS > 0
        ? await awaitApplied(client, change, {
            timeoutMs: waitS * 1000,
            staleAfterMs: config.fleet.staleAfterMs,
          })
        : undefined;
    if (values.json)
      process.stdout.write(`${JSON.stringify({ version: change.version, changes, ...report }, null, 2)}\n`);
    else process.stdout.write(render(change.version, changes, report));
    return report && report.pending.length > 0 ? 1 : 0;
  } catch (e) {
    const msg = e instanceof FleetCliError || e instanceof ConfigError ? e.message : (e as Error).message;
    process.stderr.write(`switchyard switch: ${msg.split('\n')[0]}\n`);
    return 2;
  } finally {
    await client?.end().catch(() => {});
  }
}

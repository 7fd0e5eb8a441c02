// `switchyard status [--admin URL] [--json]`: the running proxy's /status, as a
// table for a person or as JSON for scripts. With --fleet, every sidecar's
// heartbeat from the control table instead.
import { type AdminStatus, type Readiness, renderStatus } from '../admin/status.ts';
import { parseArgs, UsageError } from './args.ts';
import { runFleetStatus } from './fleet-status.ts';
import { type Answer, getText } from './http-get.ts';

export const DEFAULT_ADMIN_URL = 'http://127.0.0.1:9187';
const TIMEOUT_MS = 5000;

const USAGE = `Usage: switchyard status [--admin URL] [--json]
       switchyard status --fleet --config FILE [--json]

  --admin URL   admin endpoint of the running proxy (default ${DEFAULT_ADMIN_URL})
  --json        print the /status document (or the fleet list) as JSON
  --fleet       list every sidecar following the control table in the config's
                database: its control version, local overrides, and STALE when
                its heartbeat is older than fleet.staleAfterMs

The admin URL can also come from SWITCHYARD_ADMIN_URL. Exit status 2 when the
admin endpoint cannot be reached or does not answer.
`;

function describeGetError(e: unknown): string {
  const err = e as Error & { code?: string };
  if (err.name === 'TimeoutError') return `no answer within ${TIMEOUT_MS / 1000}s`;
  return err.code ?? err.message;
}

/** /readyz for the table's first line; undefined if it cannot be read (the table still prints). */
async function readiness(base: string): Promise<Readiness | undefined> {
  try {
    const res = await getText(new URL('/readyz', base), TIMEOUT_MS);
    const body = JSON.parse(res.text) as { ready?: boolean; reason?: string };
    return { ready: res.status === 200 && body.ready === true, reason: body.reason };
  } catch {
    return undefined;
  }
}

export async function run(argv: string[]): Promise<number> {
  let values: { admin?: string; json?: boolean; help?: boolean; fleet?: boolean; config?: string };
  try {
    ({ values } = parseArgs(argv, {
      admin: { type: 'string' },
      fleet: { type: 'boolean' },
      config: { type: 'string' },
      json: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    }));
  } catch (e) {
    if (e instanceof UsageError) {
      process.stderr.write(`switchyard status: ${e.message}\n${USAGE}`);
      return 2;
    }
    throw e;
  }
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  if (values.fleet) return runFleetStatus(values.config, values.json === true);
  const base = values.admin ?? process.env.SWITCHYARD_ADMIN_URL ?? DEFAULT_ADMIN_URL;
  let url: URL;
  try {
    url = new URL('/status', base);
  } catch {
    process.stderr.write(`switchyard status: --admin ${base} is not a URL (e.g. ${DEFAULT_ADMIN_URL})\n`);
    return 2;
  }

  let res: Answer;
  try {
    res = await getText(url, TIMEOUT_MS);
  } catch (e) {
    process.stderr.write(`switchyard status: cannot reach admin at ${url.origin}: ${describeGetError(e)}\n`);
    return 2;
  }
  const text = res.text;
  if (res.status < 200 || res.status > 299) {
    process.stderr.write(
      `switchyard status: ${url.href} answered ${res.status}: ${text.trim().split('\n')[0] ?? ''}\n`,
    );
    return 2;
  }
  let status: AdminStatus;
  try {
    status = JSON.parse(text) as AdminStatus;
  } catch {
    process.stderr.write(
      `switchyard status: ${url.href} did not answer JSON; is it a switchyard admin port?\n`,
    );
    return 2;
  }
  if (values.json) {
    process.stdout.write(`${JSON.stringify(status, null, 2)}\n`);
    return 0;
  }
  process.stdout.write(renderStatus(status, await readiness(base)));
  return 0;
}

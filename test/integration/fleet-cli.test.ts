// The fleet commands as an operator meets them: `status --fleet` as a table
// and as JSON with a dead sidecar marked stale, and one-line errors with a
// non-zero exit for what the operator got wrong.
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { freePort } from '../../src/demo/cluster.ts';
import { ensureControlTables } from '../../src/fleet/tables.ts';
import { freshDatabase, type TestDatabase } from '../support/db.ts';
import { eventually, fleetConfig, runCli } from '../support/fleet.ts';
import { createItems, ITEMS } from '../support/items.ts';
import { mappingConfig } from '../support/lifecycle.ts';
import { baseConfig, type ProxyProcess, startProxyProcess } from '../support/proxy.ts';

let db: TestDatabase;
let live: ProxyProcess;
let dead: ProxyProcess;

const config = () => ({ ...mappingConfig([ITEMS]), ...fleetConfig({ staleAfterMs: 1500 }) });

function configFile(extra: Record<string, unknown>): string {
  const f = path.join(mkdtempSync(path.join(os.tmpdir(), 'sy-fleet-')), 'switchyard.yaml');
  writeFileSync(f, stringify(baseConfig(db, extra)));
  return f;
}

beforeAll(async () => {
  db = await freshDatabase('fleetc');
  await createItems(db);
  // A sidecar that went away two days ago without a word.
  await ensureControlTables(db.direct);
  await db.query(
    `INSERT INTO switchyard.sidecars (id, name, pid, started_at, last_seen)
     VALUES ('web-0-old', 'web-0', 1, now() - interval '3 days', now() - interval '2 days')`,
  );
  live = await startProxyProcess(db, config(), { POD_NAME: 'web-1' });
  dead = await startProxyProcess(db, config(), { POD_NAME: 'web-2' });
});

afterAll(async () => {
  await live?.stop();
  await dead?.stop('SIGKILL');
  await db?.drop();
});

interface FleetJson {
  version: number;
  sidecars: Array<{
    name: string;
    stale: boolean;
    appliedVersion: number;
    localOverrides: Record<string, string>;
  }>;
}

async function fleet(): Promise<FleetJson> {
  const r = await runCli(['status', '--fleet', '--config', live.configPath, '--json']);
  expect(r.stderr).toBe('');
  return JSON.parse(r.stdout) as FleetJson;
}

describe('switchyard status --fleet', () => {
  it('lists live sidecars with their version and local overrides, and marks a dead one stale', async () => {
    // Two heartbeats, and the row of the sidecar gone for two days forgotten.
    const joined = await eventually(fleet, (f) => f.sidecars.length === 2, 'two heartbeats');
    expect(joined.sidecars.map((x) => x.name).sort()).toEqual(['web-1', 'web-2']);
    const override = await fetch(`http://127.0.0.1:${live.adminPort}/kill-switch`, {
      method: 'POST',
      body: 'on',
    });
    expect(override.status).toBe(200);
    const flip = await runCli([
      'switch',
      '--config',
      live.configPath,
      '--mapping',
      'items',
      '--reads',
      'new',
    ]);
    expect(flip.code).toBe(0);
    const version = Number(/^version (\d+)/.exec(flip.stdout)?.[1]);

    // A pod that dies without a word (OOM kill, node loss) leaves its row behind.
    await dead.stop('SIGKILL');
    const f = await eventually(
      fleet,
      (x) => x.sidecars.find((s) => s.name === 'web-2')?.stale === true,
      'web-2 stale',
    );
    expect(f.version).toBe(version);
    expect(f.sidecars.find((s) => s.name === 'web-1')).toMatchObject({
      stale: false,
      appliedVersion: version,
      localOverrides: { killSwitch: 'on' },
    });

    const table = await runCli(['status', '--fleet', '--config', live.configPath]);
    expect(table.code).toBe(0);
    const lines = table.stdout.split('\n');
    expect(lines[0]).toMatch(new RegExp(`^control version ${version}: items reads new by \\S+ at `));
    expect(lines[1]).toBe('1 live, 1 stale (no heartbeat for 1s)');
    expect(lines[3]).toMatch(/^NAME +ID +PID +UP +LAST SEEN +VERSION +OVERRIDES +STATE$/);
    expect(table.stdout).toMatch(
      new RegExp(`web-1 +web-1-[0-9a-f]+ +\\d+ +\\S+ +\\S+ ago +${version} +killSwitch=on +ok`),
    );
    expect(table.stdout).toMatch(/web-2 +web-2-[0-9a-f]+ +\d+ +\S+ +\S+ ago +\d+ +- +STALE/);

    // The CLI waits for live sidecars only, and names the stale one it did not wait for.
    const again = await runCli([
      'switch',
      '--config',
      live.configPath,
      '--mapping',
      'items',
      '--reads',
      'old',
    ]);
    expect(again.code).toBe(0);
    expect(again.stdout).toMatch(/applied by all 1 live sidecars in/);
    expect(again.stdout).toMatch(/stale {4}web-2 .*not waited for/);
  });
});

describe('switchyard switch errors', () => {
  const oneLine = (r: { code: number; stderr: string; stdout: string }) => {
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    return r.stderr.trim();
  };

  it('an unknown mapping names the mappings there are', async () => {
    const r = await runCli(['switch', '--config', live.configPath, '--mapping', 'itemz', '--reads', 'new']);
    expect(oneLine(r)).toBe(
      `switchyard switch: unknown mapping itemz in ${live.configPath} (mappings: items)`,
    );
  });

  it('an unreachable database says where it tried, and changes nothing', async () => {
    const port = await freePort();
    const f = configFile({ ...config(), upstream: { url: `postgres://postgres@127.0.0.1:${port}/x` } });
    const r = await runCli(['switch', '--config', f, '--kill-switch', 'on', '--reason', 'test']);
    expect(oneLine(r)).toBe(
      `switchyard switch: cannot reach the database at 127.0.0.1:${port}/x: ECONNREFUSED`,
    );
    const s = await runCli(['status', '--fleet', '--config', f]);
    expect(oneLine(s)).toBe(
      `switchyard status: cannot reach the database at 127.0.0.1:${port}/x: ECONNREFUSED`,
    );
  });

  it('a value the switch does not take, a kill switch without a reason, and dualWrite both recorded', async () => {
    const bad = await runCli([
      'switch',
      '--config',
      live.configPath,
      '--mapping',
      'items',
      '--reads',
      'newest',
    ]);
    expect(oneLine(bad)).toBe('switchyard switch: --reads must be old, new, file; got newest');
    const noReason = await runCli(['switch', '--config', live.configPath, '--kill-switch', 'on']);
    expect(oneLine(noReason)).toBe(
      'switchyard switch: --kill-switch needs --reason "why" (kept in the switch history)',
    );
    const both = await runCli([
      'switch',
      '--config',
      live.configPath,
      '--mapping',
      'items',
      '--dual-write',
      'both',
    ]);
    expect(both.code).toBe(0);
    expect(both.stdout).toMatch(/items dualWrite both/);
  });

  it('--help shows both forms', async () => {
    const r = await runCli(['switch', '--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('switchyard switch --config FILE --kill-switch on|off|file --reason TEXT');
  });
});

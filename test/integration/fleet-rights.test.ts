// The GRANTs of docs/fleet.md are enough, and no more than needed: a sidecar
// role reads the switches, listens and keeps its heartbeat but cannot change a
// switch; an operator role flips switches with `switchyard switch`.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import type { FleetSwitches } from '../../src/config/overlay.ts';
import { ControlFollower } from '../../src/fleet/follower.ts';
import { sidecarIdentity } from '../../src/fleet/sidecars.ts';
import { ensureControlTables } from '../../src/fleet/tables.ts';
import { silentLogger } from '../../src/log.ts';
import { freshDatabase, type TestDatabase } from '../support/db.ts';
import { eventually, fleetConfig, runCli } from '../support/fleet.ts';
import { createItems, ITEMS } from '../support/items.ts';
import { mappingConfig } from '../support/lifecycle.ts';
import { baseConfig } from '../support/proxy.ts';

const suffix = randomBytes(3).toString('hex');
const SIDECAR = `sy_sidecar_${suffix}`;
const OPERATOR = `sy_operator_${suffix}`;

let db: TestDatabase;
let follower: ControlFollower;
const seen: FleetSwitches[] = [];

function urlAs(user: string): string {
  const u = new URL(db.url);
  u.username = user;
  u.password = '';
  return u.toString();
}

beforeAll(async () => {
  db = await freshDatabase('fleetr');
  await createItems(db);
  await ensureControlTables(db.direct);
  await db.query(`CREATE ROLE ${SIDECAR} LOGIN; CREATE ROLE ${OPERATOR} LOGIN;`);
  // Exactly the statements of docs/fleet.md, "Rights".
  await db.query(`
    GRANT USAGE ON SCHEMA switchyard TO ${SIDECAR};
    GRANT SELECT ON switchyard.switch_changes, switchyard.switches TO ${SIDECAR};
    GRANT SELECT, INSERT, UPDATE, DELETE ON switchyard.sidecars TO ${SIDECAR};
    GRANT USAGE ON SCHEMA switchyard TO ${OPERATOR};
    GRANT SELECT, INSERT ON switchyard.switch_changes TO ${OPERATOR};
    GRANT SELECT ON switchyard.switches, switchyard.sidecars TO ${OPERATOR};`);
  follower = new ControlFollower({
    clientConfig: { connectionString: urlAs(SIDECAR) },
    who: { ...sidecarIdentity({ POD_NAME: 'rights-pod' }) },
    pollMs: 60_000,
    heartbeatMs: 500,
    apply: async (f) => {
      seen.push(f);
      return undefined;
    },
    localOverrides: () => ({}),
    logger: silentLogger,
  });
  follower.start();
  await follower.firstAttempt;
});

afterAll(async () => {
  await follower?.close();
  await db?.drop();
  const a = new pg.Client({ connectionString: db.url.replace(/\/[^/]*$/, '/postgres') });
  await a.connect();
  for (const r of [SIDECAR, OPERATOR]) await a.query(`DROP ROLE IF EXISTS ${r}`);
  await a.end();
});

describe('rights', () => {
  it('the sidecar role follows the control table and keeps its heartbeat', () => {
    expect(follower.state).toMatchObject({ connected: true, error: null });
  });

  it('the operator role flips a switch and sees the sidecar apply it', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'sy-rights-'));
    const file = path.join(dir, 'switchyard.yaml');
    writeFileSync(
      file,
      stringify(
        baseConfig(db, { ...mappingConfig([ITEMS]), ...fleetConfig(), upstream: { url: urlAs(OPERATOR) } }),
      ),
    );
    const r = await runCli([
      'switch',
      '--config',
      file,
      '--mapping',
      'items',
      '--reads',
      'new',
      '--by',
      'op',
    ]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/applied by all 1 live sidecars/);
    const last = await eventually(
      async () => seen.at(-1),
      (f) => f?.mappings.items?.reads?.value === 'new',
      'applied',
    );
    expect(last?.mappings.items.reads).toMatchObject({ by: 'op' });
    const history = await db.query('SELECT db_user FROM switchyard.switch_changes');
    expect(history.rows).toEqual([{ db_user: OPERATOR }]);
  });

  it('the sidecar role cannot change a switch', async () => {
    const c = new pg.Client({ connectionString: urlAs(SIDECAR) });
    await c.connect();
    try {
      await expect(
        c.query(
          `INSERT INTO switchyard.switch_changes (mapping, setting, value, changed_by) VALUES (NULL, 'killSwitch', 'on', 'x')`,
        ),
      ).rejects.toMatchObject({ code: '42501' });
    } finally {
      await c.end();
    }
  });
});

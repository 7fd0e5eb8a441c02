// psycopg 3 (Python, libpq underneath) straight on Postgres and through the
// proxy: the same script must print the same lines both ways (results, errors
// with every field, tags, counts, column metadata), and its writes on a
// mapped table must leave new = up(old).
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { metrics } from '../../src/metrics.ts';
import {
  CLIENTS_DIR,
  pythonWithPsycopg,
  runClient,
  stepOf,
  USERS_DEFINITION,
  usersBackfilled,
} from '../support/clients.ts';
import { freshDatabase, type TestDatabase } from '../support/db.ts';
import { mappingConfig } from '../support/lifecycle.ts';
import { DDL_OFF, startProxy, type TestProxy } from '../support/proxy.ts';

let PYTHON: string;
const SCRIPT = path.join(CLIENTS_DIR, 'psycopg_script.py');

let direct: TestDatabase;
let viaProxy: TestDatabase;
let proxy: TestProxy;
let users: Awaited<ReturnType<typeof usersBackfilled>>[];

beforeAll(async () => {
  PYTHON = pythonWithPsycopg();
  [direct, viaProxy] = await Promise.all([freshDatabase('cpsy_d'), freshDatabase('cpsy_p')]);
  users = await Promise.all([usersBackfilled(direct, 200), usersBackfilled(viaProxy, 200)]);
  // The programs compare every reply straight and through the proxy: the DDL guardrails' notices (tested on their own) stay off.
  proxy = await startProxy(viaProxy, { ...mappingConfig([USERS_DEFINITION]), ddl: { rules: DDL_OFF } });
});

afterAll(async () => {
  await proxy?.close();
  await direct?.drop();
  await viaProxy?.drop();
});

const run = (url: string, mode: string) => runClient(PYTHON, [SCRIPT, url, mode]);

const unmirrored = async () => (await metrics.unmirroredWrites.get()).values.reduce((a, v) => a + v.value, 0);

describe('psycopg 3', () => {
  it('prints the same results, errors, tags and metadata straight and through the proxy', async () => {
    const [straight, proxied] = await Promise.all([run(direct.url, 'script'), run(proxy.url(), 'script')]);
    // The script ran what it claims (identical output of a broken run proves nothing).
    expect(stepOf(straight, 'done')).toBeDefined();
    expect(stepOf(straight, 'cancel a running pg_sleep(30)').error?.sqlstate).toBe('57014');
    expect(stepOf(straight, 'the session after the cancel').ok).toMatchObject({ rows: [['still here']] });
    expect(stepOf(straight, 'error mid-batch (duplicate key in the 3rd row)').error?.sqlstate).toBe('23505');
    expect(stepOf(straight, 'error mid-batch (check constraint)').error?.constraint_name).toBe(
      'items_qty_check',
    );
    expect(stepOf(straight, 'COPY FROM STDIN with a bad row').error?.context).toMatch(/COPY items, line 2/);
    const prepared = stepOf(straight, 'server-side prepared statements').ok as { rows: unknown[][] }[];
    expect(prepared.at(-1)?.rows[0][0]).toBeGreaterThanOrEqual(2);
    expect(JSON.stringify(stepOf(straight, 'pipeline mode, with an error inside'))).toContain('22012');
    expect(proxied).toEqual(straight);
  });

  it('mirrors every write of a psycopg workload on a mapped table: new = up(old) after, outputs identical', async () => {
    const [d, p] = users;
    const before = await unmirrored();
    const [straight, proxied] = await Promise.all([
      run(direct.url, 'workload'),
      run(proxy.url(), 'workload'),
    ]);
    expect(stepOf(straight, 'done')).toBeDefined();
    expect(stepOf(straight, 'error mid-batch on the mapped table').error?.sqlstate).toBe('23505');
    expect(proxied).toEqual(straight);
    expect(await p.drift()).toBe(0);
    expect(await unmirrored()).toBe(before);
    // Straight on Postgres nothing mirrors: the workload did change old.
    expect(await d.drift()).toBeGreaterThan(0);
    const n = await viaProxy.query(
      'SELECT (SELECT count(*) FROM users)::int AS old, (SELECT count(*) FROM users_v2)::int AS new',
    );
    expect(n.rows[0].new).toBe(n.rows[0].old);
  });
});

// pgjdbc (Java) straight on Postgres and through the proxy: the same program
// must print the same lines both ways (results, errors with every field,
// update counts, batches rewritten or not, COPY, cancel, ResultSetMetaData),
// and its writes on a mapped table must leave new = up(old).
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { metrics } from '../../src/metrics.ts';
import {
  CLIENTS_DIR,
  PGJDBC_JAR,
  requireClient,
  requireFile,
  runClient,
  stepOf,
  USERS_DEFINITION,
  usersBackfilled,
} from '../support/clients.ts';
import { freshDatabase, type TestDatabase } from '../support/db.ts';
import { mappingConfig } from '../support/lifecycle.ts';
import { DDL_OFF, startProxy, type TestProxy } from '../support/proxy.ts';

const JAVA = process.env.SWITCHYARD_TEST_JAVA ?? 'java';
const JAVAC = process.env.SWITCHYARD_TEST_JAVAC ?? 'javac';

let classes: string;
let direct: TestDatabase;
let viaProxy: TestDatabase;
let proxy: TestProxy;
let users: Awaited<ReturnType<typeof usersBackfilled>>[];

beforeAll(async () => {
  requireClient('a Java runtime', JAVA, ['-version']);
  requireFile('pgjdbc', PGJDBC_JAR);
  classes = mkdtempSync(path.join(os.tmpdir(), 'sy-pgjdbc-'));
  // Compiling against the jar also proves it is pgjdbc.
  requireClient('the Java compiler', JAVAC, [
    '-cp',
    PGJDBC_JAR,
    '-d',
    classes,
    path.join(CLIENTS_DIR, 'PgjdbcScript.java'),
  ]);
  [direct, viaProxy] = await Promise.all([freshDatabase('cjdbc_d'), freshDatabase('cjdbc_p')]);
  users = await Promise.all([usersBackfilled(direct, 200), usersBackfilled(viaProxy, 200)]);
  // The programs compare every reply straight and through the proxy: the DDL guardrails' notices (tested on their own) stay off.
  proxy = await startProxy(viaProxy, { ...mappingConfig([USERS_DEFINITION]), ddl: { rules: DDL_OFF } });
}, 120_000);

afterAll(async () => {
  await proxy?.close();
  await direct?.drop();
  await viaProxy?.drop();
  if (classes) rmSync(classes, { recursive: true, force: true });
});

function jdbcUrl(url: string): string {
  const u = new URL(url);
  return `jdbc:postgresql://${u.hostname}:${u.port}${u.pathname}?user=${decodeURIComponent(u.username)}`;
}

const run = (url: string, mode: string) =>
  runClient(JAVA, ['-cp', `${classes}${path.delimiter}${PGJDBC_JAR}`, 'PgjdbcScript', jdbcUrl(url), mode]);

const unmirrored = async () => (await metrics.unmirroredWrites.get()).values.reduce((a, v) => a + v.value, 0);

describe('pgjdbc', () => {
  it('prints the same results, errors, counts and metadata straight and through the proxy', async () => {
    const [straight, proxied] = await Promise.all([run(direct.url, 'script'), run(proxy.url(), 'script')]);
    // The program ran what it claims (identical output of a broken run proves nothing).
    expect(stepOf(straight, 'done')).toBeDefined();
    expect(stepOf(straight, 'cancel a running pg_sleep(30)').error?.sqlstate).toBe('57014');
    expect(stepOf(straight, 'the session after the cancel').ok).toBeDefined();
    for (const rw of ['false', 'true']) {
      const e = stepOf(
        straight,
        `[reWriteBatchedInserts=${rw}] error mid-batch (duplicate key in the 3rd row)`,
      ).error;
      expect(e?.class).toBe('BatchUpdateException');
      expect(e?.next).toMatchObject({ sqlstate: '23505' });
    }
    expect(stepOf(straight, 'COPY FROM STDIN with a bad row').error?.where).toMatch(/COPY items, line 2/);
    expect(JSON.stringify(stepOf(straight, 'server-side prepare past prepareThreshold').ok)).toContain(
      '"rows":[["1"]]',
    );
    expect(proxied).toEqual(straight);
  });

  it('mirrors every write of a pgjdbc workload on a mapped table: new = up(old) after, outputs identical', async () => {
    const [d, p] = users;
    const before = await unmirrored();
    const [straight, proxied] = await Promise.all([
      run(direct.url, 'workload'),
      run(proxy.url(), 'workload'),
    ]);
    expect(stepOf(straight, 'done')).toBeDefined();
    const batchError = stepOf(
      straight,
      '[reWriteBatchedInserts=true] error mid-batch on the mapped table',
    ).error;
    expect(batchError?.next).toMatchObject({ sqlstate: '23505' });
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

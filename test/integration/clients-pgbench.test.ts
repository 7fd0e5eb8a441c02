// pgbench through the proxy: initialisation (COPY, DDL, VACUUM) and short runs
// in each query mode, every one with zero failed transactions. Throughput is
// measured in bench/, not here.
import { execFile } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freshDatabase, type TestDatabase } from '../support/db.ts';
import { startProxy, type TestProxy } from '../support/proxy.ts';

let db: TestDatabase;
let proxy: TestProxy;

beforeAll(async () => {
  db = await freshDatabase('cbench');
  proxy = await startProxy(db);
});

afterAll(async () => {
  await proxy?.close();
  await db?.drop();
});

function pgbench(args: string[]): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile(
      'pgbench',
      ['-h', '127.0.0.1', '-p', String(proxy.port), '-U', 'postgres', ...args, db.name],
      { env: { ...process.env, PGCONNECT_TIMEOUT: '10' } },
      (err, stdout, stderr) =>
        resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, out: `${stdout}\n${stderr}` }),
    );
  });
}

describe('pgbench', () => {
  it('initialises through the proxy', async () => {
    const r = await pgbench(['-i', '-s', '1', '-q']);
    expect(r.out).toMatch(/done in/);
    expect(r.code).toBe(0);
    const counts = await db.query(
      'SELECT (SELECT count(*) FROM pgbench_accounts)::int AS a, (SELECT count(*) FROM pgbench_branches)::int AS b',
    );
    expect(counts.rows).toEqual([{ a: 100_000, b: 1 }]);
  });

  for (const mode of ['simple', 'extended', 'prepared'] as const) {
    it(`runs -M ${mode} with no failed transactions`, async () => {
      const r = await pgbench(['-M', mode, '-c', '4', '-j', '2', '-T', '3']);
      expect(r.out).toMatch(new RegExp(`query mode: ${mode}`));
      expect(r.out).toMatch(/number of failed transactions: 0 \(0\.000%\)/);
      expect(r.code).toBe(0);
      const done = Number(/number of transactions actually processed: (\d+)/.exec(r.out)?.[1]);
      expect(done).toBeGreaterThan(0);
      // pgbench empties the history before a run and each transaction adds one row: the server saw every one.
      const history = (await db.query('SELECT count(*)::int AS n FROM pgbench_history')).rows[0].n;
      expect(history).toBe(done);
      // The balances moved consistently (history holds this run only, balances every run so far).
      const sums = await db.query(`SELECT
        (SELECT sum(bbalance) FROM pgbench_branches)::bigint AS b,
        (SELECT sum(tbalance) FROM pgbench_tellers)::bigint AS t,
        (SELECT sum(abalance) FROM pgbench_accounts)::bigint AS a`);
      const s = sums.rows[0];
      expect(new Set([s.b, s.t, s.a]).size).toBe(1);
    });
  }
});

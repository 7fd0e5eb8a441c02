// The proxy on Bun's native sockets (src/transport/bun.ts): the real CLI
// started with Bun, clients on the other side of it. The same protocol the
// node:net transport carries must come through unchanged: large results and
// COPY in both directions with their bytes intact, pipelined extended
// queries, pgbench with zero failures, a client vanishing mid-query, and a
// mirrored write.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import pg from 'pg';
import { from as copyFrom, to as copyTo } from 'pg-copy-streams';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { createUsers, ROOT, USERS_MAPPING } from '../support/backfill-fixtures.ts';
import { freshDatabase, type TestDatabase } from '../support/db.ts';
import { type ProxyProcess, startProxyProcess } from '../support/proxy.ts';

const BUN = path.join(ROOT, 'node_modules/.bin/bun');

let db: TestDatabase;
let proxy: ProxyProcess;

beforeAll(async () => {
  if (!existsSync(BUN)) throw new Error(`Bun is a dev dependency: ${BUN} is missing (run npm ci)`);
  db = await freshDatabase('bunsock');
  await createUsers((sql) => db.query(sql), 100);
  proxy = await startProxyProcess(db, { mappings: parse(USERS_MAPPING) }, {}, BUN);
});

afterAll(async () => {
  await proxy?.stop();
  await db?.drop();
});

async function client(url: string): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  return c;
}

const sha = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

describe('switchyard on Bun sockets', () => {
  it('listens and connects with Bun sockets', () => {
    expect(proxy.output()).toMatch(/"sockets":"bun\/bun"/);
  });

  it('a 16 MB result and a 16 MB COPY in each direction arrive byte for byte', async () => {
    const c = await client(proxy.url());
    try {
      const big = await c.query('SELECT repeat(md5(g::text), 1000) AS s FROM generate_series(1, 500) g');
      const direct = await db.query('SELECT repeat(md5(g::text), 1000) AS s FROM generate_series(1, 500) g');
      expect(sha(big.rows.map((r) => r.s).join())).toBe(sha(direct.rows.map((r) => r.s).join()));

      const chunks: Buffer[] = [];
      const out = c.query(
        copyTo("COPY (SELECT g, repeat('x', 1000) FROM generate_series(1, 16000) g) TO STDOUT"),
      );
      for await (const chunk of out) chunks.push(chunk as Buffer);
      const copied = Buffer.concat(chunks);
      expect(copied.length).toBeGreaterThan(16_000_000);

      await c.query('CREATE TABLE bun_copy (g int, s text)');
      await pipeline(
        (async function* () {
          for (let i = 0; i < copied.length; i += 65_536) yield copied.subarray(i, i + 65_536);
        })(),
        c.query(copyFrom('COPY bun_copy FROM STDIN')),
      );
      const back = await db.query('SELECT count(*)::int AS n, sum(length(s))::bigint AS len FROM bun_copy');
      expect(back.rows[0]).toEqual({ n: 16_000, len: '16000000' });
    } finally {
      await c.end();
    }
  });

  it('pipelined extended-protocol queries answer in order, as direct', async () => {
    const via = postgres(proxy.url(), { max: 1, onnotice: () => {} });
    const direct = postgres(db.url, { max: 1, onnotice: () => {} });
    try {
      const run = (sql: postgres.Sql) =>
        Promise.all(
          Array.from({ length: 200 }, (_, i) => sql`SELECT ${i}::int AS i, md5(${String(i)}) AS h`),
        );
      expect(await run(via)).toEqual(await run(direct));
    } finally {
      await via.end();
      await direct.end();
    }
  });

  it('pgbench -M prepared runs with no failed transactions', async () => {
    const r = await new Promise<{ code: number; out: string }>((resolve) =>
      execFile(
        'pgbench',
        ['-h', '127.0.0.1', '-p', String(proxy.port), '-U', 'postgres', '-i', '-s', '1', '-q', db.name],
        () =>
          execFile(
            'pgbench',
            [
              '-h',
              '127.0.0.1',
              '-p',
              String(proxy.port),
              '-U',
              'postgres',
              '-M',
              'prepared',
              '-c',
              '4',
              '-j',
              '2',
              '-T',
              '2',
              db.name,
            ],
            (err, stdout, stderr) => resolve({ code: err ? 1 : 0, out: `${stdout}\n${stderr}` }),
          ),
      ),
    );
    expect(r.out).toMatch(/number of failed transactions: 0 \(0\.000%\)/);
    const done = Number(/number of transactions actually processed: (\d+)/.exec(r.out)?.[1]);
    expect(done).toBeGreaterThan(0);
    expect((await db.query('SELECT count(*)::int AS n FROM pgbench_history')).rows[0].n).toBe(done);
    expect(r.code).toBe(0);
  });

  it('a client that vanishes mid-query costs its backend only', async () => {
    const gone = await client(proxy.url());
    gone.on('error', () => {});
    // The backend checks its socket while it sleeps: it ends as soon as the proxy closes the upstream connection.
    await gone.query("SET client_connection_check_interval = '100ms'");
    const pid = (await gone.query('SELECT pg_backend_pid() AS p')).rows[0].p as number;
    gone.query('SELECT pg_sleep(30)').catch(() => {});
    (gone as unknown as { connection: { stream: { destroy(): void } } }).connection.stream.destroy();
    const deadline = Date.now() + 30_000;
    while ((await db.query('SELECT 1 FROM pg_stat_activity WHERE pid = $1', [pid])).rowCount) {
      if (Date.now() > deadline) throw new Error(`backend ${pid} still there 30 s after its client vanished`);
      await new Promise((r) => setTimeout(r, 50));
    }
    const other = await client(proxy.url());
    expect((await other.query('SELECT 42 AS x')).rows).toEqual([{ x: 42 }]);
    await other.end();
  });

  it('a mirrored write reaches the new table in the same statement', async () => {
    const c = await client(proxy.url());
    try {
      const r = await c.query(
        "INSERT INTO users (id, email, first_name, last_name) VALUES (1000, 'Ada@Example.com', 'Ada', 'L') RETURNING id",
      );
      expect(r.command).toBe('INSERT');
      expect(r.rows).toEqual([{ id: 1000 }]);
      const v2 = await db.query('SELECT id::int, email, full_name FROM users_v2 WHERE id = 1000');
      expect(v2.rows).toEqual([{ id: 1000, email: 'ada@example.com', full_name: 'Ada L' }]);
    } finally {
      await c.end();
    }
  });
});

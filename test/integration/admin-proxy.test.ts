// The admin endpoint on a running proxy: /status follows real connections and
// POST /kill-switch stops and restarts mirroring of real writes.
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AdminStatus } from '../../src/admin/status.ts';
import { freshDatabase, type TestDatabase } from '../support/db.ts';
import { startProxy, type TestProxy } from '../support/proxy.ts';

let db: TestDatabase;
let proxy: TestProxy;
let client: pg.Client;
let admin: string;

async function status(): Promise<AdminStatus> {
  return (await (await fetch(`${admin}/status`)).json()) as AdminStatus;
}

async function mirrored(): Promise<number[]> {
  const r = await db.query<{ id: number }>('SELECT id FROM users_v2 ORDER BY id');
  return r.rows.map((x) => x.id);
}

async function until(check: () => Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + 5000;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

beforeAll(async () => {
  db = await freshDatabase('admin');
  await db.query(`
    CREATE TABLE users (id int PRIMARY KEY, first_name text NOT NULL, last_name text NOT NULL);
    CREATE TABLE users_v2 (id int PRIMARY KEY, full_name text NOT NULL);
  `);
  proxy = await startProxy(
    db,
    {
      mappings: [
        {
          name: 'users-full-name',
          old: 'public.users',
          new: 'public.users_v2',
          key: ['id'],
          up: { id: 'id', full_name: "first_name || ' ' || last_name" },
        },
      ],
    },
    { admin: true },
  );
  admin = proxy.adminUrl!;
  client = new pg.Client({ connectionString: proxy.url() });
  await client.connect();
});

afterAll(async () => {
  await client?.end().catch(() => {});
  await proxy?.close();
  await db?.drop();
});

describe('admin endpoint on a running proxy', () => {
  it('/readyz is 200 with the real upstream and /status counts the open connection', async () => {
    expect((await fetch(`${admin}/readyz`)).status).toBe(200);
    const s = await status();
    expect(s.connections).toBeGreaterThanOrEqual(1);
    expect(s.mappings).toEqual([
      {
        name: 'users-full-name',
        old: 'public.users',
        new: 'public.users_v2',
        dualWrite: true,
        reads: 'old',
        mirroring: true,
      },
    ]);
  });

  it('POST /kill-switch on stops mirroring real writes; clear resumes it', async () => {
    await client.query(`INSERT INTO users VALUES (1, 'Ada', 'Lovelace')`);
    expect(await mirrored()).toEqual([1]);

    const on = await fetch(`${admin}/kill-switch`, { method: 'POST', body: 'on' });
    expect(on.status).toBe(200);
    expect((await status()).mappings[0].mirroring).toBe(false);
    await client.query(`INSERT INTO users VALUES (2, 'Grace', 'Hopper')`);
    expect(await mirrored()).toEqual([1]);
    const users = await db.query('SELECT count(*)::int AS n FROM users');
    expect(users.rows[0].n).toBe(2);
    const metrics = await (await fetch(`${admin}/metrics`)).text();
    expect(metrics).toMatch(/^switchyard_kill_switch 1$/m);
    expect(metrics).toMatch(/^switchyard_mapping_dual_write\{mapping="users-full-name"\} 0$/m);

    const clear = await fetch(`${admin}/kill-switch`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"state":"clear"}',
    });
    expect(clear.status).toBe(200);
    await client.query(`INSERT INTO users VALUES (3, 'Edsger', 'Dijkstra')`);
    expect(await mirrored()).toEqual([1, 3]);
    const row = await db.query(`SELECT full_name FROM users_v2 WHERE id = 3`);
    expect(row.rows[0].full_name).toBe('Edsger Dijkstra');
  });

  it('/status connections drop when the client leaves', async () => {
    const before = (await status()).connections;
    const extra = new pg.Client({ connectionString: proxy.url() });
    await extra.connect();
    await until(async () => (await status()).connections === before + 1, 'the new connection to count');
    await extra.end();
    await until(async () => (await status()).connections === before, 'the connection to close');
  });
});

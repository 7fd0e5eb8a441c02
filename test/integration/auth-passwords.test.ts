// Authentication relayed through the proxy byte for byte: SCRAM-SHA-256, MD5,
// cleartext password and trust. Postgres checks the credentials; a wrong
// password fails with the server's own 28P01.
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AUTH_GROUPS } from '../../src/demo/cluster.ts';
import { freshDatabase, type TestDatabase } from '../support/db.ts';
import { startProxy, type TestProxy } from '../support/proxy.ts';

let db: TestDatabase;
let proxy: TestProxy;
const suffix = randomBytes(3).toString('hex');
const roles = {
  scram: { name: `sy_scram_${suffix}`, password: 'sc"r am:pa/ss' },
  md5: { name: `sy_md5_${suffix}`, password: 'md5-p@ss' },
  password: { name: `sy_clear_${suffix}`, password: 'clear text' },
  trust: { name: `sy_trust_${suffix}`, password: undefined },
};

function lit(s: string): string {
  return `'${s.replaceAll("'", "''")}'`;
}

beforeAll(async () => {
  db = await freshDatabase('auth');
  proxy = await startProxy(db);
  const c = db.direct;
  await c.query(`CREATE ROLE ${roles.scram.name} LOGIN PASSWORD ${lit(roles.scram.password)}`);
  await c.query(`GRANT ${AUTH_GROUPS['scram-sha-256']} TO ${roles.scram.name}`);
  await c.query(`CREATE ROLE ${roles.password.name} LOGIN PASSWORD ${lit(roles.password.password)}`);
  await c.query(`GRANT ${AUTH_GROUPS.password} TO ${roles.password.name}`);
  await c.query("SET password_encryption = 'md5'");
  await c.query(`CREATE ROLE ${roles.md5.name} LOGIN PASSWORD ${lit(roles.md5.password)}`);
  await c.query('RESET password_encryption');
  await c.query(`GRANT ${AUTH_GROUPS.md5} TO ${roles.md5.name}`);
  await c.query(`CREATE ROLE ${roles.trust.name} LOGIN`);
});

afterAll(async () => {
  await proxy?.close();
  await db?.drop();
  // Roles are cluster-wide: remove them once their database is gone.
  const a = new pg.Client({ connectionString: db.url.replace(/\/[^/]*$/, '/postgres') });
  await a.connect();
  for (const r of Object.values(roles)) await a.query(`DROP ROLE IF EXISTS ${r.name}`);
  await a.end();
});

async function login(user: string, password: string | undefined) {
  const c = new pg.Client({ connectionString: proxy.url({ user, password }) });
  c.on('error', () => {});
  try {
    await c.connect();
  } catch (e) {
    return { error: e as pg.DatabaseError };
  }
  const r = await c.query<{ u: string }>('SELECT current_user AS u');
  await c.end();
  return { user: r.rows[0].u };
}

async function storedPassword(role: string): Promise<string> {
  const r = await db.query<{ p: string }>('SELECT rolpassword AS p FROM pg_authid WHERE rolname = $1', [
    role,
  ]);
  return r.rows[0].p;
}

describe('authentication through the proxy', () => {
  it('the roles really use the methods under test', async () => {
    expect(await storedPassword(roles.scram.name)).toMatch(/^SCRAM-SHA-256\$/);
    expect(await storedPassword(roles.md5.name)).toMatch(/^md5[0-9a-f]{32}$/);
    const hba = await db.query<{ m: string; r: string[] }>(
      "SELECT auth_method AS m, user_name AS r FROM pg_hba_file_rules WHERE type = 'host'",
    );
    const method = (group: string) => hba.rows.find((x) => x.r?.includes(`+${group}`))?.m;
    expect(method(AUTH_GROUPS['scram-sha-256'])).toBe('scram-sha-256');
    expect(method(AUTH_GROUPS.md5)).toBe('md5');
    expect(method(AUTH_GROUPS.password)).toBe('password');
  });

  for (const kind of ['scram', 'md5', 'password'] as const) {
    it(`${kind}: the right password connects`, async () => {
      const { name, password } = roles[kind];
      const r = await login(name, password);
      expect(r.error).toBeUndefined();
      expect(r.user).toBe(name);
    });

    it(`${kind}: a wrong password fails with the server's own 28P01`, async () => {
      const { name } = roles[kind];
      const through = await login(name, 'wrong password');
      expect(through.error?.code).toBe('28P01');
      expect(through.error?.severity).toBe('FATAL');
      expect(through.error?.message).toBe(`password authentication failed for user "${name}"`);
      // Word for word what a direct connection gets.
      const direct = new pg.Client({
        connectionString: db.url.replace('postgres@', `${name}:wrong@`),
      });
      direct.on('error', () => {});
      const e = await direct.connect().then(
        () => undefined,
        (err) => err as pg.DatabaseError,
      );
      expect(e?.message).toBe(through.error?.message);
      expect(e?.code).toBe(through.error?.code);
    });
  }

  it('trust: connects without a password', async () => {
    const r = await login(roles.trust.name, undefined);
    expect(r.user).toBe(roles.trust.name);
  });

  it('postgres.js authenticates with SCRAM through the proxy too', async () => {
    const sql = postgres(proxy.url({ user: roles.scram.name, password: roles.scram.password }), { max: 1 });
    try {
      const [row] = await sql`SELECT current_user AS u`;
      expect(row.u).toBe(roles.scram.name);
    } finally {
      await sql.end({ timeout: 5 });
    }
    const bad = postgres(proxy.url({ user: roles.md5.name, password: 'nope' }), { max: 1 });
    const err = await bad`SELECT 1`.catch((e) => e);
    await bad.end({ timeout: 5 });
    expect(err.code).toBe('28P01');
  });
});

import { describe, expect, it } from 'vitest';
import { configSchema } from '../../src/config/schema.ts';
import { upstreamClientConfig } from '../../src/pg/connect.ts';
import type { CompiledMapping } from '../../src/rules/mapping.ts';
import { deleteKeysFunctionName } from '../../src/rules/rowsql.ts';

const cfg = (upstream: Record<string, unknown>) => configSchema.parse({ upstream });

describe('upstreamClientConfig', () => {
  it('uses the URL whole, so its user, password and database apply', () => {
    const c = upstreamClientConfig(cfg({ url: 'postgres://app:secret@db.example:5433/shop' }));
    expect(c.connectionString).toBe('postgres://app:secret@db.example:5433/shop');
    expect(c.host).toBeUndefined();
    expect(c.ssl).toBeUndefined();
  });

  it('uses host and port otherwise, leaving user, password and database to the libpq environment', () => {
    const c = upstreamClientConfig(cfg({ host: '10.0.0.5', port: 6543, connectTimeoutMs: 1234 }));
    expect(c).toMatchObject({ host: '10.0.0.5', port: 6543, connectionTimeoutMillis: 1234 });
    expect(c.user).toBeUndefined();
    expect(c.database).toBeUndefined();
  });

  it('follows sslmode', () => {
    expect(upstreamClientConfig(cfg({ host: 'h', sslmode: 'require' })).ssl).toEqual({
      rejectUnauthorized: false,
    });
    expect(upstreamClientConfig(cfg({ host: 'h', sslmode: 'verify-full' })).ssl).toEqual({
      rejectUnauthorized: true,
    });
  });

  it('lets tests override any setting', () => {
    const c = upstreamClientConfig(cfg({ host: 'h' }), { host: '127.0.0.1', port: 1, user: 'x' });
    expect(c).toMatchObject({ host: '127.0.0.1', port: 1, user: 'x' });
  });
});

describe('deleteKeysFunctionName', () => {
  const mapping = (schema: string, name: string, key = ['id']) =>
    ({ new: { schema, name }, key }) as unknown as CompiledMapping;

  it('is readable, deterministic and depends on the new table and its key only', () => {
    const a = deleteKeysFunctionName(mapping('public', 'users_v2'));
    expect(a).toMatch(/^sy_delete_public_users_v2_[0-9a-f]{8}$/);
    expect(deleteKeysFunctionName(mapping('public', 'users_v2'))).toBe(a);
    expect(deleteKeysFunctionName(mapping('public', 'users_v2', ['id', 'tenant']))).not.toBe(a);
  });

  it('tells apart names whose readable parts collide, and fits 63 bytes', () => {
    expect(deleteKeysFunctionName(mapping('a_b', 'c'))).not.toBe(deleteKeysFunctionName(mapping('a', 'b_c')));
    const long = deleteKeysFunctionName(mapping('sch', 'é'.repeat(60)));
    expect(Buffer.byteLength(long)).toBeLessThanOrEqual(63);
    expect(long).not.toContain('\uFFFD');
    expect(long).not.toBe(deleteKeysFunctionName(mapping('sch', `${'é'.repeat(60)}x`)));
  });
});

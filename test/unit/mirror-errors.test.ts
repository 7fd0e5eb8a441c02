// Attribution of an error on a mirrored write from its ErrorResponse fields.
import { describe, expect, it } from 'vitest';
import { errorFields, mirrorCaused, sqlstateClass } from '../../src/proxy/mirror-errors.ts';
import { errorResponse } from '../../src/wire/writer.ts';

/** An ErrorResponse as the server sends it: type byte, length, fields, terminator. */
function error(fields: Record<string, string>): Buffer {
  const body = Buffer.concat([
    ...Object.entries(fields).map(([k, v]) => Buffer.from(`${k}${v}\0`, 'utf8')),
    Buffer.from([0]),
  ]);
  const head = Buffer.alloc(5);
  head[0] = 0x45;
  head.writeInt32BE(body.length + 4, 1);
  return Buffer.concat([head, body]);
}

const target = { schema: 'public', name: 'users_v2' };

describe('errorFields', () => {
  it('reads code, schema, table, constraint and context', () => {
    expect(
      errorFields(
        error({ S: 'ERROR', C: '23505', M: 'dup', s: 'public', t: 'users', n: 'users_pkey', W: 'ctx' }),
      ),
    ).toEqual({ code: '23505', schema: 'public', table: 'users', constraint: 'users_pkey', where: 'ctx' });
  });

  it('reads what the proxy itself writes', () => {
    expect(errorFields(errorResponse({ severity: 'ERROR', code: '0A000', message: 'no' })).code).toBe(
      '0A000',
    );
  });
});

describe('mirrorCaused', () => {
  it('is true for the new table, the helper schema, and a context naming either', () => {
    expect(mirrorCaused({ code: '23514', schema: 'public', table: 'users_v2' }, target)).toBe(true);
    expect(mirrorCaused({ code: '42883', schema: 'switchyard_mirror' }, target)).toBe(true);
    expect(
      mirrorCaused({ code: 'P0001', where: 'PL/pgSQL function switchyard_mirror.f() line 3' }, target),
    ).toBe(true);
    expect(
      mirrorCaused(
        { code: '40P01', where: 'while inserting index tuple (0,5) in relation "users_v2"' },
        target,
      ),
    ).toBe(true);
  });

  it('is false for the old table, a same-named table in another schema, and errors with no table', () => {
    expect(
      mirrorCaused({ code: '23505', schema: 'public', table: 'users', constraint: 'users_pkey' }, target),
    ).toBe(false);
    expect(mirrorCaused({ code: '23505', schema: 'archive', table: 'users_v2' }, target)).toBe(false);
    expect(mirrorCaused({ code: '22012' }, target)).toBe(false);
    expect(mirrorCaused({ code: '22P02', where: "unnamed portal parameter $2 = '...'" }, target)).toBe(false);
  });
});

describe('sqlstateClass', () => {
  it('is the first two characters of a well-formed SQLSTATE', () => {
    expect(sqlstateClass('23505')).toBe('23');
    expect(sqlstateClass('22P02')).toBe('22');
    expect(sqlstateClass('')).toBe('unknown');
  });
});

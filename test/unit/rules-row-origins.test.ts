// Which output fields of a statement present a switched old column: the pure
// analysis behind the RowDescription restore (rules-rowdesc-origins.test.ts
// holds the result against Postgres itself).
import { beforeAll, describe, expect, it } from 'vitest';
import { type RowOrigins, rowOrigins, type SwitchedColumns } from '../../src/rules/row-origins.ts';
import { loadParser, parseSql } from '../../src/sql/parse.ts';
import { collectRefs } from '../../src/sql/refs.ts';

const USERS: SwitchedColumns = [
  { name: 'id', origin: { table: 500, attnum: 1, typeOid: 23, typmod: -1 } },
  { name: 'n', origin: { table: 500, attnum: 3, typeOid: 1043, typmod: 54 } },
];
const ID = { ...USERS[0].origin, name: 'id' };
const N = { ...USERS[1].origin, name: 'n' };

/** Every read reference to `users` counts as switched. */
function origins(sql: string): RowOrigins | undefined {
  const stmt = parseSql(sql).statements[0];
  const at = new Map<number, SwitchedColumns>();
  for (const r of collectRefs(stmt).refs)
    if (r.name === 'users' && r.use === 'read' && !r.cte) at.set(r.location, USERS);
  return rowOrigins(stmt, at);
}

beforeAll(async () => {
  await loadParser();
});

describe('rowOrigins', () => {
  it('follows *, t.* and column references in output order', () => {
    expect(origins('SELECT * FROM users')).toEqual({ head: [ID, N], tail: null });
    expect(origins('SELECT u.n, 1, u.*, x FROM users u')).toEqual({
      head: [N, null, ID, N, null],
      tail: null,
    });
    expect(origins('SELECT n AS label FROM public.users')).toEqual({
      head: [{ ...N, name: 'label' }],
      tail: null,
    });
  });

  it('places columns around one relation of unknown width from either end', () => {
    expect(origins('SELECT * FROM other JOIN users ON true')).toEqual({ head: [], tail: [ID, N] });
    expect(origins('SELECT users.*, o.* FROM users, other o')).toEqual({ head: [ID, N], tail: [] });
    expect(origins('SELECT * FROM a, users, b')).toBeUndefined();
  });

  it('follows subqueries and CTEs, with their column aliases', () => {
    expect(origins('SELECT s.* FROM (SELECT n, id + 1 FROM users) s(m)')).toEqual({
      head: [{ ...N, name: 'm' }, null],
      tail: null,
    });
    expect(origins('WITH w(k) AS (SELECT id FROM users) SELECT k FROM w')).toEqual({
      head: [{ ...ID, name: 'k' }],
      tail: null,
    });
  });

  it('marks casts, which keep the origin only when they change nothing', () => {
    expect(origins('SELECT id::int4 FROM users')).toEqual({ head: [{ ...ID, cast: true }], tail: null });
  });

  it('claims nothing the parse tree does not settle', () => {
    // Postgres would refuse the name as ambiguous; NATURAL merges unknown columns; set operations have no origin.
    expect(origins('SELECT id FROM users a, users b')).toBeUndefined();
    expect(origins('SELECT * FROM users NATURAL JOIN other')).toBeUndefined();
    expect(origins('SELECT id FROM users UNION SELECT id FROM users')).toBeUndefined();
    expect(origins('SELECT (SELECT u.id) FROM users u')).toBeUndefined();
    expect(origins('SELECT id INTO t2 FROM users')).toBeUndefined();
  });

  it('follows USING joins as Postgres merges them', () => {
    // Inner/left: the left input's column; right: the right's; full: COALESCE, no origin.
    expect(origins('SELECT * FROM users JOIN other USING (id)')).toEqual({ head: [ID, N], tail: [] });
    expect(origins('SELECT id FROM other RIGHT JOIN users USING (id)')).toEqual({ head: [ID], tail: null });
    expect(origins('SELECT id, n FROM other FULL JOIN users USING (id)')).toEqual({
      head: [null, N],
      tail: null,
    });
  });

  it('reads RETURNING lists of writes that read a switched table', () => {
    expect(origins('UPDATE t SET x = u.n FROM users u WHERE u.id = t.id RETURNING u.n, t.x')).toEqual({
      head: [N, null],
      tail: null,
    });
  });
});

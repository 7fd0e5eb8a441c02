// Writes to a mapped old table that cannot be mirrored (COPY, TRUNCATE,
// WHERE CURRENT OF, SQL the parser rejects) follow onUnmirrorable:
// passthrough forwards and counts them, reject answers 0A000 naming the
// mapping and changes nothing.
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import postgres from 'postgres';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { metrics } from '../../src/metrics.ts';
import { freshDatabase, type TestDatabase } from '../support/db.ts';
import { applyConfig, mappingConfig } from '../support/lifecycle.ts';
import type { MappingDefinition } from '../support/mapping-cases.ts';
import { startProxy, type TestProxy } from '../support/proxy.ts';

let db: TestDatabase;
let proxy: TestProxy;

const notes: MappingDefinition = {
  name: 'notes-v2',
  old: 'notes',
  new: 'notes_v2',
  key: ['id'],
  up: { id: 'id', body: 'body' },
  down: { id: 'id', body: 'body' },
};

beforeAll(async () => {
  db = await freshDatabase('unm');
  await db.query(`
    CREATE TABLE notes (id int PRIMARY KEY, body text NOT NULL);
    CREATE TABLE notes_v2 (id int PRIMARY KEY, body text NOT NULL);`);
  proxy = await startProxy(db, mappingConfig([notes]));
});

afterAll(async () => {
  await proxy?.close();
  await db?.drop();
});

beforeEach(async () => {
  await db.query('TRUNCATE notes, notes_v2');
  await db.query(
    "INSERT INTO notes VALUES (1, 'one'), (2, 'two'); INSERT INTO notes_v2 VALUES (1, 'one'), (2, 'two')",
  );
});

async function withClient<T>(f: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: proxy.url() });
  await c.connect();
  try {
    return await f(c);
  } finally {
    await c.end();
  }
}

async function unmirrored(reason: string): Promise<number> {
  const v = (await metrics.unmirroredWrites.get()).values.find(
    (x) => x.labels.mapping === notes.name && x.labels.reason === reason,
  );
  return v?.value ?? 0;
}

async function tables() {
  const o = await db.query('SELECT id, body FROM notes ORDER BY id');
  const n = await db.query('SELECT id, body FROM notes_v2 ORDER BY id');
  return { old: o.rows, new: n.rows };
}

const copyIn = (c: pg.Client) =>
  pipeline(Readable.from(['3\tthree\n', '4\tfour\n']), c.query(copyFrom('COPY notes (id, body) FROM STDIN')));

const whereCurrentOf = async (c: pg.Client) => {
  await c.query('BEGIN');
  await c.query('DECLARE cur CURSOR FOR SELECT id FROM notes WHERE id = 1 FOR UPDATE');
  await c.query('FETCH 1 FROM cur');
  await c.query("UPDATE notes SET body = 'changed' WHERE CURRENT OF cur");
  await c.query('COMMIT');
};

const UNPARSABLE = "UPDATE notes SET body = 'x' WHERE id = 1 WHERE id = 2";

describe('onUnmirrorable: passthrough', () => {
  beforeAll(async () => {
    await applyConfig(proxy, db, mappingConfig([notes], { onUnmirrorable: 'passthrough' }));
  });

  it('COPY into the old table is forwarded, not mirrored, and counted', async () => {
    const before = await unmirrored('copy');
    await withClient(copyIn);
    const t = await tables();
    expect(t.old.map((r) => r.id)).toEqual([1, 2, 3, 4]);
    expect(t.new.map((r) => r.id)).toEqual([1, 2]);
    expect(await unmirrored('copy')).toBe(before + 1);
  });

  it('TRUNCATE is forwarded and counted', async () => {
    const before = await unmirrored('truncate');
    await withClient((c) => c.query('TRUNCATE notes'));
    const t = await tables();
    expect(t.old).toEqual([]);
    expect(t.new).toHaveLength(2);
    expect(await unmirrored('truncate')).toBe(before + 1);
  });

  it('UPDATE ... WHERE CURRENT OF is forwarded and counted', async () => {
    const before = await unmirrored('where_current_of');
    await withClient(whereCurrentOf);
    const t = await tables();
    expect(t.old[0]).toEqual({ id: 1, body: 'changed' });
    expect(t.new[0]).toEqual({ id: 1, body: 'one' });
    expect(await unmirrored('where_current_of')).toBe(before + 1);
  });

  it('SQL the parser rejects is forwarded (Postgres answers the syntax error) and counted', async () => {
    const before = await unmirrored('parse_error');
    const err = await withClient((c) => c.query(UNPARSABLE).catch((e) => e));
    expect(err.code).toBe('42601');
    expect(await unmirrored('parse_error')).toBe(before + 1);
    // The session is still usable and mirrored writes still work.
    await withClient((c) => c.query("INSERT INTO notes VALUES (9, 'nine')"));
    expect((await tables()).new.map((r) => r.id)).toEqual([1, 2, 9]);
  });
});

describe('onUnmirrorable: reject', () => {
  beforeAll(async () => {
    await applyConfig(proxy, db, mappingConfig([notes], { onUnmirrorable: 'reject' }));
  });

  const expectRejected = (e: unknown) => {
    const err = e as { code?: string; message?: string };
    expect(err.code, String(err.message)).toBe('0A000');
    expect(err.message).toContain(notes.name);
  };

  const cases: [string, string, (c: pg.Client) => Promise<unknown>][] = [
    ['COPY FROM STDIN', 'copy', copyIn],
    ['TRUNCATE (simple)', 'truncate', (c) => c.query('TRUNCATE notes')],
    ['TRUNCATE (extended)', 'truncate', (c) => c.query('TRUNCATE notes', [])],
    ['TRUNCATE of both tables', 'truncate', (c) => c.query('TRUNCATE notes_v2, notes')],
    ['unparsable SQL', 'parse_error', (c) => c.query(UNPARSABLE)],
  ];
  for (const [what, reason, f] of cases) {
    it(`${what}: 0A000 naming the mapping, nothing changed, counted`, async () => {
      const before = await tables();
      const n = await unmirrored(reason);
      const err = await withClient((c) =>
        f(c).then(
          () => undefined,
          (e) => e,
        ),
      );
      expectRejected(err);
      expect(await tables()).toEqual(before);
      expect(await unmirrored(reason)).toBe(n + 1);
    });
  }

  it('WHERE CURRENT OF: rejected, and the transaction it was in is aborted', async () => {
    const before = await tables();
    await withClient(async (c) => {
      await c.query('BEGIN');
      await c.query("INSERT INTO notes VALUES (5, 'five')");
      await c.query('DECLARE cur CURSOR FOR SELECT id FROM notes WHERE id = 1 FOR UPDATE');
      await c.query('FETCH 1 FROM cur');
      expectRejected(await c.query("UPDATE notes SET body = 'changed' WHERE CURRENT OF cur").catch((e) => e));
      const next = await c.query('SELECT 1').catch((e) => e);
      expect(next.code).toBe('25P02');
      await c.query('ROLLBACK');
    });
    expect(await tables()).toEqual(before);
  });

  it('in the extended protocol inside a transaction: rejected, aborted, rolled back whole', async () => {
    const before = await tables();
    await withClient(async (c) => {
      await c.query('BEGIN');
      await c.query('INSERT INTO notes VALUES ($1, $2)', [6, 'six']);
      expectRejected(await c.query('TRUNCATE notes', []).catch((e) => e));
      const next = await c.query('SELECT $1::int', [1]).catch((e) => e);
      expect(next.code).toBe('25P02');
      const tx = await c.query('ROLLBACK');
      expect(tx.command).toBe('ROLLBACK');
    });
    expect(await tables()).toEqual(before);
  });

  it('pipelined with other statements (postgres.js): only the rejected one fails, replies stay in order', async () => {
    const sql = postgres(proxy.url(), { max: 1, onnotice: () => {} });
    try {
      const settled = await Promise.allSettled([
        sql.unsafe('INSERT INTO notes VALUES ($1, $2) RETURNING id', [20, 'twenty'], { prepare: true }),
        sql.unsafe('TRUNCATE notes', [], { prepare: true }),
        sql.unsafe('SELECT count(*)::int AS n FROM notes', [], { prepare: true }),
        sql.unsafe('INSERT INTO notes VALUES ($1, $2) RETURNING id', [21, 'twenty-one'], { prepare: true }),
      ]);
      expect(settled.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled', 'fulfilled']);
      expectRejected((settled[1] as PromiseRejectedResult).reason);
      const first = (i: number) => (settled[i] as PromiseFulfilledResult<Record<string, unknown>[]>).value[0];
      expect(first(0).id).toBe(20);
      expect(first(2).n).toBe(3);
      expect(first(3).id).toBe(21);
    } finally {
      await sql.end();
    }
    const t = await tables();
    expect(t.old.map((r) => r.id)).toEqual([1, 2, 20, 21]);
    expect(t.new.map((r) => r.id)).toEqual([1, 2, 20, 21]);
  });

  it('reads and mirrorable writes still pass', async () => {
    await withClient(async (c) => {
      await c.query("INSERT INTO notes VALUES (7, 'seven')");
      expect((await c.query('SELECT count(*)::int AS n FROM notes')).rows[0].n).toBe(3);
    });
    expect((await tables()).new.map((r) => r.id)).toEqual([1, 2, 7]);
  });
});

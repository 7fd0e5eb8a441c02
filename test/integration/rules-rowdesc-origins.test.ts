// A switched read (reads: new) must describe its columns exactly as the same
// statement on the old table does: RowDescription's table OID and attnum name
// the old table and column (drivers derive serial, isAutoIncrement and the
// base table/column from them), with the same type, typmod and format. Every
// field is held next to the one Postgres sends directly, in the simple
// protocol, after Describe of a statement and of a portal, in text and binary.
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RawConn, serialize } from '../fixtures/wire/raw-client.ts';
import { PGJDBC_JAR, requireFile } from '../support/clients.ts';
import { freshDatabase, type TestDatabase } from '../support/db.ts';
import { applyConfig, mappingConfig } from '../support/lifecycle.ts';
import type { MappingDefinition } from '../support/mapping-cases.ts';
import { startProxy, type TestProxy } from '../support/proxy.ts';

const run = promisify(execFile);
const JDBC_SOURCE = path.join(import.meta.dirname, '../fixtures/jdbc/RowMetadata.java');

let db: TestDatabase;
let readsOld: TestProxy;
let readsNew: TestProxy;

const acct: MappingDefinition = {
  name: 'acct',
  old: 'acct',
  new: 'acct_v2',
  key: ['id'],
  up: {
    id: 'id',
    display_name: 'name',
    bal: 'bal',
    at: "at AT TIME ZONE 'UTC'",
    full_name: "first_name || ' ' || last_name",
  },
  down: {
    id: 'id',
    name: 'display_name',
    bal: 'bal',
    at: "at AT TIME ZONE 'UTC'",
    first_name: "split_part(full_name, ' ', 1)",
    last_name: "split_part(full_name, ' ', 2)",
  },
};

beforeAll(async () => {
  db = await freshDatabase('rowdesc');
  // A dropped column leaves a gap in the attnums; the new table renames, splits and retypes.
  await db.query(`
    CREATE TABLE acct (id serial PRIMARY KEY, gone int, name varchar(50) NOT NULL,
                       bal numeric(10,2), at timestamp(3), first_name text, last_name text);
    ALTER TABLE acct DROP COLUMN gone;
    CREATE TABLE acct_v2 (id int PRIMARY KEY, display_name varchar(80), bal numeric,
                          at timestamptz, full_name text);
    CREATE TABLE tag (acct_id int, label varchar(20));
    INSERT INTO acct (name, bal, at, first_name, last_name) VALUES ('a', 1.5, '2024-01-01', 'Ada', 'L');
    INSERT INTO acct_v2 SELECT id, name, bal, at AT TIME ZONE 'UTC', first_name || ' ' || last_name FROM acct;
    INSERT INTO tag VALUES (1, 't1');`);
  readsOld = await startProxy(db, mappingConfig([acct], { reads: 'old' }));
  readsNew = await startProxy(db, mappingConfig([acct], { reads: 'new' }));
});

afterAll(async () => {
  await readsOld?.close();
  await readsNew?.close();
  await db?.drop();
});

interface Field {
  name: string;
  tableOID: number;
  attnum: number;
  typeOID: number;
  typlen: number;
  typmod: number;
  format: number;
}

function rowDescription(body: Buffer): Field[] {
  const n = body.readInt16BE(0);
  const out: Field[] = [];
  let pos = 2;
  for (let i = 0; i < n; i++) {
    const zero = body.indexOf(0, pos);
    const at = zero + 1;
    out.push({
      name: body.toString('utf8', pos, zero),
      tableOID: body.readUInt32BE(at),
      attnum: body.readInt16BE(at + 4),
      typeOID: body.readUInt32BE(at + 6),
      typlen: body.readInt16BE(at + 10),
      typmod: body.readInt32BE(at + 12),
      format: body.readInt16BE(at + 16),
    });
    pos = at + 18;
  }
  return out;
}

type How = 'simple' | 'describe statement' | 'describe portal (text)' | 'describe portal (binary)';

/** The RowDescriptions a text gets (one per statement in the simple protocol), sent the given way on a fresh connection. */
async function describeVia(port: number, sql: string, how: How): Promise<Field[][]> {
  const c = await RawConn.connect(port, port === db.port ? db.host : '127.0.0.1');
  try {
    const hello = await c.startup({ user: 'postgres', database: db.name });
    expect(hello.at(-1)?.type).toBe('Z');
    if (how === 'simple') {
      c.send(serialize.query(sql));
    } else if (how === 'describe statement') {
      c.send(
        serialize.parse({ name: 's1', text: sql }),
        serialize.describe({ type: 'S', name: 's1' }),
        serialize.sync(),
      );
    } else {
      const binary = how === 'describe portal (binary)';
      c.send(
        serialize.parse({ name: '', text: sql }),
        serialize.bind({ portal: 'p1', statement: '', values: [], binary }),
        serialize.describe({ type: 'P', name: 'p1' }),
        serialize.execute({ portal: 'p1' }),
        serialize.sync(),
      );
    }
    const msgs = await c.until('Z', 20_000);
    const err = msgs.find((m) => m.type === 'E');
    if (err) throw new Error(`${sql}: ${err.body.toString('utf8')}`);
    const t = msgs.filter((m) => m.type === 'T');
    if (t.length === 0) throw new Error(`${sql}: no RowDescription (${msgs.map((m) => m.type).join('')})`);
    return t.map((m) => rowDescription(m.body));
  } finally {
    c.end();
  }
}

const QUERIES = [
  'SELECT * FROM acct',
  'SELECT a.* FROM acct a',
  'TABLE acct',
  'SELECT id, name, bal, at, first_name, last_name FROM acct',
  'SELECT last_name, bal, id FROM acct WHERE bal > 0 ORDER BY at DESC, id',
  'SELECT id AS ident, acct.name AS who, public.acct.bal FROM public.acct',
  "SELECT id + 1, upper(name), bal * 2, at::date, first_name || '!' AS shout, count(*) OVER () FROM acct",
  'SELECT a.id, t.label, a.name, t.*, a.bal FROM acct a JOIN tag t ON t.acct_id = a.id',
  'SELECT * FROM acct a JOIN tag t ON t.acct_id = a.id',
  'SELECT * FROM tag t JOIN acct a ON t.acct_id = a.id ORDER BY a.id',
  'SELECT t.*, a.*, 1 AS one FROM tag t, acct a, tag u WHERE a.id = t.acct_id AND u.acct_id = a.id',
  'SELECT * FROM acct a JOIN (SELECT acct_id AS id, label FROM tag) t USING (id)',
  'SELECT * FROM (SELECT id, name AS n, bal + 0 AS b FROM acct) s(ident)',
  'WITH x AS (SELECT * FROM acct WHERE id > 0) SELECT x.id, last_name, x.* FROM x',
  'SELECT id, name FROM acct UNION ALL SELECT id, name FROM acct',
  'SELECT (SELECT max(id) FROM acct) AS top, id FROM acct',
  'SELECT * FROM acct a RIGHT JOIN (SELECT acct_id AS id, label FROM tag) t USING (id)',
  'SELECT * FROM acct a FULL JOIN (SELECT acct_id AS id, label FROM tag) t USING (id)',
  'SELECT id::int, name::varchar(50) AS same_type, name::text FROM acct',
  'SELECT name::varchar, name::varchar(60), bal::numeric(10,2), bal::numeric(12,2), id::int::int4 AS i FROM acct',
  'SELECT s.* FROM (SELECT at::timestamp(3), at::timestamp(0) AS t0 FROM acct) s',
  "INSERT INTO acct (name, first_name, last_name) VALUES ('m', 'M', 'N') RETURNING *",
  'UPDATE acct SET bal = o.bal FROM acct o WHERE o.id = acct.id AND o.id < 0 RETURNING o.id, o.name, acct.name, o.*',
  "UPDATE tag SET label = a.name FROM acct a WHERE a.id = tag.acct_id AND label = 'none' RETURNING a.id, tag.label, a.*",
];

const HOWS: How[] = ['simple', 'describe statement', 'describe portal (text)', 'describe portal (binary)'];

describe('RowDescription of switched reads', () => {
  it('the old table has a gap in its attnums (a dropped column)', async () => {
    const r = await db.query(
      "SELECT attnum FROM pg_attribute WHERE attrelid = 'acct'::regclass AND attname = 'name' AND NOT attisdropped",
    );
    expect(r.rows[0].attnum).toBe(3);
  });

  for (const how of HOWS) {
    for (const sql of QUERIES) {
      it(`${how}: ${sql}`, async () => {
        const direct = await describeVia(db.port, sql, how);
        const old = await describeVia(readsOld.port, sql, how);
        const switched = await describeVia(readsNew.port, sql, how);
        expect(old).toEqual(direct);
        expect(switched).toEqual(direct);
      });
    }
  }

  it('simple protocol, several statements in one Query: each RowDescription as direct', async () => {
    const sql =
      'SELECT 1 AS one; SELECT * FROM acct; SELECT t.*, a.name FROM tag t JOIN acct a ON a.id = t.acct_id';
    const direct = await describeVia(db.port, sql, 'simple');
    expect(direct).toHaveLength(3);
    expect(await describeVia(readsNew.port, sql, 'simple')).toEqual(direct);
  });

  it('a statement prepared before the switch is described as direct after it (re-planned)', async () => {
    const flip = await startProxy(db, mappingConfig([acct], { reads: 'old' }));
    const c = await RawConn.connect(flip.port);
    try {
      await c.startup({ user: 'postgres', database: db.name });
      const sql = 'SELECT a.*, a.id AS again FROM acct a WHERE a.id > $1';
      c.send(serialize.parse({ name: 'p', text: sql }), serialize.sync());
      await c.until('Z', 20_000);
      await applyConfig(flip, db, mappingConfig([acct], { reads: 'new' }));
      c.send(
        serialize.bind({ portal: 'q', statement: 'p', values: ['0'], binary: true }),
        serialize.describe({ type: 'P', name: 'q' }),
        serialize.execute({ portal: 'q' }),
        serialize.describe({ type: 'S', name: 'p' }),
        serialize.sync(),
      );
      const msgs = await c.until('Z', 20_000);
      expect(
        msgs
          .map((m) => m.type)
          .join('')
          .replace(/D+/, ''),
      ).toBe('2TCtTZ');
      const [portal, statement] = msgs.filter((m) => m.type === 'T').map((m) => rowDescription(m.body));
      const [direct] = await describeVia(db.port, sql.replace('$1', '0'), 'describe portal (binary)');
      expect(portal).toEqual(direct);
      expect(statement).toEqual(direct.map((f) => ({ ...f, format: 0 })));
    } finally {
      c.end();
      await flip.close();
    }
  });

  it("node-postgres's fields are the same as direct, simple and extended", async () => {
    const fields = async (url: string) => {
      const c = new pg.Client({ connectionString: url });
      await c.connect();
      try {
        const out = [];
        for (const q of [
          { text: 'SELECT * FROM acct' },
          {
            text: 'SELECT a.name, t.label, a.bal FROM acct a LEFT JOIN tag t ON t.acct_id = a.id WHERE a.id = $1',
            values: [1],
          },
        ]) {
          const r = await c.query(q);
          out.push(
            r.fields.map((f) => [
              f.name,
              f.tableID,
              f.columnID,
              f.dataTypeID,
              f.dataTypeSize,
              f.dataTypeModifier,
              f.format,
            ]),
          );
        }
        return out;
      } finally {
        await c.end();
      }
    };
    const direct = await fields(db.url);
    expect(await fields(readsNew.url())).toEqual(direct);
  });

  it("pgjdbc's ResultSetMetaData is the same as direct (serial, isAutoIncrement, base table and column)", async () => {
    requireFile('pgjdbc', PGJDBC_JAR);
    const meta = async (host: string, port: number) => {
      const url = `jdbc:postgresql://${host}:${port}/${db.name}?user=postgres&prepareThreshold=1`;
      const { stdout } = await run(
        'java',
        [
          '-cp',
          PGJDBC_JAR,
          JDBC_SOURCE,
          url,
          'SELECT * FROM acct',
          'SELECT a.bal, t.label, a.id FROM acct a JOIN tag t ON t.acct_id = a.id',
        ],
        { timeout: 120_000 },
      );
      return stdout.trim().split('\n');
    };
    const direct = await meta(db.host, db.port);
    expect(direct.some((l) => l.startsWith('1|0|id|serial|true|acct|acct|id|public'))).toBe(true);
    expect(await meta('127.0.0.1', readsNew.port)).toEqual(direct);
  }, 300_000);

  it('a switched read names the old table, not the new one or nothing', async () => {
    const r = await db.query<{ o: number; n: number }>(
      "SELECT 'acct'::regclass::oid::int8::float8 AS o, 'acct_v2'::regclass::oid::int8::float8 AS n",
    );
    const [f] = await describeVia(readsNew.port, 'SELECT * FROM acct', 'simple');
    expect(f.map((x) => [x.name, x.tableOID, x.attnum])).toEqual([
      ['id', r.rows[0].o, 1],
      ['name', r.rows[0].o, 3],
      ['bal', r.rows[0].o, 4],
      ['at', r.rows[0].o, 5],
      ['first_name', r.rows[0].o, 6],
      ['last_name', r.rows[0].o, 7],
    ]);
  });
});

// DDL guardrails through the real proxy: notices naming the safe alternative
// (warn), refusals with 0A000 and the alternative in the hint (enforce),
// lock_timeout for DDL from sessions without one, the database deciding what
// only the catalog can tell, and DDL that would break an active mapping.
import pg from 'pg';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { registry } from '../../src/metrics.ts';
import { freshDatabase, type TestDatabase } from '../support/db.ts';
import { applyConfig, mappingConfig } from '../support/lifecycle.ts';
import type { MappingDefinition } from '../support/mapping-cases.ts';
import { startProxy, type TestProxy } from '../support/proxy.ts';

const SCHEMA = `
CREATE TABLE items (id int PRIMARY KEY, v text NOT NULL, note text, size varchar(10), n int);
CREATE TABLE items_v2 (id int PRIMARY KEY, label text NOT NULL);
CREATE TABLE other (id int PRIMARY KEY, a int, b varchar(10), c int);
INSERT INTO other SELECT g, g, 'x', g FROM generate_series(1, 100) g;`;

const items: MappingDefinition = {
  name: 'items-v2',
  old: 'items',
  new: 'items_v2',
  key: ['id'],
  up: { id: 'id', label: 'v' },
  down: { id: 'id', v: 'label' },
};

let db: TestDatabase;
let proxy: TestProxy;
let client: pg.Client;
let notices: { message: string; hint?: string }[] = [];

type Rules = Record<string, 'warn' | 'enforce' | 'off'>;
const configure = (rules: Rules = {}, extra: Record<string, unknown> = {}, switches = {}) =>
  applyConfig(proxy, db, { ...mappingConfig([items], switches), ddl: { rules }, ...extra });

beforeAll(async () => {
  db = await freshDatabase('ddl');
  await db.query(SCHEMA);
  proxy = await startProxy(db, mappingConfig([items]));
  client = new pg.Client({ connectionString: proxy.url() });
  client.on('notice', (n) => notices.push({ message: n.message ?? '', hint: n.hint }));
  await client.connect();
});

afterAll(async () => {
  await client?.end();
  await proxy?.close();
  await db?.drop();
});

beforeEach(async () => {
  await configure();
  await client.query('RESET lock_timeout');
  notices = [];
});

async function counted(rule: string, mode: string): Promise<number> {
  const v = (await registry.getSingleMetric('switchyard_ddl_guard_total')!.get()).values;
  return v.filter((x) => x.labels.rule === rule && x.labels.mode === mode).reduce((s, x) => s + x.value, 0);
}

async function fails(sql: string): Promise<pg.DatabaseError> {
  const e = await client.query(sql).then(
    () => undefined,
    (x: unknown) => x as pg.DatabaseError,
  );
  if (!e) throw new Error(`expected ${sql} to fail`);
  return e;
}

const exists = async (index: string) =>
  (await db.query('SELECT to_regclass($1) IS NOT NULL AS ok', [index])).rows[0].ok as boolean;

describe('warn', () => {
  it('CREATE INDEX without CONCURRENTLY: a notice with the alternative, lock_timeout for the statement only, the tag as direct', async () => {
    const before = await counted('createIndex', 'warn');
    const r = await client.query('CREATE INDEX other_a ON other (a)');
    expect(r.command).toBe('CREATE');
    expect(await exists('other_a')).toBe(true);
    expect(notices.map((n) => n.message)).toEqual([
      'switchyard: lock_timeout was not set; this DDL statement runs with lock_timeout = 3000ms',
      'switchyard: CREATE INDEX without CONCURRENTLY blocks writes to the table until the index is built',
    ]);
    expect(notices[1].hint).toBe('CREATE INDEX CONCURRENTLY (outside a transaction block)');
    expect(await counted('createIndex', 'warn')).toBe(before + 1);
    // The session's own setting is untouched afterwards.
    expect((await client.query('SHOW lock_timeout')).rows[0].lock_timeout).toBe('0');
  });

  it('a session that set lock_timeout gets no lock notice; CONCURRENTLY gets nothing in front', async () => {
    await client.query("SET lock_timeout = '1s'");
    await client.query('CREATE INDEX other_b ON other (b)');
    expect(notices.map((n) => n.message)).toEqual([
      'switchyard: CREATE INDEX without CONCURRENTLY blocks writes to the table until the index is built',
    ]);
    notices = [];
    await client.query('RESET lock_timeout');
    await client.query('CREATE INDEX CONCURRENTLY other_c ON other (c)');
    expect(await exists('other_c')).toBe(true);
    expect(notices).toEqual([]);
  });

  it('constraints without NOT VALID, and SET NOT NULL without a validated CHECK, as the catalog says', async () => {
    await client.query('ALTER TABLE other ADD CONSTRAINT a_pos CHECK (a > 0)');
    await client.query('ALTER TABLE other ADD CONSTRAINT c_pos CHECK (c > 0) NOT VALID');
    expect(notices.filter((n) => n.message.includes('NOT VALID')).length).toBe(1);
    notices = [];
    await client.query('ALTER TABLE other ALTER COLUMN a SET NOT NULL');
    expect(notices.some((n) => n.message.includes('SET NOT NULL on a'))).toBe(true);
    notices = [];
    await client.query('ALTER TABLE other ADD CONSTRAINT c_nn CHECK (c IS NOT NULL) NOT VALID');
    await client.query('ALTER TABLE other VALIDATE CONSTRAINT c_nn');
    notices = [];
    await client.query('ALTER TABLE other ALTER COLUMN c SET NOT NULL');
    expect(notices.filter((n) => n.message.includes('SET NOT NULL'))).toEqual([]);
  });

  it('type changes: only those that rewrite the table; volatile defaults only', async () => {
    const rewrites = async (sql: string) => {
      notices = [];
      await client.query(sql);
      return notices.some((n) => n.message.includes('rewrites'));
    };
    expect(await rewrites('ALTER TABLE other ALTER COLUMN b TYPE varchar(20)')).toBe(false);
    expect(await rewrites('ALTER TABLE other ALTER COLUMN b TYPE text')).toBe(false);
    expect(await rewrites('ALTER TABLE other ALTER COLUMN c TYPE bigint')).toBe(true);
    expect(await rewrites('ALTER TABLE other ADD COLUMN d timestamptz DEFAULT now()')).toBe(false);
    expect(await rewrites('ALTER TABLE other ADD COLUMN e int DEFAULT 0')).toBe(false);
    expect(await rewrites('ALTER TABLE other ADD COLUMN f timestamptz DEFAULT clock_timestamp()')).toBe(true);
  });
});

describe('enforce', () => {
  it('refuses with 0A000 and the alternative in the hint; nothing is created', async () => {
    await configure({ createIndex: 'enforce' });
    const e = await fails('CREATE INDEX other_refused ON other (a)');
    expect(e.code).toBe('0A000');
    expect(e.message).toBe(
      'switchyard: CREATE INDEX without CONCURRENTLY blocks writes to the table until the index is built',
    );
    expect(e.hint).toBe('CREATE INDEX CONCURRENTLY (outside a transaction block)');
    expect(await exists('other_refused')).toBe(false);
    // The extended protocol cannot carry a statement in front: the proxy refuses it itself.
    const ext = await client
      .query({ text: 'CREATE INDEX other_refused2 ON other (a)', values: [] })
      .catch((x: unknown) => x as pg.DatabaseError);
    expect((ext as pg.DatabaseError).code).toBe('0A000');
    expect(await exists('other_refused2')).toBe(false);
  });

  it('lock_timeout enforced: DDL from a session without one is refused, with one it runs', async () => {
    await configure({ lockTimeout: 'enforce', createIndex: 'off' });
    const e = await fails('CREATE INDEX other_lt ON other (a)');
    expect(e.hint).toBe("SET lock_timeout = '3000ms' in the migration session, and retry on a timeout");
    await client.query("SET lock_timeout = '2s'");
    await client.query('CREATE INDEX other_lt ON other (a)');
    expect(await exists('other_lt')).toBe(true);
  });
});

describe('DDL that would break an active mapping', () => {
  it('is refused, naming the mapping, while it mirrors; allowed once it does not', async () => {
    const drop = await fails('DROP TABLE items_v2');
    expect(drop.code).toBe('0A000');
    expect(drop.message).toBe(
      'switchyard: DROP TABLE items_v2 would break mapping items-v2, which uses the new table',
    );
    const rename = await fails('ALTER TABLE items RENAME COLUMN v TO value');
    expect(rename.message).toContain('renaming column v of items would break mapping items-v2');
    const retype = await fails('ALTER TABLE public.items_v2 ALTER COLUMN label TYPE varchar(5)');
    expect(retype.message).toContain('changing the type of column label');
    // A column no expression uses is fine.
    await client.query('ALTER TABLE items DROP COLUMN note');
    // Not mirroring and reading old: the mapping can be taken apart.
    await configure({}, {}, { dualWrite: false });
    await client.query('ALTER TABLE items RENAME COLUMN size TO size_label');
    await client.query('ALTER TABLE items RENAME COLUMN v TO value');
    await client.query('ALTER TABLE items RENAME COLUMN value TO v');
  });
});

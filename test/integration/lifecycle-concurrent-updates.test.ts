// Two clients incrementing the same rows at once through the proxy, each in
// its own transactions: the mirror carries the row image Postgres actually
// stored, so no increment is lost in the new table.
import pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { freshDatabase, type TestDatabase } from '../support/db.ts';
import { checkEqual, compileMapping, mappingConfig, printPlanCache } from '../support/lifecycle.ts';
import type { MappingDefinition } from '../support/mapping-cases.ts';
import { startProxy, type TestProxy } from '../support/proxy.ts';

let db: TestDatabase;
let proxy: TestProxy;

const counters: MappingDefinition = {
  name: 'counters',
  old: 'counters',
  new: 'counters_v2',
  key: ['id'],
  up: { id: 'id', hits: 'n' },
  down: { id: 'id', n: 'hits' },
};

const slots: MappingDefinition = {
  name: 'slots',
  old: 'slots',
  new: 'slots_v2',
  key: ['id'],
  up: { id: 'id', n: 'n' },
  down: { id: 'id', n: 'n' },
};

beforeAll(async () => {
  db = await freshDatabase('lcc');
  await db.query(`
    CREATE TABLE slots (id int PRIMARY KEY, n int NOT NULL);
    CREATE TABLE slots_v2 (id int PRIMARY KEY, n int NOT NULL);
    INSERT INTO slots SELECT g, 0 FROM generate_series(1, 4) g;
    INSERT INTO slots_v2 SELECT g, 0 FROM generate_series(1, 4) g;`);
  await db.query(`
    CREATE TABLE counters (id int PRIMARY KEY, n int NOT NULL);
    CREATE TABLE counters_v2 (id int PRIMARY KEY, hits bigint NOT NULL);
    INSERT INTO counters SELECT g, 0 FROM generate_series(1, 3) g;
    INSERT INTO counters_v2 SELECT g, 0 FROM generate_series(1, 3) g;`);
  proxy = await startProxy(db, mappingConfig([counters, slots]));
});

afterAll(async () => {
  await printPlanCache('lifecycle-concurrent-updates');
  await proxy?.close();
  await db?.drop();
});

const ROUNDS = 60;

it('two clients in transactions incrementing the same rows lose no update in the new table', async () => {
  const seen: number[][] = [[], []];
  const worker = async (i: number) => {
    const c = new pg.Client({ connectionString: proxy.url() });
    await c.connect();
    try {
      for (let r = 0; r < ROUNDS; r++) {
        await c.query('BEGIN');
        // The same lock order in both clients: they wait for each other, never deadlock.
        if (i === 0) {
          const x = await c.query('UPDATE counters SET n = n + 1 WHERE id = 1 RETURNING n');
          seen[i].push(x.rows[0].n);
          await c.query('UPDATE counters SET n = n + 1 WHERE id IN (2, 3)');
        } else {
          const x = await c.query({
            name: 'inc1',
            text: 'UPDATE counters SET n = n + $1 WHERE id = $2 RETURNING n',
            values: [1, 1],
          });
          seen[i].push(x.rows[0].n);
          await c.query({
            name: 'inc23',
            text: 'UPDATE counters SET n = n + 1 WHERE id = ANY($1::int[])',
            values: [[2, 3]],
          });
        }
        await c.query('COMMIT');
      }
    } finally {
      await c.end();
    }
  };
  await Promise.all([worker(0), worker(1)]);

  const old = await db.query('SELECT id, n FROM counters ORDER BY id');
  const neu = await db.query('SELECT id, hits::int AS hits FROM counters_v2 ORDER BY id');
  expect(old.rows).toEqual([1, 2, 3].map((id) => ({ id, n: 2 * ROUNDS })));
  expect(neu.rows).toEqual([1, 2, 3].map((id) => ({ id, hits: 2 * ROUNDS })));
  // Every increment returned a distinct value: the two clients were serialised by the row lock.
  expect([...seen[0], ...seen[1]].sort((a, b) => a - b)).toEqual(
    Array.from({ length: 2 * ROUNDS }, (_, k) => k + 1),
  );
  await checkEqual(db, await compileMapping(db, counters), 'concurrent increments');
});

it('one client moving rows to other keys while another increments them: new follows every move and increment', async () => {
  const increments = new Map<number, number>();
  const mover = async () => {
    const c = new pg.Client({ connectionString: proxy.url() });
    await c.connect();
    try {
      for (let r = 0; r < ROUNDS; r++) {
        const slot = (r % 4) + 1;
        // Flips the key's sign: the new row must move with it (delete the old key, upsert the new one).
        if (r % 2 === 0) await c.query('UPDATE slots SET id = -id WHERE abs(id) = $1', [slot]);
        else await c.query(`BEGIN; UPDATE slots SET id = -id WHERE abs(id) = ${slot}; COMMIT`);
      }
    } finally {
      await c.end();
    }
  };
  const incrementer = async () => {
    const c = new pg.Client({ connectionString: proxy.url() });
    await c.connect();
    try {
      for (let r = 0; r < ROUNDS; r++) {
        const slot = ((r * 3) % 4) + 1;
        const res = await c.query({
          name: 'bump',
          text: 'UPDATE slots SET n = n + 1 WHERE abs(id) = $1',
          values: [slot],
        });
        expect(res.rowCount).toBe(1);
        increments.set(slot, (increments.get(slot) ?? 0) + 1);
      }
    } finally {
      await c.end();
    }
  };
  await Promise.all([mover(), incrementer()]);
  const old = await db.query('SELECT abs(id) AS slot, n FROM slots ORDER BY abs(id)');
  expect(old.rows).toEqual([1, 2, 3, 4].map((slot) => ({ slot, n: increments.get(slot) ?? 0 })));
  await checkEqual(db, await compileMapping(db, slots), 'concurrent key moves and increments');
});

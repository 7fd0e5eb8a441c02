// Canary reads: reads: { new: N } serves reads from new for N percent of
// client sessions, sticky per session, and a flip of N reaches prepared
// statements as any flip does. A marker row that only new has tells which
// table served each read.
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfigText } from '../../src/config/load.ts';
import { registry } from '../../src/metrics.ts';
import { freshDatabase, type TestDatabase } from '../support/db.ts';
import { createItems, ITEMS } from '../support/items.ts';
import { applyConfig, mappingConfig } from '../support/lifecycle.ts';
import { startProxy, type TestProxy } from '../support/proxy.ts';

const MARKER = 424242;
let db: TestDatabase;
let proxy: TestProxy;

const canary = (n: number | 'old' | 'new') => ({
  ...mappingConfig([ITEMS]),
  mappings: [{ ...ITEMS, dualWrite: true, reads: typeof n === 'number' ? { new: n } : n }],
});

/** 1 when the session's read was served by new (only new has the marker). */
const SEES = `SELECT count(*)::int AS n FROM items WHERE id = ${MARKER}`;

beforeAll(async () => {
  db = await freshDatabase('canary');
  await createItems(db);
  await db.query(`INSERT INTO items_v2 VALUES (${MARKER}, 'only in new')`);
  proxy = await startProxy(db, canary(50));
});

afterAll(async () => {
  await proxy?.close();
  await db?.drop();
});

describe('reads: { new: N }', () => {
  it('splits client sessions, and each session stays on its side in every protocol', async () => {
    const sides: number[] = [];
    for (let i = 0; i < 40; i++) {
      const c = new pg.Client({ connectionString: proxy.url() });
      await c.connect();
      try {
        const seen = new Set<number>();
        for (let j = 0; j < 3; j++) {
          seen.add((await c.query(SEES)).rows[0].n);
          seen.add((await c.query({ text: SEES, values: [] })).rows[0].n);
          seen.add((await c.query({ name: 'sees', text: SEES })).rows[0].n);
        }
        expect(seen.size, 'a session read from both tables').toBe(1);
        sides.push([...seen][0]);
      } finally {
        await c.end();
      }
    }
    // 40 sessions at 50%: both sides are all but certain to have some (one in 5e11 otherwise).
    expect(sides.filter((s) => s === 1).length).toBeGreaterThan(0);
    expect(sides.filter((s) => s === 0).length).toBeGreaterThan(0);
    const gauge = (await registry.getSingleMetric('switchyard_mapping_reads_new')!.get()).values;
    expect(gauge.find((v) => v.labels.mapping === ITEMS.name)?.value).toBe(0.5);
  });

  it('a flip 0 -> 100 -> 0 reaches a prepared statement of an open session', async () => {
    await applyConfig(proxy, db, canary(0));
    const c = new pg.Client({ connectionString: proxy.url() });
    await c.connect();
    try {
      const run = async () => (await c.query({ name: 'sees', text: SEES })).rows[0].n;
      expect(await run()).toBe(0);
      await applyConfig(proxy, db, canary(100));
      expect(await run()).toBe(1);
      await applyConfig(proxy, db, canary(0));
      expect(await run()).toBe(0);
    } finally {
      await c.end();
      await applyConfig(proxy, db, canary(50));
    }
  });

  it('refuses a share outside 0..100 and a canary without down', () => {
    const text = (reads: string, down = 'down: { id: id, v: label }') =>
      `upstream: { url: ${db.url} }\nmappings:\n  - { name: m, old: items, new: items_v2, key: [id], up: { id: id, label: v }, ${down}, reads: ${reads} }\n`;
    expect(() => parseConfigText(text('{ new: 101 }'))).toThrow(/reads/);
    expect(() => parseConfigText(text('{ new: 10 }', 'dualWrite: true'))).toThrow(
      /missing required key down/,
    );
    expect(parseConfigText(text('{ new: 10 }')).mappings[0].reads).toEqual({ new: 10 });
  });
});

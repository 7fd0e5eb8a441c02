// Shadow reads through the real proxy: a sampled read served from old runs
// again, switched to new, on the proxy's own connection; a faithful down
// matches, a deliberately wrong down is found, and a read with a side effect
// does not have it twice.
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { registry } from '../../src/metrics.ts';
import { freshDatabase, type TestDatabase } from '../support/db.ts';
import { createItems, ITEMS } from '../support/items.ts';
import { applyConfig, mappingConfig } from '../support/lifecycle.ts';
import { startProxy, type TestProxy } from '../support/proxy.ts';

let db: TestDatabase;
let proxy: TestProxy;
let client: pg.Client;

const shadowed = (down: Record<string, string>) => ({
  ...mappingConfig([ITEMS]),
  mappings: [{ ...ITEMS, down, dualWrite: true, reads: 'old', shadowReads: { sample: 1, maxConcurrent: 1 } }],
});

async function outcomes(): Promise<Record<string, number>> {
  const v = (await registry.getSingleMetric('switchyard_shadow_reads_total')!.get()).values;
  const out: Record<string, number> = {};
  for (const x of v) if (x.labels.mapping === ITEMS.name) out[String(x.labels.result)] = x.value;
  return out;
}

/** Waits until every shadow read offered so far has finished. */
async function settled(): Promise<Record<string, number>> {
  const until = Date.now() + 30_000;
  while (proxy.runtime.shadow.running > 0) {
    if (Date.now() > until) throw new Error('shadow reads still running after 30 s');
    await new Promise((r) => setTimeout(r, 20));
  }
  return outcomes();
}

const delta = (a: Record<string, number>, b: Record<string, number>, k: string) => (b[k] ?? 0) - (a[k] ?? 0);

beforeAll(async () => {
  db = await freshDatabase('shadow');
  await createItems(db);
  await db.query(`CREATE SEQUENCE counter;
    INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 50) g;
    INSERT INTO items_v2 SELECT id, v FROM items;`);
  proxy = await startProxy(db, shadowed(ITEMS.down));
  client = new pg.Client({ connectionString: proxy.url() });
  await client.connect();
});

afterAll(async () => {
  await client?.end();
  await proxy?.close();
  await db?.drop();
});

describe('shadowReads', () => {
  it('a faithful down: the switched read returns the same rows', async () => {
    const before = await settled();
    for (const sql of [
      'SELECT * FROM items ORDER BY id',
      "SELECT v, count(*) FROM items WHERE v LIKE 'item 1%' GROUP BY v",
      'SELECT i.id FROM items i WHERE i.id BETWEEN 3 AND 9',
    ]) {
      await client.query(sql);
      await settled();
    }
    const after = await settled();
    expect(delta(before, after, 'match')).toBe(3);
    expect(delta(before, after, 'mismatch')).toBe(0);
  });

  it('a deliberately wrong down is found (twice, then counted) and logged', async () => {
    await applyConfig(proxy, db, shadowed({ id: 'id', v: 'upper(label)' }));
    const m0 =
      (await registry.getSingleMetric('switchyard_shadow_read_mismatches_total')!.get()).values[0]?.value ??
      0;
    const before = await settled();
    const r = await client.query('SELECT v FROM items WHERE id = 7');
    // The client was served from old, untouched.
    expect(r.rows).toEqual([{ v: 'item 7' }]);
    const after = await settled();
    expect(delta(before, after, 'mismatch')).toBe(1);
    const m1 = (await registry.getSingleMetric('switchyard_shadow_read_mismatches_total')!.get()).values[0]
      ?.value;
    expect(m1).toBe(m0 + 1);
    await applyConfig(proxy, db, shadowed(ITEMS.down));
  });

  it('a read with a side effect runs it once: the shadow runs read-only and fails instead', async () => {
    const before = await settled();
    await client.query("SELECT nextval('counter'), v FROM items WHERE id = 1");
    const after = await settled();
    expect(delta(before, after, 'error')).toBe(1);
    expect((await db.query('SELECT last_value FROM counter')).rows[0].last_value).toBe('1');
  });

  it('shadows an extended-protocol read with its values; not writes, nor reads when sample is 0', async () => {
    const before = await settled();
    const r = await client.query({
      text: 'SELECT * FROM items WHERE id = $1 AND v LIKE $2',
      values: [3, 'item%'],
    });
    expect(r.rows).toEqual([{ id: 3, v: 'item 3' }]);
    const afterRead = await settled();
    expect(delta(before, afterRead, 'match')).toBe(1);
    await applyConfig(proxy, db, shadowed({ id: 'id', v: 'upper(label)' }));
    await client.query({ text: 'SELECT v FROM items WHERE id = $1', values: [4] });
    const afterWrong = await settled();
    expect(delta(afterRead, afterWrong, 'mismatch')).toBe(1);
    await applyConfig(proxy, db, shadowed(ITEMS.down));
    await client.query("UPDATE items SET v = 'changed' WHERE id = 2");
    await applyConfig(proxy, db, {
      ...shadowed(ITEMS.down),
      mappings: [{ ...ITEMS, shadowReads: { sample: 0 } }],
    });
    await client.query('SELECT * FROM items');
    await client.query({ text: 'SELECT * FROM items WHERE id = $1', values: [5] });
    const after = await settled();
    expect(Object.keys(after).reduce((n, k) => n + delta(afterWrong, after, k), 0)).toBe(0);
  });
});

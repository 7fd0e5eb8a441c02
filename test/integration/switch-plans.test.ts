// `switchyard plans` against the real proxy: the reads a client made are kept
// by shape, and each is planned served from old and switched to new; a read
// that an index serves on old but that would scan the new table (which lacks
// that index) is flagged, one that both tables serve alike is not.
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { runCli } from '../support/backfill-fixtures.ts';
import { freshDatabase, type TestDatabase } from '../support/db.ts';
import { createItems, ITEMS } from '../support/items.ts';
import { mappingConfig } from '../support/lifecycle.ts';
import { baseConfig, startProxy, type TestProxy } from '../support/proxy.ts';

let db: TestDatabase;
let proxy: TestProxy;
let configPath: string;

beforeAll(async () => {
  db = await freshDatabase('plans');
  await createItems(db);
  // old has an index on v; new has none on label.
  await db.query(`INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 20000) g;
    INSERT INTO items_v2 SELECT id, v FROM items;
    CREATE INDEX items_v ON items (v);
    ANALYZE items; ANALYZE items_v2;`);
  proxy = await startProxy(db, mappingConfig([ITEMS]), { admin: true });
  configPath = path.join(mkdtempSync(path.join(os.tmpdir(), 'sy-plans-')), 'switchyard.yaml');
  writeFileSync(configPath, stringify(baseConfig(db, mappingConfig([ITEMS]))));
  const c = new pg.Client({ connectionString: proxy.url() });
  await c.connect();
  try {
    for (let i = 1; i <= 5; i++) await c.query(`SELECT id FROM items WHERE v = 'item ${i}'`);
    for (let i = 1; i <= 3; i++) await c.query(`SELECT v FROM items WHERE id = ${i}`);
    // The extended protocol: planned with the values the proxy saw bound, on any version.
    for (let i = 1; i <= 2; i++)
      await c.query({ text: 'SELECT id FROM items WHERE v = $1', values: [`item ${i}`] });
  } finally {
    await c.end();
  }
});

afterAll(async () => {
  await proxy?.close();
  await db?.drop();
});

describe('switchyard plans', () => {
  it('lists the read shapes, most frequent first, and flags the scan the switch would bring', async () => {
    const r = await runCli([
      'plans',
      '--config',
      configPath,
      '--mapping',
      ITEMS.name,
      '--admin',
      proxy.adminUrl!,
      '--json',
    ]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(1);
    const rows = JSON.parse(r.stdout) as {
      sample: string;
      count: number;
      flags: string[];
      old: { nodes: string[] };
    }[];
    expect(rows.map((x) => x.count)).toEqual([5, 3, 2]);
    const [byName, byKey, bound] = rows;
    expect(byName.sample).toMatch(/^SELECT id FROM items WHERE v = 'item \d'$/);
    expect(
      byName.old.nodes.some((n) => n.includes('items_v') || n.startsWith('Index') || n.startsWith('Bitmap')),
    ).toBe(true);
    expect(byName.flags).toEqual(['new Seq Scan on items_v2']);
    // Both tables have a primary key: the point read plans alike.
    expect(byKey.flags).toEqual([]);
    expect(bound.sample).toBe('SELECT id FROM items WHERE v = $1');
    expect(bound.flags).toEqual(['new Seq Scan on items_v2']);
    const text = await runCli([
      'plans',
      '--config',
      configPath,
      '--mapping',
      ITEMS.name,
      '--admin',
      proxy.adminUrl!,
    ]);
    expect(text.stdout).toContain('FLAGGED: new Seq Scan on items_v2');
    expect(text.stdout).toContain('no new scan or sort');
  });

  it('says in one line when the proxy cannot be reached, or the mapping is unknown', async () => {
    const down = await runCli([
      'plans',
      '--config',
      configPath,
      '--mapping',
      ITEMS.name,
      '--admin',
      'http://127.0.0.1:1',
    ]);
    expect(down.code).toBe(2);
    expect(down.stderr.trim().split('\n')).toHaveLength(1);
    expect(down.stderr).toContain("cannot reach the proxy's admin endpoint at http://127.0.0.1:1");
    const unknown = await runCli([
      'plans',
      '--config',
      configPath,
      '--mapping',
      'nope',
      '--admin',
      proxy.adminUrl!,
    ]);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('unknown mapping nope');
  });
});

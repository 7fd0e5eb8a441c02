// `switchyard check` and `verify --direction` through the real CLI: a mapping
// whose down loses information is found before dualWrite: both can hurt, a
// faithful one passes, and verify reports drift each way.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { registry } from '../../src/metrics.ts';
import { type Fixture, runCli, writeConfig } from '../support/backfill-fixtures.ts';
import { freshDatabase, type TestDatabase } from '../support/db.ts';
import { startProxy } from '../support/proxy.ts';

let db: TestDatabase;
let fx: Fixture;

// people: a faithful rename. names: full_name split on the first space (a middle
// name or a space inside a part does not survive). prices: numeric to whole cents.
const MAPPINGS = `
  - name: people
    old: people
    new: people_v2
    key: [person_id]
    up: { person_id: id, display: name, born: born }
    down: { id: person_id, name: display, born: born }
  - name: names
    old: names
    new: names_v2
    key: [id]
    up: { id: id, full_name: "first_name || ' ' || last_name" }
    down: { id: id, first_name: "split_part(full_name, ' ', 1)", last_name: "split_part(full_name, ' ', 2)" }
  - name: prices
    old: prices
    new: prices_v2
    key: [id]
    up: { id: id, cents: "round(price * 100)::bigint" }
    down: { id: id, price: "cents / 100.0" }
  - name: no-down
    old: people
    new: people_v2
    key: [person_id]
    up: { person_id: id, display: name, born: born }
`;

beforeAll(async () => {
  db = await freshDatabase('check');
  await db.query(`
    CREATE TABLE people (id int PRIMARY KEY, name text, born timestamptz);
    CREATE TABLE people_v2 (person_id int PRIMARY KEY, display text, born timestamptz);
    INSERT INTO people SELECT g, 'p' || g, '2000-01-01'::timestamptz + g * interval '1 day' FROM generate_series(1, 50) g;
    INSERT INTO people_v2 SELECT id, name, born FROM people;
    CREATE TABLE names (id int PRIMARY KEY, first_name text NOT NULL, last_name text NOT NULL);
    CREATE TABLE names_v2 (id int PRIMARY KEY, full_name text NOT NULL);
    INSERT INTO names VALUES (1, 'Ada', 'Lovelace'), (2, 'Mary Ann', 'Evans'), (3, 'Grace', 'Hopper');
    INSERT INTO names_v2 VALUES (1, 'Ada Lovelace'), (2, 'Mary Ann Evans'), (3, 'Grace Hopper');
    CREATE TABLE prices (id int PRIMARY KEY, price numeric NOT NULL);
    CREATE TABLE prices_v2 (id int PRIMARY KEY, cents bigint NOT NULL);
    INSERT INTO prices VALUES (1, 1.25), (2, 0.005);
    INSERT INTO prices_v2 VALUES (1, 125), (2, 1);`);
  fx = await writeConfig(db.url, MAPPINGS);
});

afterAll(async () => {
  await fx?.cleanup();
  await db?.drop();
});

const check = (mapping: string, ...more: string[]) =>
  runCli(['check', '--config', fx.configPath, '--mapping', mapping, ...more]);

describe('switchyard check', () => {
  it('a faithful rename round-trips both ways, edge values included (exit 0)', async () => {
    const r = await check('people');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('down(up(old)) = old: every column round-trips (50 sampled rows and');
    expect(r.stdout).toContain('up(down(new)) = new: every column round-trips (50 sampled rows and');
  });

  it('a lossy down is found, with the column, the row and what comes back (exit 1)', async () => {
    const r = await check('names', '--json');
    expect(r.code).toBe(1);
    const report = JSON.parse(r.stdout);
    const old = report.sides.find((s: { side: string }) => s.side === 'old');
    const cols = old.lossy.map((l: { column: string }) => l.column);
    expect(cols).toEqual(['first_name', 'last_name']);
    const first = old.lossy[0];
    // The real row with a middle name, and the generated values with separators.
    expect(first.sampledRows).toBe(1);
    expect(first.examples).toContainEqual({
      source: 'sample',
      key: { id: 2 },
      value: 'Mary Ann',
      back: 'Mary',
    });
    expect(first.edgeValues).toBeGreaterThan(0);
    // Going the other way, 'Mary Ann Evans' -> ('Mary', 'Ann') -> 'Mary Ann': new loses too.
    const nw = report.sides.find((s: { side: string }) => s.side === 'new');
    expect(nw.lossy[0].examples).toContainEqual({
      source: 'sample',
      key: { id: 2 },
      value: 'Mary Ann Evans',
      back: 'Mary Ann',
    });

    const text = await check('names');
    expect(text.code).toBe(1);
    expect(text.stdout).toContain('down(up(old)) = old: 2 columns do not round-trip');
    expect(text.stdout).toContain('row {"id":2}: "Mary Ann" comes back as "Mary"');
  });

  it('a unit change that rounds is found on the sampled row that loses a fraction of a cent', async () => {
    const r = await check('prices', '--json');
    expect(r.code).toBe(1);
    const old = JSON.parse(r.stdout).sides.find((s: { side: string }) => s.side === 'old');
    expect(old.lossy[0].column).toBe('price');
    expect(old.lossy[0].examples[0]).toMatchObject({ source: 'sample', key: { id: 2 } });
  });

  it('errors are one line in the user’s terms, exit 2', async () => {
    const unknown = await check('nope');
    expect(unknown.code).toBe(2);
    expect(unknown.stderr.trim().split('\n')).toHaveLength(1);
    expect(unknown.stderr).toContain('unknown mapping nope');
    const noDown = await check('no-down');
    expect(noDown.code).toBe(2);
    expect(noDown.stderr.trim()).toBe(
      `switchyard check: mapping no-down: check needs down expressions (none in ${fx.configPath})`,
    );
  });
});

describe('verify --direction', () => {
  it('reports drift each way: old-to-new, new-to-old and both', async () => {
    await db.query(`UPDATE people_v2 SET display = 'changed' WHERE person_id = 7;
                    INSERT INTO people_v2 VALUES (999, 'only in new', NULL)`);
    try {
      const fwd = await runCli(['verify', '--config', fx.configPath, '--mapping', 'people']);
      expect(fwd.code).toBe(1);
      expect(fwd.stdout).toContain('drift: 2 rows (missing 0, extra 1, different 1)');
      const back = await runCli([
        'verify',
        '--config',
        fx.configPath,
        '--mapping',
        'people',
        '--direction',
        'new-to-old',
      ]);
      expect(back.code).toBe(1);
      // Seen from new: row 999 is missing in old, row 7 differs in old.
      expect(back.stdout).toContain('"public"."people_v2" -> "public"."people": 51 new rows');
      expect(back.stdout).toContain('drift: 2 rows (missing 1, extra 0, different 1)');
      const both = await runCli([
        'verify',
        '--config',
        fx.configPath,
        '--mapping',
        'people',
        '--direction',
        'both',
        '--repair',
      ]);
      // old-to-new repairs new from old first (7 restored, 999 deleted); new-to-old then finds nothing.
      expect(both.stdout).toContain('repaired: 2, still different after repair: 0');
      expect(both.stdout).toContain('no drift: old matches down(new)');
      expect(both.code).toBe(0);
    } finally {
      await db.query(`DELETE FROM people_v2 WHERE person_id = 999;
                      UPDATE people_v2 SET display = 'p7' WHERE person_id = 7`);
    }
  });

  it('refuses an unknown direction in one line', async () => {
    const r = await runCli([
      'verify',
      '--config',
      fx.configPath,
      '--mapping',
      'people',
      '--direction',
      'sideways',
    ]);
    expect(r.code).toBe(2);
    expect(r.stderr.trim()).toBe(
      'switchyard verify: --direction must be old-to-new, new-to-old, both, not sideways',
    );
  });
});

describe('a proxy running dualWrite: both', () => {
  it('checks the round trip in the background: lossy columns in /status, the metric and the log', async () => {
    const mappings = (parse(MAPPINGS) as { name: string }[])
      .filter((m) => m.name === 'names' || m.name === 'people')
      .map((m) => ({ ...m, dualWrite: 'both' }));
    const proxy = await startProxy(db, { mappings }, { admin: true });
    try {
      type Status = { mappings: { name: string; roundTrip?: { state: string; lossy?: unknown } }[] };
      let status: Status | undefined;
      const until = Date.now() + 30_000;
      for (;;) {
        status = (await (await fetch(`${proxy.adminUrl}/status`)).json()) as Status;
        if (status.mappings.every((m) => m.roundTrip && m.roundTrip.state !== 'checking')) break;
        if (Date.now() > until) throw new Error(`round-trip check did not finish: ${JSON.stringify(status)}`);
        await new Promise((r) => setTimeout(r, 50));
      }
      const by = new Map(status.mappings.map((m) => [m.name, m.roundTrip]));
      expect(by.get('names')).toMatchObject({
        state: 'lossy',
        lossy: { old: ['first_name', 'last_name'], new: ['full_name'] },
      });
      expect(by.get('people')).toMatchObject({ state: 'ok', lossy: { old: [], new: [] } });
      const gauge = (await registry.getSingleMetric('switchyard_mapping_round_trip_lossy_columns')!.get())
        .values;
      const value = (mapping: string, side: string) =>
        gauge.find((v) => v.labels.mapping === mapping && v.labels.side === side)?.value;
      expect([value('names', 'old'), value('names', 'new')]).toEqual([2, 1]);
      expect([value('people', 'old'), value('people', 'new')]).toEqual([0, 0]);
    } finally {
      await proxy.close();
    }
  });
});

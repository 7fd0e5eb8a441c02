// Tables, configs and CLI runs shared by the backfill and verify tests.
import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { parseConfigText } from '../../src/config/load.ts';
import type { Config } from '../../src/config/schema.ts';
import { upstreamClientConfig } from '../../src/pg/connect.ts';
import type { CompiledMapping } from '../../src/rules/mapping.ts';
import { qualified, upTypedSelect } from '../../src/rules/rowsql.ts';
import { compileRules } from '../../src/rules/ruleset.ts';

export const ROOT = path.resolve(import.meta.dirname, '../..');

/** users -> users_v2: rename, computed merge, int -> bigint key. */
export const USERS_MAPPING = `
  - name: users
    old: public.users
    new: public.users_v2
    key: [id]
    up:
      id: id
      email: lower(email)
      full_name: first_name || ' ' || last_name
      version: version
`;

export async function createUsers(q: (sql: string) => Promise<unknown>, rows: number): Promise<void> {
  await q(`
    CREATE TABLE users (id int PRIMARY KEY, email text, first_name text, last_name text, version int NOT NULL DEFAULT 0);
    CREATE TABLE users_v2 (id bigint PRIMARY KEY, email text, full_name text, version int NOT NULL,
                           migrated_at timestamptz DEFAULT now());
    INSERT INTO users SELECT g, 'User' || g || '@Example.com', 'first' || g, 'last' || g FROM generate_series(1, ${rows}) g;
    ANALYZE users;`);
}

/** order_lines -> order_lines_v2: a composite key, renamed key column, a type change with a cast. */
export const LINES_MAPPING = `
  - name: lines
    old: order_lines
    new: order_lines_v2
    key: [order_id, line]
    up:
      order_id: order_id
      line: line_no
      sku: upper(sku)
      quantity: qty::numeric(10,2)
`;

export async function createLines(q: (sql: string) => Promise<unknown>, orders: number, perOrder: number) {
  await q(`
    CREATE TABLE order_lines (order_id int, line_no smallint, sku text, qty int, PRIMARY KEY (order_id, line_no));
    CREATE TABLE order_lines_v2 (order_id bigint, line int, sku text, quantity numeric(10,2),
                                 PRIMARY KEY (order_id, line));
    INSERT INTO order_lines SELECT o, l, 'sku-' || (o * l % 97), o % 13 + l
      FROM generate_series(1, ${orders}) o, generate_series(1, ${perOrder}) l;
    ANALYZE order_lines;`);
}

export interface Fixture {
  dir: string;
  configPath: string;
  config: Config;
  mappings: Map<string, CompiledMapping>;
  clientConfig: pg.ClientConfig;
  cleanup(): Promise<void>;
}

export async function writeConfig(url: string, mappingsYaml: string): Promise<Fixture> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'sy-bf-'));
  const text = `upstream:\n  url: ${url}\nmappings:${mappingsYaml}`;
  const configPath = path.join(dir, 'switchyard.yaml');
  await fs.writeFile(configPath, text);
  const config = parseConfigText(text);
  const rules = await compileRules(config, { installHelpers: false });
  return {
    dir,
    configPath,
    config,
    mappings: new Map(rules.mappings.map((m) => [m.name, m])),
    clientConfig: upstreamClientConfig(config, { application_name: 'switchyard-test' }),
    cleanup: () => fs.rm(dir, { recursive: true, force: true }),
  };
}

/** Rows in exactly one of up(old) and new (over the up columns): 0 means new = up(old). */
export async function mismatches(
  q: (sql: string) => Promise<{ rows: { n: number }[] }>,
  m: CompiledMapping,
): Promise<number> {
  const up = upTypedSelect(m, `SELECT * FROM ${qualified(m.old)}`);
  const cols = m.up.map((u) => `"${u.column}"`).join(', ');
  const nw = `SELECT ${cols} FROM ${qualified(m.new)}`;
  const r = await q(`SELECT ((SELECT count(*) FROM (${up} EXCEPT ALL ${nw}) a) +
                             (SELECT count(*) FROM (${nw} EXCEPT ALL ${up}) b))::int AS n`);
  return r.rows[0].n;
}

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export function spawnCli(args: string[]): { child: ChildProcess; done: Promise<CliResult> } {
  const child = spawn(process.execPath, [path.join(ROOT, 'bin/switchyard.js'), ...args], {
    cwd: ROOT,
    env: { ...process.env, NO_COLOR: '1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d) => {
    stdout += d;
  });
  child.stderr!.on('data', (d) => {
    stderr += d;
  });
  const done = new Promise<CliResult>((resolve) => {
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
  return { child, done };
}

export function runCli(args: string[]): Promise<CliResult> {
  return spawnCli(args).done;
}

/** The JSON log lines of a CLI run (stderr when not on a terminal). */
export function logLines(stderr: string): Record<string, unknown>[] {
  return stderr
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l));
}

/**
 * A column migration inside one table: first_name + last_name -> full_name,
 * price (dollars) -> price_cents. YAML for writeConfig and the definition for
 * the test proxy (mappingConfig).
 */
export const COLUMNS_DEFINITION = {
  name: 'user-columns',
  old: 'public.users',
  new: 'public.users',
  key: ['id'],
  up: { full_name: "first_name || ' ' || last_name", price_cents: 'round(price * 100)::bigint' },
  down: {
    first_name: "split_part(full_name, ' ', 1)",
    last_name: "split_part(full_name, ' ', 2)",
    price: 'price_cents / 100.0',
  },
};

export const COLUMNS_MAPPING = `
  - name: user-columns
    old: public.users
    new: public.users
    key: [id]
    up:
      full_name: first_name || ' ' || last_name
      price_cents: round(price * 100)::bigint
    down:
      first_name: split_part(full_name, ' ', 1)
      last_name: split_part(full_name, ' ', 2)
      price: price_cents / 100.0
`;

export async function createPricedUsers(q: (sql: string) => Promise<unknown>, rows: number): Promise<void> {
  await q(`
    CREATE TABLE users (id int PRIMARY KEY, first_name text NOT NULL, last_name text NOT NULL,
                        price numeric(10,2) NOT NULL, full_name text, price_cents bigint);
    INSERT INTO users (id, first_name, last_name, price)
      SELECT g, 'first' || g, 'last' || g, (g % 100000) / 100.0 FROM generate_series(1, ${rows}) g;
    ANALYZE users;`);
  await resetPricedUsers(q);
}

/**
 * Puts the new columns back to the state before any backfill: id % 4 = 0 in
 * step, 1 both empty, 2 price_cents empty, 3 both stale. 3 rows in 4 differ.
 */
export async function resetPricedUsers(q: (sql: string) => Promise<unknown>): Promise<void> {
  await q(`
    UPDATE users SET
      full_name = CASE id % 4 WHEN 0 THEN first_name || ' ' || last_name WHEN 2 THEN first_name || ' ' || last_name
                              WHEN 3 THEN 'stale name' END,
      price_cents = CASE id % 4 WHEN 0 THEN round(price * 100)::bigint WHEN 3 THEN -1 END`);
  await q('VACUUM ANALYZE users');
}

/** Rows whose new columns are not up(row), by an independent SQL check: 0 means in step. */
export async function columnsOutOfStep(q: (sql: string) => Promise<{ rows: { n: number }[] }>) {
  const r = await q(`SELECT count(*)::int AS n FROM users
    WHERE full_name IS DISTINCT FROM first_name || ' ' || last_name
       OR price_cents IS DISTINCT FROM round(price * 100)::bigint`);
  return r.rows[0].n;
}

/**
 * Kills a backfill CLI run with SIGKILL once its checkpoints count `rows`
 * scanned for `mapping` (or it ended by itself), then waits until the server
 * has no backend of it left: the server finishes and commits a batch in
 * flight when its client dies, so the checkpoint is read only after that.
 */
export async function killBackfillAfter(
  url: string,
  run: ReturnType<typeof spawnCli>,
  mapping: string,
  rows: number,
): Promise<CliResult> {
  const watcher = new pg.Client({ connectionString: url });
  await watcher.connect();
  try {
    for (;;) {
      const r = await watcher
        .query(
          `SELECT coalesce(sum(rows_scanned), 0)::int AS n FROM switchyard.backfill_chunks WHERE mapping = $1`,
          [mapping],
        )
        .catch(() => ({ rows: [{ n: 0 }] })); // not planned yet
      if (r.rows[0].n >= rows || run.child.exitCode !== null) break;
      await new Promise((res) => setTimeout(res, 20));
    }
  } finally {
    // Killed here whatever happens, so that a failing test leaves no copier behind.
    run.child.kill('SIGKILL');
  }
  const killed = await run.done;
  try {
    for (let i = 0; ; i++) {
      const r = await watcher.query(
        `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'switchyard-backfill'`,
      );
      if (r.rows[0].n === 0) break;
      if (i > 1500) throw new Error('the killed backfill left backends behind for 30 s');
      await new Promise((res) => setTimeout(res, 20));
    }
  } finally {
    await watcher.end();
  }
  return killed;
}

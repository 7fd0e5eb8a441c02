// Client programs in other languages (test/clients/), run once straight on
// Postgres and once through the proxy, each printing one canonical JSON line
// per step. A client that is not installed fails the test with what to install:
// CI installs them (scripts/setup-test-deps.sh), nothing is skipped.
// SWITCHYARD_CLIENT_DUMP=FILE appends every program's output there, to read.
import { spawn, spawnSync } from 'node:child_process';
import { appendFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import { parse } from 'yaml';
import { qualified, upsertSql } from '../../src/rules/rowsql.ts';
import { createUsers, mismatches, USERS_MAPPING } from './backfill-fixtures.ts';
import type { TestDatabase } from './db.ts';
import { compileMapping } from './lifecycle.ts';
import type { MappingDefinition } from './mapping-cases.ts';

export const CLIENTS_DIR = path.resolve(import.meta.dirname, '../clients');
export const PGJDBC_JAR = process.env.SWITCHYARD_PGJDBC_JAR ?? '/usr/share/java/postgresql.jar';
const SETUP = 'run scripts/setup-test-deps.sh (npm test does) to install the client test dependencies';

/** Throws, naming what is missing, unless `cmd args` runs and exits 0. */
export function requireClient(what: string, cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 60_000 });
  if (r.error || r.status !== 0) {
    const why = r.error?.message ?? (r.stderr || r.stdout).trim().split('\n').slice(-1)[0];
    throw new Error(`${what} is not available (${cmd} ${args.join(' ')}: ${why}); ${SETUP}`);
  }
  return r.stdout.trim();
}

export function requireFile(what: string, file: string): void {
  if (!existsSync(file)) throw new Error(`${what} is not available (no ${file}); ${SETUP}`);
}

/**
 * The Python that has psycopg 3: SWITCHYARD_TEST_PYTHON, else python3 on PATH,
 * else the system's (where Debian's python3-psycopg lands).
 */
export function pythonWithPsycopg(): string {
  const tried: string[] = [];
  const candidates = process.env.SWITCHYARD_TEST_PYTHON
    ? [process.env.SWITCHYARD_TEST_PYTHON]
    : ['python3', '/usr/bin/python3'];
  for (const py of candidates) {
    const r = spawnSync(py, ['-c', 'import psycopg; print(psycopg.__version__)'], {
      encoding: 'utf8',
      timeout: 60_000,
    });
    if (!r.error && r.status === 0) return py;
    tried.push(`${py}: ${r.error?.message ?? r.stderr.trim().split('\n').slice(-1)[0]}`);
  }
  throw new Error(`psycopg 3 is not available (${tried.join('; ')}); ${SETUP}`);
}

export interface StepLine {
  step: string;
  ok?: unknown;
  error?: Record<string, unknown>;
  tx?: string;
  [k: string]: unknown;
}

/** Runs a client program to its end; its stdout as parsed lines. A non-zero exit is an error with its stderr. */
export function runClient(cmd: string, args: string[], timeoutMs = 180_000): Promise<StepLine[]> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => {
      out += d;
    });
    child.stderr.on('data', (d) => {
      err += d;
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (process.env.SWITCHYARD_CLIENT_DUMP)
        appendFileSync(process.env.SWITCHYARD_CLIENT_DUMP, `# ${args.join(' ')}\n${out}`);
      if (code !== 0) {
        reject(
          new Error(`${cmd} ${args.join(' ')} exited ${code ?? signal}:\n${err}\n--- stdout ---\n${out}`),
        );
        return;
      }
      resolve(
        out
          .split('\n')
          .filter((l) => l.trim() !== '')
          .map((l) => JSON.parse(l) as StepLine),
      );
    });
  });
}

/** One step's line by name, failing clearly when the program did not print it. */
export function stepOf(lines: StepLine[], name: string): StepLine {
  const l = lines.find((x) => x.step === name);
  if (!l) throw new Error(`no step "${name}" in the client's output`);
  return l;
}

/** The users -> users_v2 mapping of the backfill fixtures, as a proxy config mapping. */
export const USERS_DEFINITION = (parse(`mappings:${USERS_MAPPING}`) as { mappings: MappingDefinition[] })
  .mappings[0];

/** The users tables with `rows` rows, backfilled (new = up(old)) so that any drift later is the workload's. */
export async function usersBackfilled(db: TestDatabase, rows: number) {
  await createUsers((s) => db.query(s), rows);
  const m = await compileMapping(db, USERS_DEFINITION);
  await db.query(upsertSql(m, `SELECT * FROM ${qualified(m.old)}`));
  return {
    mapping: m,
    drift: () => mismatches((s) => db.query(s) as Promise<{ rows: { n: number }[] }>, m),
  };
}

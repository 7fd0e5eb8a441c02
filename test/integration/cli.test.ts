// The command line as a user meets it: help, unknown commands, bad configs.
import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freshDatabase, type TestDatabase } from '../support/db.ts';

const BIN = path.resolve(import.meta.dirname, '../../bin/switchyard.js');

function run(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { timeout: 30_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

function configFile(text: string): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'sy-cli-'));
  const f = path.join(dir, 'switchyard.yaml');
  writeFileSync(f, text);
  return f;
}

describe('switchyard CLI', () => {
  it('--help lists every command and exits 0', async () => {
    const r = await run(['--help']);
    expect(r.code).toBe(0);
    for (const cmd of ['proxy', 'backfill', 'verify', 'status', 'switch', 'demo'])
      expect(r.stdout).toContain(`switchyard ${cmd}`);
  });

  it('--version prints the package version', async () => {
    const r = await run(['--version']);
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toMatch(/^\d+\.\d+\.\d+/);
  });

  it('an unknown command is a one-line error with exit 2', async () => {
    const r = await run(['frobnicate']);
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toContain('unknown command frobnicate');
  });

  it('proxy --help explains the command and exits 0', async () => {
    const r = await run(['proxy', '--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('Usage: switchyard proxy --config FILE');
  });

  it('proxy without --config is a usage error', async () => {
    const r = await run(['proxy']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('--config FILE is required');
  });

  it('proxy with a config that fails validation names the key and exits 2', async () => {
    const f = configFile('upstream: { host: 127.0.0.1, port: 5432 }\nlisten: { port: 6432, colour: blue }\n');
    const r = await run(['proxy', '--config', f]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/listen: unknown key colour/);
  });

  it('proxy with a missing config file says so', async () => {
    const r = await run(['proxy', '--config', '/nonexistent/switchyard.yaml']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/cannot read \/nonexistent\/switchyard.yaml: ENOENT/);
  });

  it('proxy with an unset environment reference names the variable', async () => {
    // biome-ignore lint/suspicious/noTemplateCurlyInString: a literal ${ENV} reference in a config file
    const yaml = 'upstream: { url: "postgres://app:${SY_TEST_UNSET_PASSWORD}@127.0.0.1:5432/app" }\n';
    const f = configFile(yaml);
    const r = await run(['proxy', '--config', f]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('environment variable not set: SY_TEST_UNSET_PASSWORD');
  });
});

describe('switchyard proxy: config errors in the words of the config file', () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await freshDatabase('cliwords');
    await db.query(`CREATE TABLE users (id int PRIMARY KEY, email text, first_name text);
                    CREATE TABLE users_v2 (id int PRIMARY KEY, email text, full_name text)`);
  });
  afterAll(async () => {
    await db?.drop();
  });

  const config = (mapping: string) =>
    `upstream: { url: "${db.url}" }\nlisten: { host: 127.0.0.1, port: 0 }\nadmin: { host: 127.0.0.1, port: 0 }\n` +
    `mappings:\n  - name: users-v2\n    old: users\n    new: users_v2\n${mapping}`;

  /** The one line a user reads, without the file path prefix; stdout stays empty (printed once). */
  async function refusal(mapping: string): Promise<string> {
    const f = configFile(config(mapping));
    const r = await run(['proxy', '--config', f]);
    const seen = `exit ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`;
    expect(r.code, seen).toBe(2);
    expect(r.stdout, seen).toBe('');
    const lines = r.stderr.trim().split('\n');
    expect(lines, seen).toHaveLength(1);
    const prefix = `switchyard proxy: invalid config ${f}: `;
    expect(lines[0].startsWith(prefix), lines[0]).toBe(true);
    return lines[0].slice(prefix.length);
  }

  it('a bad up expression quotes the expression as written, not the SQL built around it', async () => {
    expect(await refusal('    key: [id]\n    up: { id: id, full_name: "first_name ||" }\n')).toBe(
      'mapping users-v2: up expression "first_name ||" for column full_name is not valid SQL: syntax error at end of input',
    );
    expect(await refusal('    key: [id]\n    up: { id: id, full_name: "lower(" }\n')).toBe(
      'mapping users-v2: up expression "lower(" for column full_name is not valid SQL: syntax error at end of input',
    );
  });

  it('an expression over a column the old table lacks', async () => {
    expect(await refusal('    key: [id]\n    up: { id: id, full_name: fist_name }\n')).toBe(
      'mapping users-v2: up expression "fist_name" for column full_name: column "fist_name" does not exist',
    );
  });

  it('an unknown key names the mapping', async () => {
    expect(await refusal('    key: [id]\n    colour: blue\n    up: { id: id }\n')).toBe(
      'mapping users-v2: unknown key colour',
    );
  });

  it('a missing required key says what it holds', async () => {
    expect(await refusal('    up: { id: id }\n')).toBe(
      "mapping users-v2: missing required key key: expected a list of the new table's key columns, such as [id]",
    );
  });

  it('a wrong type says what was expected and what was found', async () => {
    expect(await refusal('    key: id\n    up: { id: id }\n')).toBe(
      `mapping users-v2: key: expected a list of the new table's key columns, such as [id], got the string "id"`,
    );
  });

  it('reads: new without down', async () => {
    expect(await refusal('    key: [id]\n    reads: new\n    up: { id: id }\n')).toBe(
      'mapping users-v2: missing required key down: reads: new serves reads from the new table, so every old column needs an SQL expression over the new row',
    );
  });

  it('an unknown column in the catalog check is printed once', async () => {
    expect(await refusal('    key: [id]\n    up: { id: id, fulname: first_name }\n')).toBe(
      'mapping users-v2: up column fulname does not exist in "public"."users_v2"',
    );
  });
});

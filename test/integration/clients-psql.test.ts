// psql through the proxy: a multi-statement script with -f, \copy in both
// directions, and an error under ON_ERROR_STOP.
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freshDatabase, type TestDatabase } from '../support/db.ts';
import { startProxy, type TestProxy } from '../support/proxy.ts';

let db: TestDatabase;
let proxy: TestProxy;
const dir = mkdtempSync(path.join(os.tmpdir(), 'sy-psql-'));

beforeAll(async () => {
  db = await freshDatabase('cpsql');
  proxy = await startProxy(db);
});

afterAll(async () => {
  await proxy?.close();
  await db?.drop();
});

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function psql(args: string[], input?: string): Promise<Run> {
  return new Promise((resolve) => {
    const child = execFile(
      'psql',
      [proxy.url(), '-X', '-q', '-v', 'ON_ERROR_STOP=1', ...args],
      { env: { ...process.env, PGCONNECT_TIMEOUT: '10' }, cwd: dir },
      (err, stdout, stderr) => {
        resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
      },
    );
    if (input !== undefined) child.stdin!.end(input);
  });
}

function script(name: string, text: string): string {
  const p = path.join(dir, name);
  writeFileSync(p, text);
  return p;
}

describe('psql', () => {
  it('runs a multi-statement file with -f', async () => {
    const f = script(
      'setup.sql',
      `CREATE TABLE notes (id int PRIMARY KEY, body text);
INSERT INTO notes VALUES (1, 'first'), (2, 'second');
INSERT INTO notes VALUES (3, 'third'); UPDATE notes SET body = upper(body) WHERE id = 2;
SELECT id, body FROM notes ORDER BY id;
DO $$BEGIN RAISE NOTICE 'script done'; END$$;
`,
    );
    const r = await psql(['-A', '-t', '-f', f]);
    expect(r.stderr).toMatch(/NOTICE:\s+script done/);
    expect(r.code).toBe(0);
    expect(r.stdout.trim().split('\n')).toEqual(['1|first', '2|SECOND', '3|third']);
  });

  it('\\copy to a file and back from it', async () => {
    const out = path.join(dir, 'notes.tsv');
    const r1 = await psql(['-c', `\\copy (SELECT id + 100, body FROM notes ORDER BY id) TO '${out}'`]);
    expect(r1.code).toBe(0);
    expect(readFileSync(out, 'utf8')).toBe('101\tfirst\n102\tSECOND\n103\tthird\n');
    const r2 = await psql(['-c', `\\copy notes FROM '${out}'`]);
    expect(r2.code).toBe(0);
    const r = await db.query('SELECT count(*)::int AS n, sum(id)::int AS s FROM notes');
    expect(r.rows).toEqual([{ n: 6, s: 6 + 306 }]);
  });

  it('\\copy from stdin inside a script', async () => {
    const f = script(
      'copy-in.sql',
      `\\copy notes FROM stdin
201\tfrom stdin
202\t\\N
\\.
SELECT count(*) FILTER (WHERE body IS NULL) AS nulls, count(*) AS total FROM notes;
`,
    );
    const r = await psql(['-A', '-t', '-f', f]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toBe('1|8');
  });

  it('an error with ON_ERROR_STOP: non-zero exit, the server message, later statements not run', async () => {
    const f = script(
      'fail.sql',
      `INSERT INTO notes VALUES (300, 'before');
INSERT INTO notes VALUES (1, 'duplicate');
INSERT INTO notes VALUES (301, 'after');
`,
    );
    const r = await psql(['-f', f]);
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/ERROR:\s+duplicate key value violates unique constraint "notes_pkey"/);
    expect(r.stderr).toMatch(/DETAIL:\s+Key \(id\)=\(1\) already exists\./);
    const ids = await db.query('SELECT id FROM notes WHERE id >= 300 ORDER BY id');
    expect(ids.rows).toEqual([{ id: 300 }]);
  });

  it('a syntax error in piped input reports the server position', async () => {
    const r = await psql([], 'SELECT 1;\nSELEC 2;\nSELECT 3;\n');
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/ERROR:\s+syntax error at or near "SELEC"/);
    expect(r.stderr).toMatch(/LINE 1: SELEC 2;/);
  });
});

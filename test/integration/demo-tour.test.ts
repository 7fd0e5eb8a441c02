// `switchyard demo`, the README's first command, run as a newcomer runs it: the
// real CLI in a child process. It must finish the whole tour with every check
// passing and leave no Postgres and no files behind.
import { execFileSync, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const BIN = path.resolve(import.meta.dirname, '../../bin/switchyard.js');

/** Command lines of running processes that mention `needle` (pgrep -f, without matching pgrep itself). */
function processesMentioning(needle: string): string[] {
  try {
    return execFileSync('pgrep', ['-af', needle], { encoding: 'utf8' }).trim().split('\n').filter(Boolean);
  } catch {
    return []; // pgrep exits 1 when nothing matches
  }
}

describe('switchyard demo', () => {
  it('runs the whole migration tour, checks each step and stops everything it started', async () => {
    const child = spawn(process.execPath, [BIN, 'demo'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => {
      out += d;
    });
    child.stderr.on('data', (d) => {
      out += d;
    });
    const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
    expect(out).not.toContain('NOT AVAILABLE');
    expect(out).not.toContain('FAILED');
    expect(code, out).toBe(0);

    const root = /Everything lives in (\S+) and is removed/.exec(out)?.[1];
    const dataDir = /data directory (\S+)/.exec(out)?.[1];
    expect(root, out).toBeTruthy();
    expect(dataDir?.startsWith(root!), out).toBe(true);

    for (let i = 1; i <= 10; i++) expect(out).toContain(`[${i}/10]`);
    expect(out).toMatch(/\$ psql "postgres:\/\/postgres@127\.0\.0\.1:\d+\/shop"/);
    expect(out).toMatch(/RETURNING id\s+-> INSERT 0 2 /);
    expect(out).toContain('ok: every write reached users_v2');
    expect(out).toMatch(/\[#{30}\]\s+100\.0%\s+[\d,]+\/[\d,]+ rows/);
    expect(out).toContain('ok: verify found no drift');
    expect(out).toContain('mapping users-full-name reads old -> new');
    expect(out).toContain('ok: served from users_v2');
    expect(out).toContain('ok: the write went to users only');
    expect(out).toMatch(/ok: verify found exactly the row written under the kill switch/);
    expect(out).toMatch(/mirrored_write\s+[1-9]\d*/);
    expect(out).toMatch(/read_new\s+[1-9]\d*/);
    expect(out).toMatch(/mirrored writes: [1-9]\d*, p50 \d+\.\d+ ms, p99 \d+\.\d+ ms/);
    expect(out).toMatch(/config reloads: 1 ok/);
    expect(out).toContain('Nothing is left running.');

    expect(processesMentioning(dataDir!)).toEqual([]);
    expect(existsSync(root!)).toBe(false);
  }, 180_000);
});

// Ctrl-C at any point of `switchyard demo` stops everything it started:
// while Postgres is still being created, and after the tour with --keep-running.
import { type ChildProcessWithoutNullStreams, execFileSync, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { describe, expect, it } from 'vitest';

const BIN = path.resolve(import.meta.dirname, '../../bin/switchyard.js');

function processesMentioning(needle: string): string[] {
  try {
    return execFileSync('pgrep', ['-af', needle], { encoding: 'utf8' }).trim().split('\n').filter(Boolean);
  } catch {
    return []; // pgrep exits 1 when nothing matches
  }
}

interface Demo {
  child: ChildProcessWithoutNullStreams;
  output(): string;
  waitFor(re: RegExp, timeoutMs?: number): Promise<RegExpExecArray>;
  exited: Promise<number | null>;
}

function startDemo(args: string[] = []): Demo {
  const child = spawn(process.execPath, [BIN, 'demo', ...args], { stdio: 'pipe' });
  let out = '';
  child.stdout.on('data', (d) => {
    out += d;
  });
  child.stderr.on('data', (d) => {
    out += d;
  });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
  return {
    child,
    output: () => out,
    exited,
    async waitFor(re, timeoutMs = 120_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const m = re.exec(out);
        if (m) return m;
        if (child.exitCode !== null) throw new Error(`demo exited (${child.exitCode}) before ${re}:\n${out}`);
        if (Date.now() > deadline) throw new Error(`no ${re} within ${timeoutMs} ms:\n${out}`);
        await new Promise((r) => setTimeout(r, 25));
      }
    },
  };
}

describe('switchyard demo and Ctrl-C', () => {
  it('stops Postgres and removes its files when interrupted while Postgres is starting', async () => {
    const demo = startDemo();
    const root = (await demo.waitFor(/Everything lives in (\S+) and is removed/))[1];
    await demo.waitFor(/\[1\/10\]/);
    demo.child.kill('SIGINT');
    const code = await demo.exited;
    expect(code, demo.output()).toBe(130);
    expect(demo.output()).toContain('SIGINT: interrupted. Stopping everything the demo started');
    expect(demo.output()).toContain('Nothing is left running.');
    expect(processesMentioning(root)).toEqual([]);
    expect(existsSync(root)).toBe(false);
  }, 120_000);

  it('--keep-running serves clients after the tour until Ctrl-C, then stops everything', async () => {
    const demo = startDemo(['--keep-running']);
    const root = (await demo.waitFor(/Everything lives in (\S+) and is removed/))[1];
    await demo.waitFor(/Press Ctrl-C to stop everything/, 150_000);
    const url = (await demo.waitFor(/\$ psql "(postgres:\/\/[^"]+)"/))[1];
    const admin = (await demo.waitFor(/\$ curl (http:\/\/127\.0\.0\.1:\d+)\/status/))[1];

    // Still up: a client connects through the proxy and reads (switched to users_v2 by the tour).
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    const r = await c.query<{ n: string }>("SELECT count(*) AS n FROM users WHERE last_name = 'Byron'");
    await c.end();
    expect(Number(r.rows[0].n)).toBe(1);
    const status = (await (await fetch(`${admin}/status`)).json()) as { mappings: { reads: string }[] };
    expect(status.mappings[0].reads).toBe('new');
    const dataDir = /data directory (\S+)/.exec(demo.output())![1];
    expect(processesMentioning(dataDir).length).toBeGreaterThan(0);

    demo.child.kill('SIGINT');
    const code = await demo.exited;
    expect(code, demo.output()).toBe(0);
    expect(demo.output()).toContain('Nothing is left running.');
    expect(processesMentioning(dataDir)).toEqual([]);
    expect(existsSync(root)).toBe(false);
  }, 240_000);
});

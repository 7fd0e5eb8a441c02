// The command line as a user meets it: help, unknown commands, bad configs.
import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

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
    for (const cmd of ['proxy', 'backfill', 'verify', 'status', 'demo'])
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

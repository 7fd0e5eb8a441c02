// The Dockerfile and .dockerignore: the instructions the issue asks for, the
// files they copy exist and are not ignored, and the HEALTHCHECK command
// really probes /healthz (run here with node against a live admin server).
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type AdminServer, startAdmin } from '../../src/admin/server.ts';
import { parseConfigText } from '../../src/config/load.ts';
import { ConfigStore } from '../../src/config/store.ts';
import { silentLogger } from '../../src/log.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const dockerfile = readFileSync(path.join(ROOT, 'Dockerfile'), 'utf8');
const dockerignore = readFileSync(path.join(ROOT, '.dockerignore'), 'utf8');

/** Instructions with continuation lines joined and comments dropped. */
function instructions(): Array<{ op: string; args: string }> {
  return dockerfile
    .replace(/\\\n/g, ' ')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'))
    .map((l) => {
      const [op, ...rest] = l.split(/\s+/);
      return { op: op.toUpperCase(), args: rest.join(' ') };
    });
}

const ops = instructions();
const all = (op: string) => ops.filter((i) => i.op === op).map((i) => i.args);
const one = (op: string) => {
  const found = all(op);
  expect(found, op).toHaveLength(1);
  return found[0];
};

/** .dockerignore allow-list semantics for the simple patterns it uses. */
function ignored(file: string): boolean {
  let out = false;
  for (const raw of dockerignore.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const negate = line.startsWith('!');
    const pattern = (negate ? line.slice(1) : line).replace(/\/$/, '');
    if (pattern === '*' || file === pattern || file.startsWith(`${pattern}/`)) out = !negate;
  }
  return out;
}

describe('Dockerfile', () => {
  it('is multi-stage on node:20-slim with a production-only npm ci in the build stage', () => {
    const froms = all('FROM');
    expect(froms.length).toBeGreaterThanOrEqual(2);
    for (const f of froms) expect(f).toMatch(/^node:20-slim\b/);
    expect(froms[0]).toMatch(/ AS \w+$/i);
    const runs = all('RUN').join('\n');
    expect(runs).toMatch(/npm ci --omit=dev/);
    const copies = all('COPY');
    expect(copies.some((c) => c.startsWith('--from='))).toBe(true);
  });

  it('runs as a non-root user', () => {
    const user = one('USER');
    expect(user).not.toMatch(/^(root|0)(:|$)/);
  });

  it('starts `switchyard proxy --config /etc/switchyard/switchyard.yaml` through bin/switchyard.js', () => {
    const entry = JSON.parse(one('ENTRYPOINT')) as string[];
    const cmd = JSON.parse(one('CMD')) as string[];
    expect([...entry, ...cmd]).toEqual([
      'node',
      '/app/bin/switchyard.js',
      'proxy',
      '--config',
      '/etc/switchyard/switchyard.yaml',
    ]);
  });

  it('exposes the client and admin ports and stops with SIGTERM', () => {
    expect(one('EXPOSE').split(/\s+/).sort()).toEqual(['6432', '9187']);
    expect(one('STOPSIGNAL')).toBe('SIGTERM');
  });

  it('copies only files that exist and that .dockerignore lets through', () => {
    for (const c of all('COPY').filter((c) => !c.startsWith('--from='))) {
      const sources = c.split(/\s+/).slice(0, -1);
      for (const s of sources) {
        expect(existsSync(path.join(ROOT, s)), s).toBe(true);
        expect(ignored(s.replace(/\/$/, '')), `${s} is excluded by .dockerignore`).toBe(false);
      }
    }
    expect(ignored('src/cli/main.ts')).toBe(false);
    expect(ignored('node_modules/pg/package.json')).toBe(true);
    expect(ignored('test/unit/deploy-docker.test.ts')).toBe(true);
    expect(ignored('.git/HEAD')).toBe(true);
  });

  it('builds dist/ in the build stage (npm prepare, esbuild a production dependency) and ships it', () => {
    const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as {
      dependencies: Record<string, string>;
      scripts: Record<string, string>;
    };
    expect(pkg.scripts.prepare).toBe('node scripts/build.mjs');
    expect(pkg.dependencies.esbuild).toBeDefined();
    expect(all('COPY')).toContain('--from=deps /app/dist ./dist');
    // The sources stay runnable when dist/ is stale: tsx remains a runtime dependency.
    expect(pkg.dependencies.tsx).toBeDefined();
    expect(readFileSync(path.join(ROOT, 'bin/switchyard.js'), 'utf8')).toContain("import('tsx/esm/api')");
  });
});

describe('HEALTHCHECK', () => {
  let admin: AdminServer;
  const check = one('HEALTHCHECK');
  const cmd = JSON.parse(check.slice(check.indexOf('CMD ') + 4)) as string[];

  function runCheck(port: number): Promise<number> {
    return new Promise((resolve) => {
      execFile(
        cmd[0] === 'node' ? process.execPath : cmd[0],
        cmd.slice(1),
        { env: { ...process.env, SWITCHYARD_ADMIN_PORT: String(port) }, timeout: 15_000 },
        (err) => resolve(err ? (typeof err.code === 'number' ? err.code : -1) : 0),
      );
    });
  }

  beforeAll(async () => {
    const store = await ConfigStore.create(
      { config: parseConfigText('upstream: { host: 127.0.0.1 }', {}), hash: 'c'.repeat(64) },
      async () => ({}),
    );
    admin = await startAdmin(
      { host: '127.0.0.1', port: 0, tokenEnv: 'SY_TEST_ADMIN_TOKEN' },
      {
        store,
        connections: () => 0,
        draining: () => false,
        upstreamReachable: async () => false,
        startedAt: new Date(),
      },
      silentLogger,
    );
  });
  afterAll(async () => {
    await admin.close();
  });

  it('uses node (slim has no curl), with interval, timeout and retries', () => {
    expect(cmd[0]).toBe('node');
    expect(check).toMatch(/--interval=\d+s/);
    expect(check).toMatch(/--timeout=\d+s/);
    expect(check).toMatch(/--retries=\d+/);
    expect(cmd.join(' ')).toContain('/healthz');
  });

  it('exits 0 against a live admin server (even with the upstream down: liveness, not readiness)', async () => {
    expect(await runCheck(admin.port)).toBe(0);
  });

  it('exits 1 when nothing listens', async () => {
    const srv = createServer();
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const { port } = srv.address() as { port: number };
    await new Promise<void>((r) => srv.close(() => r()));
    expect(await runCheck(port)).toBe(1);
  });
});

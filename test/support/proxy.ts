// Starts the real proxy in front of the test database: in-process (startProxy)
// or as the real CLI in a child process (startProxyProcess, for signals).
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { stringify } from 'yaml';
import { type Runtime, startRuntime } from '../../src/app/runtime.ts';
import { parseConfigText } from '../../src/config/load.ts';
import { freePort } from '../../src/demo/cluster.ts';
import { silentLogger } from '../../src/log.ts';
import type { TestDatabase } from './db.ts';

export interface TestProxy {
  runtime: Runtime;
  port: number;
  /** URL through the proxy to the test database (or another user/database). */
  url(opts?: { user?: string; password?: string; database?: string }): string;
  adminUrl?: string;
  close(): Promise<void>;
}

/** Every DDL guardrail off: for tests that compare replies byte for byte with Postgres's own. */
export const DDL_OFF = {
  lockTimeout: 'off',
  createIndex: 'off',
  constraintNotValid: 'off',
  setNotNull: 'off',
  typeRewrite: 'off',
  volatileDefault: 'off',
  mappingBreak: 'off',
};

/** Config as a plain object: upstream defaults to the test database's server. */
export function baseConfig(
  db: Pick<TestDatabase, 'host' | 'port' | 'url'>,
  extra: Record<string, unknown> = {},
) {
  return {
    listen: { host: '127.0.0.1', port: 0 },
    upstream: { url: db.url },
    admin: { host: '127.0.0.1', port: 0 },
    ...extra,
  };
}

function urlThrough(
  port: number,
  db: Pick<TestDatabase, 'name'>,
  opts: { user?: string; password?: string; database?: string } = {},
) {
  const user = encodeURIComponent(opts.user ?? 'postgres');
  const auth = opts.password === undefined ? user : `${user}:${encodeURIComponent(opts.password)}`;
  return `postgres://${auth}@127.0.0.1:${port}/${opts.database ?? db.name}`;
}

export async function startProxy(
  db: Pick<TestDatabase, 'host' | 'port' | 'url' | 'name'>,
  extra: Record<string, unknown> = {},
  opts: { admin?: boolean; configPath?: string } = {},
): Promise<TestProxy> {
  const text = stringify(baseConfig(db, extra));
  const config = parseConfigText(text);
  const runtime = await startRuntime({
    loaded: { config, hash: String(Math.random()), path: opts.configPath },
    logger: silentLogger,
    listen: { host: '127.0.0.1', port: 0 },
    admin: opts.admin ? { host: '127.0.0.1', port: 0 } : false,
    watch: opts.configPath !== undefined,
  });
  const port = runtime.address.port;
  return {
    runtime,
    port,
    url: (o) => urlThrough(port, db, o),
    adminUrl: runtime.admin ? `http://127.0.0.1:${runtime.admin.port}` : undefined,
    close: () => runtime.shutdown(0),
  };
}

export interface ProxyProcess {
  child: ChildProcess;
  port: number;
  adminPort: number;
  configPath: string;
  url(opts?: { user?: string; password?: string; database?: string }): string;
  /** Rewrites the config file (same listen/admin ports). */
  writeConfig(extra: Record<string, unknown>): void;
  output(): string;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** The real CLI, `node bin/switchyard.js proxy --config FILE` (or another runtime's), in a child process. */
export async function startProxyProcess(
  db: Pick<TestDatabase, 'host' | 'port' | 'url' | 'name'>,
  extra: Record<string, unknown> = {},
  env: NodeJS.ProcessEnv = {},
  runtime: string = process.execPath,
): Promise<ProxyProcess> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'sy-cfg-'));
  const configPath = path.join(dir, 'switchyard.yaml');
  const port = await freePort();
  const adminPort = await freePort();
  const write = (x: Record<string, unknown>) => {
    const c = baseConfig(db, x);
    c.listen = { host: '127.0.0.1', port, ...(x.listen as object) };
    c.admin = { host: '127.0.0.1', port: adminPort };
    writeFileSync(configPath, stringify(c));
  };
  write(extra);
  const bin = path.resolve(import.meta.dirname, '../../bin/switchyard.js');
  const child = spawn(runtime, [bin, 'proxy', '--config', configPath], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (d) => {
    out += d;
  });
  child.stderr!.on('data', (d) => {
    out += d;
  });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const deadline = Date.now() + 60_000;
  while (!out.includes('switchyard proxy started')) {
    if (child.exitCode !== null) throw new Error(`proxy exited with ${child.exitCode}: ${out}`);
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`proxy did not start: ${out}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    child,
    port,
    adminPort,
    configPath,
    url: (o) => urlThrough(port, db, o),
    writeConfig: write,
    output: () => out,
    async stop(signal: NodeJS.Signals = 'SIGTERM') {
      if (child.exitCode !== null) return child.exitCode;
      child.kill(signal);
      const t = setTimeout(() => child.kill('SIGKILL'), 15_000);
      const code = await exited;
      clearTimeout(t);
      return code;
    },
  };
}

// The systems under test, each a separate process listening on 127.0.0.1:
// the bare pipe forwarder, switchyard (one process per config) and PgBouncer
// in session mode. Direct Postgres needs no process of its own.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync, openSync } from 'node:fs';
import fs from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { freePort } from '../../src/demo/cluster.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

export interface Upstream {
  host: string;
  port: number;
  database: string;
  user: string;
}

export interface Proc {
  name: string;
  port: number;
  /** The process whose memory is the system's (PgBouncer: the daemon itself, not runuser). */
  pid(): number | undefined;
  /** switchyard's admin endpoint port. */
  adminPort?: number;
  stop(): Promise<void>;
}

async function waitForPort(port: number, what: string, child: ChildProcess, logFile: string): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) {
      const log = await fs.readFile(logFile, 'utf8').catch(() => '');
      throw new Error(`${what} exited with ${child.exitCode}: ${log.slice(-1500)}`);
    }
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect({ host: '127.0.0.1', port });
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${what} did not listen on ${port} within 30 s (log: ${logFile})`);
}

function stopChild(child: ChildProcess, pid = child.pid): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    const timer = setTimeout(() => {
      if (pid) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {}
      }
      child.kill('SIGKILL');
    }, 10_000);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    try {
      if (pid) process.kill(pid, 'SIGTERM');
      else child.kill('SIGTERM');
    } catch {
      clearTimeout(timer);
      resolve();
    }
  });
}

export async function startPipe(
  workDir: string,
  up: Upstream,
  nodeArgs: string[] = [],
  /** Another forwarder script (experiments). */
  script = path.join(ROOT, 'bench/pipe-forwarder.ts'),
): Promise<Proc> {
  const port = await freePort();
  const logFile = path.join(workDir, `pipe-${port}.log`);
  const fd = openSync(logFile, 'a');
  const child = spawn(
    process.execPath,
    [...nodeArgs, '--import', 'tsx', script, String(port), up.host, String(up.port)],
    { cwd: ROOT, stdio: ['ignore', fd, fd] },
  );
  await waitForPort(port, 'pipe forwarder', child, logFile);
  return { name: 'pipe', port, pid: () => child.pid, stop: () => stopChild(child) };
}

/** The bare forwarder over switchyard's socket layer (bench/transport-forwarder.ts), on Node or Bun. */
export async function startTransportForwarder(
  workDir: string,
  up: Upstream,
  runtime = process.execPath,
): Promise<Proc> {
  const port = await freePort();
  const logFile = path.join(workDir, `forwarder-${port}.log`);
  const fd = openSync(logFile, 'a');
  const child = spawn(
    runtime,
    [
      // Node runs TypeScript through tsx; Bun runs it as it is.
      ...(runtime === process.execPath ? ['--import', 'tsx'] : []),
      path.join(ROOT, 'bench/transport-forwarder.ts'),
      String(port),
      up.host,
      String(up.port),
    ],
    { cwd: ROOT, stdio: ['ignore', fd, fd] },
  );
  await waitForPort(port, 'transport forwarder', child, logFile);
  return { name: 'forwarder', port, pid: () => child.pid, stop: () => stopChild(child) };
}

export interface SwitchyardOptions {
  name: string;
  mappings?: unknown[];
  /** Extra node flags (--cpu-prof ...). */
  nodeArgs?: string[];
  logLevel?: string;
  maxClientConnections?: number;
  /** Another checkout to run instead of this one (before/after comparisons). */
  root?: string;
  /** The runtime binary to start it with (default: this Node). */
  runtime?: string;
}

export async function startSwitchyard(workDir: string, up: Upstream, o: SwitchyardOptions): Promise<Proc> {
  const port = await freePort();
  const adminPort = await freePort();
  const config = {
    listen: { host: '127.0.0.1', port },
    upstream: { url: `postgres://${up.user}@${up.host}:${up.port}/${up.database}` },
    admin: { host: '127.0.0.1', port: adminPort },
    limits: { maxClientConnections: o.maxClientConnections ?? 2000 },
    log: { level: o.logLevel ?? 'info' },
    shutdown: { drainTimeoutMs: 1000 },
    mappings: o.mappings ?? [],
  };
  // A directory of its own: switchyard watches its config file's directory,
  // and pgbench's transaction logs elsewhere in workDir must not look like edits.
  const dir = path.join(workDir, o.name);
  await fs.mkdir(dir, { recursive: true });
  const configFile = path.join(dir, 'switchyard.yaml');
  await fs.writeFile(configFile, stringify(config));
  // The log outside the watched directory, or every log line would look like a config edit.
  const logFile = path.join(workDir, `${o.name}.log`);
  const fd = openSync(logFile, 'a');
  const child = spawn(
    o.runtime ?? process.execPath,
    [...(o.nodeArgs ?? []), path.join(o.root ?? ROOT, 'bin/switchyard.js'), 'proxy', '--config', configFile],
    {
      cwd: dir,
      stdio: ['ignore', fd, fd],
      env: { ...process.env, PGUSER: up.user, PGDATABASE: up.database },
    },
  );
  await waitForPort(port, `switchyard (${o.name})`, child, logFile);
  return { name: o.name, port, adminPort, pid: () => child.pid, stop: () => stopChild(child) };
}

/** The pgbouncer binary, or undefined when it is not installed. */
export function pgbouncerBin(): string | undefined {
  const env = process.env.SWITCHYARD_BENCH_PGBOUNCER;
  if (env) return existsSync(env) ? env : undefined;
  for (const p of ['/usr/sbin/pgbouncer', '/usr/bin/pgbouncer', '/usr/local/bin/pgbouncer']) {
    if (existsSync(p)) return p;
  }
  return undefined;
}

export function pgbouncerVersion(bin: string): string {
  return execFileSync(bin, ['--version'], { encoding: 'utf8' }).split('\n')[0].trim();
}

const isRoot = () => typeof process.getuid === 'function' && process.getuid() === 0;

/**
 * PgBouncer in session mode, auth_type trust (the user must still be listed in
 * auth_file). PgBouncer refuses to run as root, so as root it runs as the
 * `postgres` OS user, which the throwaway cluster already created.
 */
export async function startPgbouncer(workDir: string, up: Upstream, bin: string): Promise<Proc> {
  const port = await freePort();
  const dir = path.join(workDir, 'pgbouncer');
  await fs.mkdir(dir, { recursive: true });
  const ini = [
    '[databases]',
    `${up.database} = host=${up.host} port=${up.port} dbname=${up.database}`,
    '[pgbouncer]',
    'listen_addr = 127.0.0.1',
    `listen_port = ${port}`,
    'unix_socket_dir =',
    'auth_type = trust',
    `auth_file = ${dir}/userlist.txt`,
    'pool_mode = session',
    'max_client_conn = 2000',
    'default_pool_size = 1100',
    'max_db_connections = 0',
    `logfile = ${dir}/pgbouncer.log`,
    `pidfile = ${dir}/pgbouncer.pid`,
    'log_connections = 0',
    'log_disconnections = 0',
    'ignore_startup_parameters = extra_float_digits,options',
    '',
  ].join('\n');
  await fs.writeFile(path.join(dir, 'pgbouncer.ini'), ini);
  await fs.writeFile(path.join(dir, 'userlist.txt'), `"${up.user}" ""\n`);
  const asRoot = isRoot();
  if (asRoot) execFileSync('chown', ['-R', 'postgres', dir]);
  const logFile = path.join(dir, 'stdout.log');
  const fd = openSync(logFile, 'a');
  // Each client and each server connection is a descriptor: 1,000 idle clients
  // need more than the usual soft limit of 1024, so raise it to the hard limit.
  const cmd = `ulimit -n "$(ulimit -Hn)"; exec "$0" "$1"`;
  const argv = ['sh', '-c', cmd, bin, path.join(dir, 'pgbouncer.ini')];
  const child = asRoot
    ? spawn('runuser', ['-u', 'postgres', '--', ...argv], { stdio: ['ignore', fd, fd] })
    : spawn(argv[0], argv.slice(1), { stdio: ['ignore', fd, fd] });
  await waitForPort(port, 'pgbouncer', child, logFile);
  const daemonPid = async () => Number((await fs.readFile(path.join(dir, 'pgbouncer.pid'), 'utf8')).trim());
  const pid = await daemonPid().catch(() => undefined);
  return {
    name: 'pgbouncer',
    port,
    pid: () => pid,
    stop: () => stopChild(child, pid),
  };
}

/** Bun, for runtime comparisons: SWITCHYARD_BENCH_BUN, or the one npm installed. */
export function bunBin(): string {
  const bin = process.env.SWITCHYARD_BENCH_BUN ?? path.join(ROOT, 'node_modules/.bin/bun');
  if (!existsSync(bin)) throw new Error(`no Bun at ${bin} (npm i bun, or set SWITCHYARD_BENCH_BUN)`);
  return bin;
}

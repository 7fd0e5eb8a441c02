// The fleet as tests meet it: sidecars following the control table, the
// `switchyard switch` and `status --fleet` commands, and waits on both.
import { execFile } from 'node:child_process';
import path from 'node:path';
import pg from 'pg';

const BIN = path.resolve(import.meta.dirname, '../../bin/switchyard.js');

/** Config keys that make a sidecar follow the control table, with quick heartbeats. */
export function fleetConfig(extra: Record<string, unknown> = {}) {
  return { fleet: { enabled: true, pollMs: 60_000, heartbeatMs: 500, staleAfterMs: 3_000, ...extra } };
}

export function runCli(
  args: string[],
  env: NodeJS.ProcessEnv = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [BIN, ...args],
      { timeout: 60_000, env: { ...process.env, ...env } },
      (err, stdout, stderr) => {
        resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
      },
    );
  });
}

/** Polls f until ok(value) or the deadline; the last value is in the error. */
export async function eventually<T>(
  f: () => Promise<T>,
  ok: (v: T) => boolean,
  what: string,
  ms = 20_000,
): Promise<T> {
  const deadline = Date.now() + ms;
  let last: T | undefined;
  let lastErr: unknown;
  for (;;) {
    try {
      last = await f();
      if (ok(last)) return last;
    } catch (e) {
      lastErr = e;
    }
    if (Date.now() > deadline)
      throw new Error(
        `${what}: not within ${ms} ms (last: ${JSON.stringify(last)} ${String(lastErr ?? '')})`,
      );
    await new Promise((r) => setTimeout(r, 25));
  }
}

export async function getJson(url: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(url);
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

/** One metric sample from a /metrics page, by name and an optional label. */
export async function metric(adminUrl: string, name: string, label = ''): Promise<number | undefined> {
  const text = await (await fetch(`${adminUrl}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name}${label ? `{${label}}` : ''} `));
  return line === undefined ? undefined : Number(line.split(' ').pop());
}

/** A client through a proxy, with a prepared read whose answer tells which table served it. */
export async function clientThrough(url: string): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  return c;
}

/** Backends of the control connections on this database. */
export async function controlBackends(
  db: { query: (sql: string, p?: unknown[]) => Promise<pg.QueryResult> },
  name: string,
) {
  const r = await db.query(
    `SELECT pid FROM pg_stat_activity WHERE application_name = 'switchyard-control' AND datname = $1`,
    [name],
  );
  return r.rows.map((x) => x.pid as number);
}

/**
 * A TCP relay in front of Postgres that can be cut and restored: a network
 * partition between a sidecar and its database, with real sockets on both sides.
 */
export async function startRelay(target: { host: string; port: number }) {
  const { createServer, connect } = await import('node:net');
  const open = new Set<import('node:net').Socket>();
  let cut = false;
  const server = createServer((client) => {
    if (cut) {
      client.destroy();
      return;
    }
    const upstream = connect(target.port, target.host);
    for (const s of [client, upstream]) {
      open.add(s);
      s.on('close', () => open.delete(s));
      s.on('error', () => {});
    }
    client.pipe(upstream);
    upstream.pipe(client);
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as import('node:net').AddressInfo).port;
  return {
    port,
    /** Drops every relayed connection and refuses new ones. */
    cut() {
      cut = true;
      for (const s of open) s.destroy();
    },
    restore() {
      cut = false;
    },
    close: () =>
      new Promise<void>((r) => {
        for (const s of open) s.destroy();
        server.close(() => r());
      }),
  };
}

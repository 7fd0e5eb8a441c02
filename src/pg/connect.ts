// Connections to the upstream for the catalog check, backfill and verify:
// one rule for their settings, one way to open them.
import { readFileSync } from 'node:fs';
import pg from 'pg';
import { upstreamAddress } from '../config/load.ts';
import type { Config } from '../config/schema.ts';

/**
 * Connection settings for catalog access: the config's upstream (URL with its
 * user, password and database, or host and port, and its sslmode) plus the
 * libpq environment (PGUSER, PGPASSWORD, PGDATABASE), which pg reads itself.
 */
export function upstreamClientConfig(config: Config, override?: pg.ClientConfig): pg.ClientConfig {
  const base: pg.ClientConfig = config.upstream.url
    ? { connectionString: config.upstream.url }
    : (() => {
        const { host, port } = upstreamAddress(config);
        return { host, port };
      })();
  const u = config.upstream;
  const ssl: pg.ClientConfig['ssl'] =
    u.sslmode === 'disable'
      ? false
      : u.sslmode === 'require'
        ? { rejectUnauthorized: false }
        : { rejectUnauthorized: true, ...(u.ca ? { ca: readFileSync(u.ca, 'utf8') } : {}) };
  return {
    ...base,
    ...(u.sslmode === 'disable' ? {} : { ssl }),
    connectionTimeoutMillis: config.upstream.connectTimeoutMs,
    application_name: 'switchyard',
    ...override,
  };
}

/** Opens a client and applies session settings (one round trip). */
export async function connect(
  cfg: pg.ClientConfig,
  settings: Record<string, string | number> = {},
): Promise<pg.Client> {
  const client = new pg.Client(cfg);
  // A dropped connection surfaces on the next query; without a listener it would crash the process.
  client.on('error', () => {});
  await client.connect();
  const entries = Object.entries(settings);
  if (entries.length > 0) {
    await client.query(
      `SELECT ${entries.map((_, i) => `set_config($${2 * i + 1}, $${2 * i + 2}, false)`).join(', ')}`,
      entries.flatMap(([k, v]) => [k, String(v)]),
    );
  }
  return client;
}

/** SQLSTATE of a server error, if it is one. */
export function sqlState(err: unknown): string | undefined {
  const code = (err as { code?: unknown })?.code;
  return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) ? code : undefined;
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

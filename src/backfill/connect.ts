// Connections for backfill and verify. Their settings come from
// upstreamClientConfig (src/rules/ruleset.ts), the same rule compileRules uses.
import pg from 'pg';

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

// Errors of the fleet commands, in the operator's terms: one line each.
import type pg from 'pg';

export class FleetCliError extends Error {
  override name = 'FleetCliError';
}

/** A failed connection named by where it was going, not by the driver's internals. */
export function databaseError(cfg: pg.ClientConfig, e: unknown): FleetCliError {
  const err = e as Error & { code?: string };
  let where = `${cfg.host ?? 'localhost'}:${cfg.port ?? 5432}`;
  if (cfg.connectionString) {
    try {
      const u = new URL(cfg.connectionString);
      where = `${u.hostname}:${u.port || 5432}${u.pathname}`;
    } catch {}
  }
  const why = err.code && !/^[0-9A-Z]{5}$/.test(err.code) ? err.code : err.message;
  return new FleetCliError(`cannot reach the database at ${where}: ${why}`);
}

// Heartbeat rows: each sidecar says who it is and which switch version it
// applies; the CLI reads them to wait for a change and to list the fleet.
// Times come from the database's clock, so a skewed pod clock cannot make a
// live sidecar look stale.
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import type pg from 'pg';
import { SCHEMA } from './tables.ts';

export interface SidecarIdentity {
  id: string;
  name: string;
  pid: number;
  startedAt: Date;
}

/** The pod's name where Kubernetes gives it (POD_NAME from the downward API), else the host name. */
export function sidecarIdentity(
  env: NodeJS.ProcessEnv = process.env,
  startedAt = new Date(),
): SidecarIdentity {
  const name = env.POD_NAME || env.HOSTNAME || os.hostname();
  return { id: `${name}-${randomBytes(4).toString('hex')}`, name, pid: process.pid, startedAt };
}

export interface Heartbeat {
  appliedVersion: number;
  localOverrides: Record<string, unknown>;
  applyError: string | null;
}

export async function writeHeartbeat(client: pg.Client, who: SidecarIdentity, hb: Heartbeat): Promise<void> {
  await client.query(
    `INSERT INTO ${SCHEMA}.sidecars AS s
       (id, name, pid, started_at, applied_version, applied_at, local_overrides, apply_error)
     VALUES ($1, $2, $3, $4, $5, clock_timestamp(), $6, $7)
     ON CONFLICT (id) DO UPDATE SET
       last_seen = clock_timestamp(),
       applied_at = CASE WHEN s.applied_version = EXCLUDED.applied_version THEN s.applied_at
                         ELSE clock_timestamp() END,
       applied_version = EXCLUDED.applied_version,
       local_overrides = EXCLUDED.local_overrides,
       apply_error = EXCLUDED.apply_error`,
    [
      who.id,
      who.name,
      who.pid,
      who.startedAt,
      hb.appliedVersion,
      JSON.stringify(hb.localOverrides),
      hb.applyError,
    ],
  );
}

/** Rows of sidecars gone this long are dropped: a fleet that restarts pods often would otherwise keep every one. */
export const FORGET_AFTER = '1 day';

export async function forgetGoneSidecars(client: pg.Client): Promise<number> {
  const r = await client.query(
    `DELETE FROM ${SCHEMA}.sidecars WHERE last_seen < clock_timestamp() - interval '${FORGET_AFTER}'`,
  );
  return r.rowCount ?? 0;
}

export async function removeHeartbeat(client: pg.Client, id: string): Promise<void> {
  await client.query(`DELETE FROM ${SCHEMA}.sidecars WHERE id = $1`, [id]);
}

export interface SidecarRow {
  id: string;
  name: string;
  pid: number;
  startedAt: string;
  lastSeen: string;
  /** Seconds since the last heartbeat, by the database's clock. */
  ageSeconds: number;
  stale: boolean;
  appliedVersion: number;
  appliedAt: string | null;
  localOverrides: Record<string, unknown>;
  applyError: string | null;
}

export async function listSidecars(client: pg.Client, staleAfterMs: number): Promise<SidecarRow[]> {
  const r = await client.query(
    `SELECT id, name, pid, started_at, last_seen, applied_version, applied_at, local_overrides, apply_error,
            extract(epoch FROM clock_timestamp() - last_seen)::float8 AS age
       FROM ${SCHEMA}.sidecars ORDER BY name, started_at, id`,
  );
  return r.rows.map((row) => ({
    id: row.id,
    name: row.name,
    pid: row.pid,
    startedAt: (row.started_at as Date).toISOString(),
    lastSeen: (row.last_seen as Date).toISOString(),
    ageSeconds: Math.max(0, row.age as number),
    stale: (row.age as number) * 1000 > staleAfterMs,
    appliedVersion: Number(row.applied_version),
    appliedAt: row.applied_at ? (row.applied_at as Date).toISOString() : null,
    localOverrides: row.local_overrides ?? {},
    applyError: row.apply_error,
  }));
}

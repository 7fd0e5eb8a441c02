// The demo tour's shared state and the small helpers its steps use.
import type pg from 'pg';
import type { Runtime } from '../app/runtime.ts';
import type { Logger } from '../log.ts';
import type { LocalCluster } from './cluster.ts';
import type { Narrator } from './narrate.ts';
import type { Workspace } from './workspace.ts';

export const HISTORICAL_ROWS = 10_000;
/** A row written straight into users_v2, behind the proxy's back: only reads served by users_v2 can see it. */
export const MARKER_ID = 1_000_000;
export const RELOAD_WAIT_MS = 5000;

export interface TourResult {
  /** Steps whose check failed (a real failure: the demo exits 1). */
  failures: string[];
  /** Steps this build cannot run yet, stated plainly. */
  unavailable: string[];
  proxyUrl: string;
  adminUrl: string;
  configPath: string;
  logPath: string;
}

export interface Ctx {
  n: Narrator;
  ws: Workspace;
  log: Logger;
  cluster: LocalCluster;
  direct: pg.Client;
  runtime: Runtime;
  app: pg.Client;
  configPath: string;
  proxyUrl: string;
  adminUrl: string;
  result: TourResult;
  /** Ids the app wrote in step 4. */
  ids: { inserted: number[]; updated: number; deleted: number };
}

export function fail(ctx: Ctx, step: string, why: string): void {
  ctx.n.fail(why);
  ctx.result.failures.push(`${step}: ${why}`);
}

export function unavailable(ctx: Ctx, step: string, why: string): void {
  ctx.n.unavailable(why);
  ctx.result.unavailable.push(`${step}: ${why}`);
}

export const RULES_MISSING =
  'this build of the proxy does not apply mapping rules yet (the planner is not wired into sessions): every statement passes through unchanged';

export interface UserRow {
  id: string;
  first_name?: string;
  last_name?: string;
  full_name?: string;
  email: string;
}

export async function rowsById(
  c: pg.Client,
  table: 'users' | 'users_v2',
  ids: number[],
): Promise<Map<number, UserRow>> {
  const cols = table === 'users' ? 'id, first_name, last_name, email' : 'id, full_name, email';
  const r = await c.query<UserRow>(`SELECT ${cols} FROM ${table} WHERE id = ANY($1::bigint[])`, [ids]);
  return new Map(r.rows.map((row) => [Number(row.id), row]));
}

export async function count(c: pg.Client, table: string): Promise<number> {
  const r = await c.query<{ n: string }>(`SELECT count(*) AS n FROM ${table}`);
  return Number(r.rows[0].n);
}

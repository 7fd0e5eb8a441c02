// A primary with a streaming hot standby, both started (and stopped) by the
// test itself, so pausing the standby's replay never affects other tests.
import pg from 'pg';
import { LocalCluster } from '../../src/demo/cluster.ts';
import { serverInfo } from './db.ts';

export interface ReplicaPair {
  primary: LocalCluster;
  standby: LocalCluster;
  stop(): Promise<void>;
}

export async function startReplicaPair(): Promise<ReplicaPair> {
  // Same binaries as the run's server (PG 18 embedded by default, or SWITCHYARD_TEST_PG_BIN).
  const binDir = serverInfo().binDir || undefined;
  const primary = await LocalCluster.start({ binDir });
  let standby: LocalCluster | undefined;
  try {
    // Report replay progress every second, so the primary's pg_stat_replication stays current.
    standby = await LocalCluster.startStandby(primary, { settings: { wal_receiver_status_interval: 1 } });
  } catch (e) {
    await primary.stop();
    throw e;
  }
  return {
    primary,
    standby,
    async stop() {
      await standby?.stop();
      await primary.stop();
    },
  };
}

async function one<T>(url: string, sql: string): Promise<T> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return (await c.query(sql)).rows[0] as T;
  } finally {
    await c.end();
  }
}

/**
 * Waits until the standby has replayed everything the primary has written so
 * far. WAL positions are cluster-wide, so both sides are asked in the
 * `postgres` database: a database just created on the primary may not exist
 * on the standby until this wait is over.
 */
export async function waitReplayed(p: ReplicaPair, timeoutMs = 30_000): Promise<void> {
  const { lsn } = await one<{ lsn: string }>(p.primary.url(), 'SELECT pg_current_wal_lsn()::text AS lsn');
  const until = Date.now() + timeoutMs;
  for (;;) {
    const r = await one<{ ok: boolean }>(
      p.standby.url(),
      `SELECT pg_last_wal_replay_lsn() >= '${lsn}'::pg_lsn AS ok`,
    );
    if (r.ok) return;
    if (Date.now() > until) throw new Error(`standby did not replay up to ${lsn} within ${timeoutMs} ms`);
    await new Promise((res) => setTimeout(res, 50));
  }
}

export async function pauseReplay(p: ReplicaPair): Promise<void> {
  await one(p.standby.url(), 'SELECT pg_wal_replay_pause()');
  for (;;) {
    const r = await one<{ s: string }>(p.standby.url(), 'SELECT pg_get_wal_replay_pause_state() AS s');
    if (r.s === 'paused') return;
    await new Promise((res) => setTimeout(res, 50));
  }
}

export async function resumeReplay(p: ReplicaPair): Promise<void> {
  await one(p.standby.url(), 'SELECT pg_wal_replay_resume()');
}

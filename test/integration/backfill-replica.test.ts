// The replica-lag throttle against a real streaming standby whose replay is
// paused: the backfill must stop copying while the standby falls behind and
// finish on its own once replay resumes. Lag measured both ways: on the
// standby (--replica) and in pg_stat_replication on the primary.

import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Backfill, type BackfillOptions, DEFAULT_OPTIONS } from '../../src/backfill/runner.ts';
import { silentLogger } from '../../src/log.ts';
import { metrics } from '../../src/metrics.ts';
import {
  createUsers,
  type Fixture,
  mismatches,
  USERS_MAPPING,
  writeConfig,
} from '../support/backfill-fixtures.ts';
import {
  pauseReplay,
  type ReplicaPair,
  resumeReplay,
  startReplicaPair,
  waitReplayed,
} from '../support/replica.ts';

const ROWS = 20_000;
// Every batch's INSERT into users_v2 waits this long in the server, so a run of
// ROWS / 50 batches (the batch sizer's floor) lasts at least 8 s on any machine:
// well past the ~1 s the throttle needs to see a paused standby (its lag grows
// in wall-clock time from the first batch, up to --max-lag-ms and one poll).
const BATCH_FLOOR_MS = 20;
let pair: ReplicaPair;
let fx: Fixture;
let app: pg.Client;

beforeAll(async () => {
  pair = await startReplicaPair();
  await pair.primary.createDatabase('app');
  app = new pg.Client({ connectionString: pair.primary.url('app') });
  await app.connect();
  await createUsers((sql) => app.query(sql), ROWS);
  await app.query(`
    CREATE FUNCTION slow_batch() RETURNS trigger LANGUAGE plpgsql AS
      $$ BEGIN PERFORM pg_sleep(${BATCH_FLOOR_MS / 1000}); RETURN NULL; END $$;
    CREATE TRIGGER slow_batch BEFORE INSERT ON users_v2 FOR EACH STATEMENT EXECUTE FUNCTION slow_batch();`);
  fx = await writeConfig(pair.primary.url('app'), USERS_MAPPING);
  await waitReplayed(pair);
});

afterAll(async () => {
  await app?.end();
  await fx?.cleanup();
  await pair?.stop();
});

const copied = async () => (await app.query('SELECT count(*)::int AS n FROM users_v2')).rows[0].n as number;

async function throttledRun(opts: Partial<BackfillOptions>) {
  const m = fx.mappings.get('users')!;
  await pauseReplay(pair);
  const backfill = new Backfill(
    m,
    fx.clientConfig,
    {
      ...DEFAULT_OPTIONS,
      // Batches slower than the target shrink to the sizer's floor (50 rows) and stay there,
      // so the run is ROWS / 50 batches of at least BATCH_FLOOR_MS each, whatever the machine.
      batchSize: 50,
      targetBatchMs: 5,
      maxLagMs: 500,
      lagPollMs: 200,
      restart: true,
      ...opts,
    },
    silentLogger,
  );
  const run = backfill.run();
  let settled = false;
  run.finally(() => {
    settled = true;
  });
  try {
    // Batches go on until the standby is measurably behind, then the run pauses.
    const until = Date.now() + 30_000;
    while (!backfill.pausedNote) {
      expect(settled, 'the backfill finished without waiting for the paused standby').toBe(false);
      expect(Date.now()).toBeLessThan(until);
      await new Promise((r) => setTimeout(r, 50));
    }
    const atPause = await copied();
    await new Promise((r) => setTimeout(r, 2500));
    // Still paused: no rows copied while the standby lags, and the run has not ended.
    expect(settled).toBe(false);
    expect(await copied()).toBe(atPause);
    expect(atPause).toBeLessThan(ROWS);
    expect(backfill.pausedNote).toMatch(/paused: replica lag \d+\.\ds > 0.5s/);
  } finally {
    await resumeReplay(pair);
  }
  const stats = await run;
  expect(stats.outcome).toBe('done');
  expect(stats.batches).toBeGreaterThanOrEqual(ROWS / 50);
  expect(stats.throttledMs).toBeGreaterThanOrEqual(2500);
  expect(await copied()).toBe(ROWS);
  expect(await mismatches((s) => app.query(s) as Promise<{ rows: { n: number }[] }>, m)).toBe(0);
  return stats;
}

describe('replica-lag throttle', () => {
  it('waits while a --replica lags (replay paused) and finishes once replay resumes', async () => {
    const before = (await metrics.backfillThrottled.get()).values.find((v) => v.labels.mapping === 'users');
    await throttledRun({ replicas: [pair.standby.url('app')] });
    const after = (await metrics.backfillThrottled.get()).values.find((v) => v.labels.mapping === 'users');
    expect((after?.value ?? 0) - (before?.value ?? 0)).toBeGreaterThanOrEqual(2);
    await waitReplayed(pair);
  });

  it('measures lag from pg_stat_replication on the primary when no replica is named', async () => {
    await app.query('TRUNCATE users_v2');
    await throttledRun({ replicas: [] });
  });
});

// `switchyard demo`: the whole expand -> dual-write -> backfill -> verify ->
// read-switch migration on a throwaway Postgres, with the real proxy, the real
// backfill and the real verify, narrated step by step.
import { closeSync, openSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import pino from 'pino';
import { startRuntime } from '../app/runtime.ts';
import { loadConfigFile } from '../config/load.ts';
import { connectClient } from './app.ts';
import { freePort, LocalCluster } from './cluster.ts';
import type { Narrator } from './narrate.ts';
import { DEMO_DATABASE, demoConfigYaml, MAPPING_NAME, SCHEMA_SQL, seedSql } from './schema.ts';
import { backfillStep, dualWriteStep, verifyStep } from './steps-data.ts';
import { killSwitchStep, metricsStep, readSwitchStep } from './steps-switch.ts';
import { type Ctx, HISTORICAL_ROWS, type TourResult } from './tour-context.ts';
import type { Workspace } from './workspace.ts';

export { HISTORICAL_ROWS, type TourResult };

export const STEPS = 10;

export async function runTour(n: Narrator, ws: Workspace): Promise<TourResult> {
  n.title('switchyard demo: a zero-downtime table migration, end to end');
  n.say(
    'The app keeps using table users. We migrate it to users_v2 (first_name + last_name',
    'become full_name, emails are stored lower-cased) without changing the app and',
    'without stopping it: switchyard sits between the app and Postgres.',
    `Everything lives in ${ws.root} and is removed at the end (Ctrl-C too).`,
  );

  // 1. Postgres
  n.step(1, 'Start a throwaway Postgres');
  // Registered before it exists: an interrupt during initdb still waits for the start to settle, then stops it.
  const starting = LocalCluster.start({ parentDir: ws.root });
  ws.defer('Postgres', async () => {
    const c = await starting.catch(() => undefined);
    await c?.stop();
  });
  const cluster = await starting;
  stopIfClosing(ws);
  n.say(`Postgres ${cluster.version} on 127.0.0.1:${cluster.port}, data directory ${cluster.dataDir}`);

  // 2. Expand
  n.step(2, 'Expand: create the new table next to the old one');
  await cluster.psqlSuper(`CREATE DATABASE ${DEMO_DATABASE}`);
  const direct = await connectClient(cluster.url(DEMO_DATABASE), 'switchyard-demo-direct');
  ws.defer('direct connection', () => direct.end().catch(() => {}), { quiet: true });
  await direct.query(SCHEMA_SQL);
  await direct.query(seedSql(HISTORICAL_ROWS));
  await direct.query('ANALYZE users');
  n.block(SCHEMA_SQL);
  n.say(
    `users holds ${HISTORICAL_ROWS.toLocaleString('en-US')} historical rows; users_v2 is empty.`,
    'Expanding is additive: nothing the app does today changes.',
  );

  // 3. Proxy
  stopIfClosing(ws);
  n.step(3, 'Start switchyard in front of Postgres');
  const configDir = path.join(ws.root, 'config');
  await fs.mkdir(configDir);
  const configPath = path.join(configDir, 'switchyard.yaml');
  const [listenPort, adminPort] = [await freePort(), await freePort()];
  await fs.writeFile(
    configPath,
    demoConfigYaml({ listenPort, adminPort, upstreamPort: cluster.port, reads: 'old' }),
  );
  const logPath = path.join(ws.root, 'switchyard.log');
  const logFd = openSync(logPath, 'a');
  ws.defer('proxy log', () => closeSync(logFd), { quiet: true });
  const log = pino({ level: 'info' }, pino.destination({ dest: logFd, sync: true }));
  const runtime = await startRuntime({ loaded: loadConfigFile(configPath), logger: log, watch: true });
  ws.defer('switchyard proxy', () => runtime.shutdown(0));
  const proxyUrl = `postgres://postgres@127.0.0.1:${runtime.address.port}/${DEMO_DATABASE}`;
  const adminUrl = `http://127.0.0.1:${runtime.admin?.port ?? adminPort}`;
  n.say(`Config ${configPath}, mapping ${MAPPING_NAME}:`);
  n.block(mappingYaml(await fs.readFile(configPath, 'utf8')));
  n.say(
    `Proxy on 127.0.0.1:${runtime.address.port}, admin endpoint ${adminUrl} (/metrics /status /healthz).`,
    'Connect through the proxy exactly as you would to Postgres (with --keep-running it stays up after the tour):',
  );
  n.cmd(`psql "${proxyUrl}"`);
  const app = await connectClient(proxyUrl, 'demo-app');
  ws.defer('app connection', () => app.end().catch(() => {}), { quiet: true });

  const ctx: Ctx = {
    n,
    ws,
    log,
    cluster,
    direct,
    runtime,
    app,
    configPath,
    proxyUrl,
    adminUrl,
    result: { failures: [], unavailable: [], proxyUrl, adminUrl, configPath, logPath },
    ids: { inserted: [], updated: 0, deleted: 0 },
  };
  const rulesLive = runtime.store.current.rules.session.active;

  for (const step of [dualWriteStep, backfillStep, verifyStep, readSwitchStep, killSwitchStep, metricsStep]) {
    stopIfClosing(ws);
    await step(ctx, rulesLive);
  }

  stopIfClosing(ws);
  n.step(10, 'Contract, later');
  n.say(
    'Once users_v2 has served reads through a confidence window, ship the app version',
    'that uses users_v2 directly, remove the mapping, and only then drop users.',
    'Until then rollback is a forward fix: set reads back to old; the schema stays expanded.',
  );
  return ctx.result;
}

/** Interrupted (Ctrl-C): the teardown is stopping what the next step would use. */
function stopIfClosing(ws: Workspace): void {
  if (ws.closed) throw new Error('interrupted');
}

/** The mappings: section of the config, for display. */
function mappingYaml(text: string): string {
  const i = text.indexOf('mappings:');
  return i >= 0 ? text.slice(i) : text;
}

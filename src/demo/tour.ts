// `switchyard demo`: the whole expand -> dual-write -> backfill -> verify ->
// read-switch migration on a throwaway Postgres, with the real proxy, the real
// backfill and the real verify, narrated step by step.
import { closeSync, openSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import type pg from 'pg';
import pino from 'pino';
import { ProgressReporter, type ProgressSnapshot, renderBar } from '../backfill/progress.ts';
import { Backfill, type BackfillStats, DEFAULT_OPTIONS } from '../backfill/runner.ts';
import { loadMapping } from '../backfill/setup.ts';
import { loadConfigFile } from '../config/load.ts';
import type { ConfigStore } from '../config/store.ts';
import type { Logger } from '../log.ts';
import { type Runtime, startRuntime } from '../proxy/runtime.ts';
import { DEFAULT_VERIFY_OPTIONS, type Drift, type VerifyResult, verifyMapping } from '../verify/compare.ts';
import { backgroundWrites, connectClient } from './app.ts';
import { freePort, LocalCluster } from './cluster.ts';
import type { Narrator } from './narrate.ts';
import { DEMO_DATABASE, demoConfigYaml, MAPPING_NAME, SCHEMA_SQL, seedSql } from './schema.ts';
import { summarize } from './summary.ts';
import type { Workspace } from './workspace.ts';

export const STEPS = 10;
export const HISTORICAL_ROWS = 10_000;
/** A row written straight into users_v2, behind the proxy's back: only reads served by users_v2 can see it. */
const MARKER_ID = 1_000_000;
const RELOAD_WAIT_MS = 5000;

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

interface Ctx {
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

function fail(ctx: Ctx, step: string, why: string): void {
  ctx.n.fail(why);
  ctx.result.failures.push(`${step}: ${why}`);
}

function unavailable(ctx: Ctx, step: string, why: string): void {
  ctx.n.unavailable(why);
  ctx.result.unavailable.push(`${step}: ${why}`);
}

const RULES_MISSING =
  'this build of the proxy does not apply mapping rules yet (the planner is not wired into sessions): every statement passes through unchanged';

interface UserRow {
  id: string;
  first_name?: string;
  last_name?: string;
  full_name?: string;
  email: string;
}

async function rowsById(
  c: pg.Client,
  table: 'users' | 'users_v2',
  ids: number[],
): Promise<Map<number, UserRow>> {
  const cols = table === 'users' ? 'id, first_name, last_name, email' : 'id, full_name, email';
  const r = await c.query<UserRow>(`SELECT ${cols} FROM ${table} WHERE id = ANY($1::bigint[])`, [ids]);
  return new Map(r.rows.map((row) => [Number(row.id), row]));
}

async function count(c: pg.Client, table: string): Promise<number> {
  const r = await c.query<{ n: string }>(`SELECT count(*) AS n FROM ${table}`);
  return Number(r.rows[0].n);
}

async function dualWriteStep(ctx: Ctx, rulesLive: boolean): Promise<void> {
  const { n, app, direct } = ctx;
  n.step(4, 'Dual-write: the app writes to users; switchyard mirrors each write into users_v2');
  n.say('The app (node-postgres, connected to the proxy) runs ordinary statements on users only:');
  const ins = await app.query<{ id: string }>(
    `INSERT INTO users (first_name, last_name, email)
     VALUES ('Ada', 'Lovelace', 'Ada.Lovelace@Example.com'), ('Grace', 'Hopper', 'Grace.Hopper@Example.com')
     RETURNING id`,
  );
  const [ada, grace] = ins.rows.map((r) => Number(r.id));
  const historical = 42;
  const replies = [
    ins,
    await app.query('UPDATE users SET last_name = $1 WHERE id = $2', ['Byron', ada]),
    await app.query("UPDATE users SET first_name = 'Alan', last_name = 'Turing' WHERE id = $1", [historical]),
    await app.query('DELETE FROM users WHERE id = $1', [grace]),
  ].map((r) => `-> ${r.command}${r.command === 'INSERT' ? ' 0' : ''} ${r.rowCount}`);
  ctx.ids = { inserted: [ada, grace], updated: historical, deleted: grace };
  n.block(
    [
      `INSERT INTO users (first_name, last_name, email) VALUES ('Ada', 'Lovelace', ...), ('Grace', 'Hopper', ...) RETURNING id   ${replies[0]} (ids ${ada}, ${grace})`,
      `UPDATE users SET last_name = 'Byron' WHERE id = ${ada}   ${replies[1]}`,
      `UPDATE users SET first_name = 'Alan', last_name = 'Turing' WHERE id = ${historical}   ${replies[2]}   (a historical row)`,
      `DELETE FROM users WHERE id = ${grace}   ${replies[3]}`,
    ].join('\n'),
  );
  const expectedReplies = ['-> INSERT 0 2', '-> UPDATE 1', '-> UPDATE 1', '-> DELETE 1'];
  if (rulesLive && replies.join() !== expectedReplies.join()) {
    fail(ctx, 'dual-write', `the app got ${replies.join(', ')} instead of ${expectedReplies.join(', ')}`);
  } else {
    n.say('The replies are exactly what Postgres gives for these statements on users alone.');
  }
  const ids = [ada, grace, historical];
  const [oldRows, newRows] = [await rowsById(direct, 'users', ids), await rowsById(direct, 'users_v2', ids)];
  n.say('Read straight from Postgres (not through the proxy), the two tables now hold:');
  n.table(
    ['id', 'users (old)', 'users_v2 (new)'],
    ids.map((id) => {
      const o = oldRows.get(id);
      const v = newRows.get(id);
      return [
        String(id),
        o ? `${o.first_name} ${o.last_name} <${o.email}>` : '(deleted)',
        v ? `${v.full_name} <${v.email}>` : id === grace ? '(deleted)' : '(absent)',
      ];
    }),
  );
  if (!rulesLive) {
    unavailable(ctx, 'dual-write', RULES_MISSING);
    return;
  }
  const adaNew = newRows.get(ada);
  const turing = newRows.get(historical);
  const ok =
    adaNew?.full_name === 'Ada Byron' &&
    adaNew.email === 'ada.lovelace@example.com' &&
    turing?.full_name === 'Alan Turing' &&
    !newRows.has(grace);
  if (!ok) {
    fail(ctx, 'dual-write', 'users_v2 does not hold up(users) for the rows the app wrote');
    return;
  }
  n.ok('every write reached users_v2 in the same statement, through the mapping (full_name, lower(email))');
  n.say(
    `Row ${historical} predates dual-write; updating it through the proxy copied it into users_v2.`,
    `users_v2 has ${await count(direct, 'users_v2')} rows: the ones the app touched. The history is the backfill's job.`,
  );
}

async function backfillStep(ctx: Ctx, rulesLive: boolean): Promise<void> {
  const { n, direct } = ctx;
  n.step(5, 'Backfill: copy the historical rows in small batches');
  n.say(
    'The history predates dual-write, so it is copied by the backfill, through the same up()',
    'SQL the mirror uses. Each batch is a short transaction with a lock timeout; progress is',
    'checkpointed in the switchyard schema, so a stopped run resumes; it pauses while replica lag is high.',
  );
  n.cmd(`npx switchyard backfill --config ${ctx.configPath} --mapping ${MAPPING_NAME} --batch-size 500`);
  const { mapping, clientConfig } = await loadMapping(ctx.configPath, MAPPING_NAME, 'switchyard-backfill');
  // The app does not stop for the backfill: a second connection keeps writing through the proxy.
  const worker = await connectClient(ctx.proxyUrl, 'demo-app-worker');
  ctx.ws.defer('app worker connection', () => worker.end().catch(() => {}), { quiet: true });
  const traffic = backgroundWrites(worker, HISTORICAL_ROWS);
  const tty = process.stdout.isTTY === true;
  let reporter: ProgressReporter | undefined;
  // The total is an estimate (reltuples) until the run ends; then it is what the run found.
  let finished = false;
  let snapshot: (() => ProgressSnapshot) | undefined;
  const backfill: Backfill = new Backfill(
    mapping,
    clientConfig,
    { ...DEFAULT_OPTIONS, batchSize: 500 },
    ctx.log.child({ component: 'backfill' }),
    {
      onPlanned: (info) => {
        snapshot = () => {
          const rows = info.rowsBefore + backfill.stats.rowsScanned;
          const rate = backfill.rate.rate();
          return {
            rows,
            inserted: backfill.stats.rowsInserted,
            total: finished ? rows : Math.max(info.estimatedRows, rows),
            rate,
            etaSeconds: rate > 0 ? Math.max(0, info.estimatedRows - rows) / rate : undefined,
            note: backfill.pausedNote,
          };
        };
        if (tty) {
          reporter = new ProgressReporter(snapshot, {
            tty,
            stream: process.stdout,
            log: ctx.log,
            intervalMs: 200,
          });
          reporter.start();
        }
      },
    },
  );
  let stats: BackfillStats;
  try {
    stats = await backfill.run();
    finished = stats.outcome === 'done';
  } finally {
    reporter?.stop();
  }
  const app = await traffic.stop();
  if (!tty && snapshot) n.say(renderBar({ ...snapshot(), etaSeconds: 0 }));
  n.say(
    `${stats.outcome}: ${stats.rowsScanned.toLocaleString('en-US')} rows scanned, ${stats.rowsInserted.toLocaleString('en-US')} inserted, ` +
      `${stats.batches} batches, ${(stats.elapsedMs / 1000).toFixed(1)} s; rows the app had already mirrored were left as they were.`,
    `Meanwhile the app made ${app.updates} updates, ${app.inserts} inserts and ${app.deletes} deletes through the proxy.`,
  );
  if (app.errors.length > 0) fail(ctx, 'backfill', `app writes failed during the backfill: ${app.errors[0]}`);
  const [olds, news] = [await count(direct, 'users'), await count(direct, 'users_v2')];
  n.say(`users: ${olds.toLocaleString('en-US')} rows, users_v2: ${news.toLocaleString('en-US')} rows.`);
  if (stats.outcome !== 'done') fail(ctx, 'backfill', `the run ended ${stats.outcome}`);
  else if (rulesLive && olds !== news) fail(ctx, 'backfill', 'users and users_v2 hold different row counts');
}

async function verify(ctx: Ctx, repair: boolean): Promise<{ result: VerifyResult; drift: Drift[] }> {
  const { mapping, clientConfig } = await loadMapping(ctx.configPath, MAPPING_NAME, 'switchyard-verify');
  const drift: Drift[] = [];
  const result = await verifyMapping(
    mapping,
    clientConfig,
    { ...DEFAULT_VERIFY_OPTIONS, chunkRows: 2000, repair },
    ctx.log.child({ component: 'verify' }),
    { onDrift: (d) => void drift.push(d) },
  );
  return { result, drift };
}

function brief(items: string[], max = 5): string {
  return items.length > max
    ? `${items.slice(0, max).join(', ')} and ${items.length - max} more`
    : items.join(', ');
}

function driftLine(r: VerifyResult): string {
  return `missing ${r.drift.missing}, extra ${r.drift.extra}, different ${r.drift.different}`;
}

async function verifyStep(ctx: Ctx, _rulesLive: boolean): Promise<void> {
  const { n } = ctx;
  n.step(6, 'Verify: compare up(users) with users_v2, chunk by chunk');
  n.say(
    'Verify reads one consistent snapshot (never blocking writers), compares each key-ordered chunk',
    'by row count and hash on both sides, and drills into the chunks that differ.',
  );
  n.cmd(`npx switchyard verify --config ${ctx.configPath} --mapping ${MAPPING_NAME}`);
  const { result, drift } = await verify(ctx, false);
  n.say(
    `${result.oldRows.toLocaleString('en-US')} rows in ${result.chunks} chunks, ${(result.elapsedMs / 1000).toFixed(1)} s: ${driftLine(result)}`,
  );
  if (drift.length === 0) n.ok('verify found no drift: users_v2 = up(users), safe to switch reads');
  else
    fail(
      ctx,
      'verify',
      `drift found: ${drift
        .slice(0, 3)
        .map((d) => `${d.kind} ${JSON.stringify(d.key)}`)
        .join(', ')}`,
    );
}

/** Resolves with the change list of the next accepted reload, or undefined after the timeout. */
function nextReload(store: ConfigStore<unknown>, timeoutMs: number): Promise<string[] | undefined> {
  return new Promise((resolve) => {
    const onChange = (_snap: unknown, changes: string[]) => {
      clearTimeout(timer);
      store.off('change', onChange);
      resolve(changes);
    };
    const timer = setTimeout(() => {
      store.off('change', onChange);
      resolve(undefined);
    }, timeoutMs);
    store.on('change', onChange);
  });
}

/** Edits the config file the way an operator would, and waits for the proxy to pick it up. */
async function editConfig(ctx: Ctx, from: RegExp, to: string): Promise<string[] | undefined> {
  const text = await fs.readFile(ctx.configPath, 'utf8');
  if (!from.test(text)) throw new Error(`demo config ${ctx.configPath} has no line matching ${from}`);
  const store = ctx.runtime.store as ConfigStore<unknown>;
  const reloaded = nextReload(store, RELOAD_WAIT_MS);
  await fs.writeFile(ctx.configPath, text.replace(from, to));
  const changes = await reloaded;
  if (changes) return changes;
  // The directory watch did not fire (some filesystems never report changes): SIGHUP's path.
  const before = store.current.version;
  await ctx.runtime.reloader?.reload('demo');
  return store.current.version > before ? ['reloaded by SIGHUP fallback'] : undefined;
}

async function readSwitchStep(ctx: Ctx, rulesLive: boolean): Promise<void> {
  const { n, app, direct } = ctx;
  n.step(7, "Read switch: serve the app's reads of users from users_v2");
  await direct.query(
    `INSERT INTO users_v2 (id, full_name, email, created_at) VALUES ($1, 'Only InUsersV2', 'only-in-users-v2@example.com', now())`,
    [MARKER_ID],
  );
  n.say(
    `To make the switch visible, row ${MARKER_ID} is written straight into users_v2, bypassing the proxy.`,
    'The app keeps running one prepared statement through the proxy:',
  );
  const query = {
    name: 'user-by-id',
    text: 'SELECT id, first_name, last_name, email FROM users WHERE id = ANY($1::bigint[]) ORDER BY id',
    values: [[ctx.ids.updated, MARKER_ID]],
  };
  n.block(query.text);
  const show = (rows: UserRow[]) =>
    n.table(
      ['id', 'first_name', 'last_name', 'email'],
      rows.map((r) => [String(r.id), r.first_name ?? '', r.last_name ?? '', r.email]),
    );
  const before = await app.query<UserRow>(query);
  n.say('With reads: old it returns:');
  show(before.rows);

  n.say(`Now edit ${path.basename(ctx.configPath)}: reads: old -> reads: new, and save.`);
  const changes = await editConfig(ctx, /^(\s*)reads: old$/m, '$1reads: new');
  if (!changes) {
    fail(ctx, 'read switch', `the proxy did not reload ${ctx.configPath} within ${RELOAD_WAIT_MS / 1000}s`);
    return;
  }
  n.say(`The proxy reloaded it (config version ${ctx.runtime.store.current.version}): ${changes.join('; ')}`);
  const after = await app.query<UserRow>(query);
  n.say('The same prepared statement, on the same connection, now returns:');
  show(after.rows);
  if (!rulesLive) {
    unavailable(ctx, 'read switch', RULES_MISSING);
  } else if (
    after.rows.some((r) => Number(r.id) === MARKER_ID) &&
    after.rows.every((r) => r.email === r.email.toLowerCase())
  ) {
    n.ok(`served from users_v2: row ${MARKER_ID} exists only there, and emails come back lower-cased`);
    n.say(
      'switchyard replaced users with a subquery over users_v2 that presents the old columns',
      'through the down expressions, so the app sees the same columns and types.',
    );
  } else {
    fail(
      ctx,
      'read switch',
      `row ${MARKER_ID} (only in users_v2) is not visible through the proxy after reads: new`,
    );
  }
}

async function killSwitchStep(ctx: Ctx, rulesLive: boolean): Promise<void> {
  const { n, app, direct } = ctx;
  n.step(8, 'Kill switch: stop all mirroring at once');
  n.say(
    'During an incident, one request stops every mirrored write (or set killSwitch: true in the config):',
  );
  n.cmd(`curl -X POST ${ctx.adminUrl}/kill-switch -d on`);
  const on = await postKillSwitch(ctx.adminUrl, 'on');
  n.say(`-> kill switch ${on.killSwitch.effective ? 'ON' : 'off'}`);
  const r = await app.query<{ id: string }>(
    "INSERT INTO users (first_name, last_name, email) VALUES ('Hedy', 'Lamarr', 'Hedy.Lamarr@Example.com') RETURNING id",
  );
  const hedy = Number(r.rows[0].id);
  const inOld = (await rowsById(direct, 'users', [hedy])).has(hedy);
  const inNew = (await rowsById(direct, 'users_v2', [hedy])).has(hedy);
  n.say(
    `The app inserts Hedy Lamarr (id ${hedy}): in users ${inOld ? 'yes' : 'no'}, in users_v2 ${inNew ? 'yes' : 'no'}.`,
  );
  if (rulesLive && (!inOld || inNew))
    fail(ctx, 'kill switch', 'the insert was mirrored although the kill switch is on');
  else if (rulesLive) n.ok('the write went to users only: nothing is mirrored while the switch is on');
  n.say(
    'Reads still come from users_v2, which now misses that row: in a real rollback you would also',
    `set reads back to old. Verify finds such drift, and row ${MARKER_ID} too, written behind the proxy's back:`,
  );
  n.cmd(`npx switchyard verify --config ${ctx.configPath} --mapping ${MAPPING_NAME} --repair`);
  const { result, drift } = await verify(ctx, true);
  for (const d of drift.slice(0, 5)) {
    n.say(`  ${d.kind.padEnd(9)} ${JSON.stringify(d.key)}${d.repaired ? '  repaired' : ''}`);
  }
  if (drift.length > 5) n.say(`  ... and ${drift.length - 5} more`);
  n.say(`${driftLine(result)}; repaired ${result.repaired}, still different ${result.unrepaired}`);
  const found = new Set(drift.map((d) => `${d.kind}:${d.keyValues.join(',')}`));
  const expected = rulesLive ? [`missing:${hedy}`, `extra:${MARKER_ID}`] : [`extra:${MARKER_ID}`];
  if (found.size === expected.length && expected.every((k) => found.has(k)) && result.unrepaired === 0) {
    n.ok(
      rulesLive
        ? 'verify found exactly the row written under the kill switch and the row written behind the proxy, and repaired both'
        : `verify found exactly row ${MARKER_ID}, written behind the proxy, and repaired it`,
    );
  } else {
    fail(
      ctx,
      'kill switch',
      `verify --repair reported ${brief([...found]) || 'nothing'}, expected ${expected.join(', ')}`,
    );
  }
  n.cmd(`curl -X POST ${ctx.adminUrl}/kill-switch -d clear`);
  const cleared = await postKillSwitch(ctx.adminUrl, 'clear');
  n.say(`-> kill switch ${cleared.killSwitch.effective ? 'ON' : 'off'} (the config decides again)`);
}

async function postKillSwitch(
  adminUrl: string,
  state: 'on' | 'off' | 'clear',
): Promise<{ killSwitch: { effective: boolean } }> {
  const res = await fetch(`${adminUrl}/kill-switch`, { method: 'POST', body: state });
  const body = (await res.json()) as { killSwitch: { effective: boolean }; error?: string };
  if (!res.ok) throw new Error(`POST /kill-switch ${state}: ${res.status} ${body.error ?? ''}`);
  return body;
}

async function metricsStep(ctx: Ctx, _rulesLive: boolean): Promise<void> {
  const { n } = ctx;
  n.step(9, 'What the metrics saw');
  const s = await summarize();
  const routes = ['passthrough', 'mirrored_write', 'read_old', 'read_new'];
  n.table(
    ['route', 'statements', 'errors'],
    routes.map((r) => [r, String(s.statementsByRoute[r] ?? 0), String(s.errorsByRoute[r] ?? 0)]),
  );
  const f = (v: number | undefined) => (v === undefined ? 'n/a' : `${v.toFixed(2)} ms`);
  n.say(
    `mirrored writes: ${s.mirroredWrites.count}, p50 ${f(s.mirroredWrites.p50Ms)}, p99 ${f(s.mirroredWrites.p99Ms)}; mirror failures ${s.mirrorFailures}`,
    `config reloads: ${s.reloads.ok} ok, ${s.reloads.error} refused`,
    `backfill rows copied: ${s.backfillRows}; verify chunks compared: ${s.verifyChunks}, drifted rows found: ${s.verifyDrift}, repaired: ${s.repairedRows}`,
    `All of it, and more, at ${ctx.adminUrl}/metrics (see docs/metrics.md).`,
  );
}

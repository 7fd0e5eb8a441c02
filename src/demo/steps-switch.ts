// Demo steps 7-9: the read switch by editing the config, the kill switch, the metrics.
import fs from 'node:fs/promises';
import path from 'node:path';
import type { ConfigStore } from '../config/store.ts';
import { MAPPING_NAME } from './schema.ts';
import { brief, driftLine, verify } from './steps-data.ts';
import { summarize } from './summary.ts';
import {
  type Ctx,
  fail,
  MARKER_ID,
  RELOAD_WAIT_MS,
  RULES_MISSING,
  rowsById,
  type UserRow,
  unavailable,
} from './tour-context.ts';

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

export async function readSwitchStep(ctx: Ctx, rulesLive: boolean): Promise<void> {
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

export async function killSwitchStep(ctx: Ctx, rulesLive: boolean): Promise<void> {
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

export async function metricsStep(ctx: Ctx, _rulesLive: boolean): Promise<void> {
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

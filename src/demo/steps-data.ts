// Demo steps 4-6: dual-write, the backfill under live writes, verify.
import { ProgressReporter, type ProgressSnapshot, renderBar } from '../backfill/progress.ts';
import { Backfill, type BackfillStats, DEFAULT_OPTIONS } from '../backfill/runner.ts';
import { loadMapping } from '../backfill/setup.ts';
import { DEFAULT_VERIFY_OPTIONS, type Drift, type VerifyResult, verifyMapping } from '../verify/compare.ts';
import { backgroundWrites, connectClient } from './app.ts';
import { MAPPING_NAME } from './schema.ts';
import {
  type Ctx,
  count,
  fail,
  HISTORICAL_ROWS,
  RULES_MISSING,
  rowsById,
  unavailable,
} from './tour-context.ts';

export async function dualWriteStep(ctx: Ctx, rulesLive: boolean): Promise<void> {
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

export async function backfillStep(ctx: Ctx, rulesLive: boolean): Promise<void> {
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

export async function verify(ctx: Ctx, repair: boolean): Promise<{ result: VerifyResult; drift: Drift[] }> {
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

export function brief(items: string[], max = 5): string {
  return items.length > max
    ? `${items.slice(0, max).join(', ')} and ${items.length - max} more`
    : items.join(', ');
}

export function driftLine(r: VerifyResult): string {
  return `missing ${r.drift.missing}, extra ${r.drift.extra}, different ${r.drift.different}`;
}

export async function verifyStep(ctx: Ctx, _rulesLive: boolean): Promise<void> {
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

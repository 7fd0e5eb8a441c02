// `backfill --dry-run`: what a run would do, from read-only queries. Creates
// no schema, takes no locks beyond a plain SELECT's, writes nothing.
import type pg from 'pg';
import { keyColumns } from '../rules/key-columns.ts';
import type { CompiledMapping } from '../rules/mapping.ts';
import { qualified } from '../rules/rowsql.ts';
import { batchStatements } from './batch.ts';
import { fingerprint, readRun, runTotals, schemaExists } from './checkpoint.ts';
import { chunkCount, measureKeySpace } from './plan.ts';
import type { BackfillOptions } from './runner.ts';

export async function dryRunPlan(c: pg.Client, m: CompiledMapping, opts: BackfillOptions): Promise<string> {
  const keys = keyColumns(m);
  const space = await measureKeySpace(c, m, keys);
  const lines: string[] = [];
  const fmt = (k: string[] | null) => (k ? (k.length === 1 ? k[0] : `(${k.join(', ')})`) : '-');
  lines.push(`backfill plan for mapping ${m.name} (dry run: nothing written)`);
  lines.push(
    m.sameTable
      ? `  fill:        ${m.up.map((u) => u.column).join(', ')} of ${qualified(m.new)} where they differ from up(row)`
      : `  copy:        ${qualified(m.old)} -> ${qualified(m.new)}`,
  );
  lines.push(
    `  walk key:    ${keys.map((k) => `${k.oldColumn} -> ${k.newColumn}`).join(', ')} (keyset pagination on old)`,
  );
  lines.push(
    `  key range:   ${fmt(space.lowest)} .. ${fmt(space.highest)} (upper bound fixed when the run starts)`,
  );
  lines.push(`  est. rows:   ${space.estimatedRows.toLocaleString('en-US')}`);
  const batches = Math.ceil(space.estimatedRows / opts.batchSize);
  lines.push(
    `  batches:     ~${batches.toLocaleString('en-US')} of ${opts.batchSize.toLocaleString('en-US')} rows to start, adapting toward ${opts.targetBatchMs} ms each`,
  );
  const chunks = space.highest ? chunkCount(space.estimatedRows, opts.chunkRows, opts.workers) : 0;
  lines.push(`  chunks:      ~${chunks} claimed by ${opts.workers} worker${opts.workers > 1 ? 's' : ''}`);
  lines.push(
    `  per batch:   lock_timeout ${opts.lockTimeoutMs} ms, statement_timeout ${opts.statementTimeoutMs} ms, retried with backoff`,
  );
  lines.push(
    opts.maxLagMs > 0
      ? `  throttle:    pause while replica lag > ${opts.maxLagMs} ms (${opts.replicas.length > 0 ? `measured on ${opts.replicas.length} replica(s)` : 'measured in pg_stat_replication'})`
      : '  throttle:    off',
  );
  if (await schemaExists(c)) {
    const run = await readRun(c, m.name);
    if (run) {
      const t = await runTotals(c, m.name);
      const same = run.fingerprint === fingerprint(m);
      lines.push(
        `  checkpoint:  ${run.finished_at ? 'finished' : 'in progress'} since ${run.started_at.toISOString()}, ${t.done}/${t.chunks} chunks, ${t.rowsScanned.toLocaleString('en-US')} rows done${same ? '' : ' (planned for a different mapping definition: needs --restart)'}`,
      );
    } else {
      lines.push('  checkpoint:  none (a new run would be planned)');
    }
  } else {
    lines.push('  checkpoint:  none (schema switchyard would be created)');
  }
  const s = batchStatements(m, keys);
  lines.push('  batch statement:');
  for (const l of s.copyFrom.split('\n')) lines.push(`    ${l.trim()}`);
  if (s.copyFromOnConflict) {
    lines.push('  after a unique violation (a key the dual-write inserted meanwhile), the same batch as:');
    for (const l of s.copyFromOnConflict.split('\n')) lines.push(`    ${l.trim()}`);
  }
  return `${lines.join('\n')}\n`;
}

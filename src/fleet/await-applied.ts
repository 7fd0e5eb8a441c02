// After a change: wait until every live sidecar reports it applies the new
// version, or the deadline passes, and say who did and who did not.
import type pg from 'pg';
import { sleep } from '../pg/connect.ts';
import { listSidecars, type SidecarRow } from './sidecars.ts';

export interface AppliedReport {
  version: number;
  /** Live sidecars applying the version (or a later one), each with its delay after the change. */
  applied: Array<SidecarRow & { delayMs: number | null }>;
  /** Live sidecars still behind at the deadline. */
  pending: SidecarRow[];
  /** Sidecars whose heartbeat is too old to count: not waited for. */
  stale: SidecarRow[];
  /** From the change to the last live sidecar applying it (database clock); null while some did not. */
  convergedMs: number | null;
  waitedMs: number;
}

export async function awaitApplied(
  client: pg.Client,
  change: { version: number; at: Date },
  opts: { timeoutMs: number; staleAfterMs: number; pollMs?: number },
): Promise<AppliedReport> {
  const started = Date.now();
  for (;;) {
    const rows = await listSidecars(client, opts.staleAfterMs);
    const live = rows.filter((r) => !r.stale);
    const applied = live
      .filter((r) => r.appliedVersion >= change.version)
      .map((r) => ({
        ...r,
        delayMs: r.appliedAt ? Math.max(0, Date.parse(r.appliedAt) - change.at.getTime()) : null,
      }));
    const pending = live.filter((r) => r.appliedVersion < change.version);
    const waitedMs = Date.now() - started;
    if (pending.length === 0 || waitedMs >= opts.timeoutMs) {
      const delays = applied.map((r) => r.delayMs ?? 0);
      return {
        version: change.version,
        applied,
        pending,
        stale: rows.filter((r) => r.stale),
        convergedMs: pending.length === 0 ? Math.max(0, ...delays) : null,
        waitedMs,
      };
    }
    await sleep(opts.pollMs ?? 25);
  }
}

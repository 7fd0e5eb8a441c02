// Shadow reads (GitHub's Scientist, done by the proxy): a sampled read that
// the client was served from old runs again, as the client sent it (with its
// parameter values, for the extended protocol) and switched to new, on a
// connection of the proxy's own, never on the client's. Both run in one REPEATABLE READ READ ONLY transaction, so they see
// the same data and nothing they call can write; the results are compared as
// multisets of rows in their text form. A mismatch is run once more in a
// fresh snapshot before it counts, so a write racing the first run is not
// reported. At most `maxConcurrent` shadow reads run at once: one beyond that
// is skipped, never queued behind the client.

import pg from 'pg';
import type { Logger } from 'pino';
import { metrics } from '../metrics.ts';
import { quoteIdent } from '../pg/ident.ts';
import type { ShadowJob, ShadowSink } from '../proxy/rules-port.ts';

/** Results larger than this are not compared (the shadow read would cost more than it tells). */
const MAX_ROWS = 10_000;
const STATEMENT_TIMEOUT_MS = 5000;

type Outcome = 'match' | 'mismatch' | 'error' | 'skipped';

/** Every value as the server's text, so the comparison never depends on a parser. */
const RAW_TYPES = { getTypeParser: () => (v: string) => v } as unknown as pg.CustomTypesConfig;

export class ShadowReads implements ShadowSink {
  private inFlight = 0;
  private readonly idle: pg.Client[] = [];
  private closed = false;

  constructor(
    private readonly clientConfig: () => pg.ClientConfig,
    private readonly logger: Logger,
  ) {}

  offer(job: ShadowJob): void {
    if (this.closed || this.inFlight >= job.maxConcurrent) {
      this.count(job.mapping, 'skipped');
      return;
    }
    this.inFlight++;
    setImmediate(() => {
      this.run(job)
        .then((o) => this.count(job.mapping, o))
        .finally(() => {
          this.inFlight--;
        });
    });
  }

  /** Shadow reads running now (tests wait for 0). */
  get running(): number {
    return this.inFlight;
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all(this.idle.splice(0).map((c) => c.end().catch(() => {})));
  }

  private count(mapping: string, outcome: Outcome): void {
    metrics.shadowReads.inc({ mapping, result: outcome });
    if (outcome === 'mismatch') metrics.shadowReadMismatches.inc({ mapping });
  }

  private async client(): Promise<pg.Client> {
    const c = this.idle.pop();
    if (c) return c;
    const fresh = new pg.Client({
      ...this.clientConfig(),
      application_name: 'switchyard-shadow',
      types: RAW_TYPES,
    });
    fresh.on('error', () => {});
    await fresh.connect();
    return fresh;
  }

  private async run(job: ShadowJob): Promise<Outcome> {
    let c: pg.Client | undefined;
    try {
      c = await this.client();
      let first = await compare(c, job);
      if (first.outcome === 'mismatch') first = await compare(c, job);
      if (first.outcome === 'mismatch') {
        this.logger.warn(
          {
            mapping: job.mapping,
            statement: job.oldSql.slice(0, 500),
            old: first.oldRows,
            new: first.newRows,
            differ: first.example,
          },
          'shadow read: the read switched to new returns other rows than the one served from old',
        );
      }
      if (!this.closed) this.idle.push(c);
      else await c.end().catch(() => {});
      return first.outcome;
    } catch (e) {
      await c?.end().catch(() => {});
      this.logger.debug({ mapping: job.mapping, err: (e as Error).message }, 'shadow read failed');
      return 'error';
    }
  }
}

interface Comparison {
  outcome: Outcome;
  oldRows?: number;
  newRows?: number;
  /** A row one side has more often than the other. */
  example?: string;
}

async function compare(c: pg.Client, job: ShadowJob): Promise<Comparison> {
  const path = job.searchPath.map((s) => (s === '$user' ? '"$user"' : quoteIdent(s))).join(', ');
  await c.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
  try {
    await c.query(
      `SELECT pg_catalog.set_config('search_path', $1, true), pg_catalog.set_config('statement_timeout', $2, true)`,
      [path || '""', String(STATEMENT_TIMEOUT_MS)],
    );
    const old = await c.query({ text: job.oldSql, values: job.params, rowMode: 'array' });
    const neu = await c.query({ text: job.newSql, values: job.params, rowMode: 'array' });
    if (old.rows.length > MAX_ROWS || neu.rows.length > MAX_ROWS) return { outcome: 'skipped' };
    const counts = new Map<string, number>();
    for (const r of old.rows) {
      const k = JSON.stringify(r);
      counts.set(k, (counts.get(k) ?? 0) + 1);
    }
    for (const r of neu.rows) {
      const k = JSON.stringify(r);
      counts.set(k, (counts.get(k) ?? 0) - 1);
    }
    const example = [...counts].find(([, n]) => n !== 0)?.[0];
    return {
      outcome: example === undefined && old.fields.length === neu.fields.length ? 'match' : 'mismatch',
      oldRows: old.rows.length,
      newRows: neu.rows.length,
      ...(example !== undefined ? { example } : {}),
    };
  } finally {
    await c.query('ROLLBACK').catch(() => {});
  }
}

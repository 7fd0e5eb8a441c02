// A proxy running a mapping with dualWrite: both checks, in the background,
// that its rows survive the round trip through the other table (the same
// check as `switchyard check`, on a smaller sample). A lossy mapping still
// runs as configured (the operator chose it); it is logged, counted in
// switchyard_mapping_round_trip_lossy_columns and shown in /status, so it is
// found before a rollback reads what the other version wrote.
import type { Logger } from 'pino';
import type { RoundTripStatus } from '../admin/status.ts';
import type { ConfigStore } from '../config/store.ts';
import { metrics } from '../metrics.ts';
import { connect, upstreamClientConfig } from '../pg/connect.ts';
import type { CompiledRules } from '../proxy/rules-adapter.ts';
import type { CompiledMapping } from '../rules/mapping.ts';
import { checkRoundTrip } from '../verify/roundtrip.ts';

const SAMPLE = 200;

export class RoundTripWatch {
  private readonly results = new Map<string, { key: string; status: RoundTripStatus }>();
  private readonly onChange = () => this.refresh();

  constructor(
    private readonly store: ConfigStore<CompiledRules>,
    private readonly logger: Logger,
  ) {
    store.on('change', this.onChange);
    this.refresh();
  }

  /** The last outcome per mapping that has dualWrite: both now. */
  statuses(): Record<string, RoundTripStatus> {
    const out: Record<string, RoundTripStatus> = {};
    for (const m of this.store.current.config.mappings) {
      const r = this.results.get(m.name);
      if (m.dualWrite === 'both' && r) out[m.name] = r.status;
    }
    return out;
  }

  close(): void {
    this.store.off('change', this.onChange);
  }

  private refresh(): void {
    const snap = this.store.current;
    for (const m of snap.rules.ruleset?.mappings ?? []) {
      if (m.config.dualWrite !== 'both' || !(m.reverse || m.sameTable)) {
        // Nothing is mirrored back any more: no lossy round trip to report (a later flip checks again).
        this.results.delete(m.name);
        for (const side of ['old', 'new'] as const) metrics.roundTripLossy.remove({ mapping: m.name, side });
        continue;
      }
      // The same definition is checked once; a switch flip does not start another check.
      const key = JSON.stringify([m.old, m.new, m.key, m.up, m.down, m.reverse?.key]);
      if (this.results.get(m.name)?.key === key) continue;
      this.results.set(m.name, { key, status: { state: 'checking' } });
      void this.check(m, key, upstreamClientConfig(snap.config, { application_name: 'switchyard-check' }));
    }
  }

  private async check(m: CompiledMapping, key: string, cfg: Parameters<typeof connect>[0]): Promise<void> {
    let status: RoundTripStatus;
    try {
      const c = await connect(cfg, { statement_timeout: 30_000 });
      try {
        const r = await checkRoundTrip(c, m, { sample: SAMPLE, examples: 1 });
        const cols = (side: 'old' | 'new') =>
          r.sides.find((s) => s.side === side)?.lossy.map((l) => l.column) ?? [];
        status = { state: r.lossy ? 'lossy' : 'ok', lossy: { old: cols('old'), new: cols('new') } };
        for (const side of ['old', 'new'] as const) {
          metrics.roundTripLossy.set({ mapping: m.name, side }, cols(side).length);
        }
        if (r.lossy) {
          this.logger.warn(
            { mapping: m.name, lossy: status.lossy, examples: r.sides.flatMap((s) => s.lossy) },
            'dualWrite: both on a mapping whose columns do not survive the round trip: writes through one name change what the other reads (switchyard check lists them)',
          );
        }
      } finally {
        await c.end().catch(() => {});
      }
    } catch (e) {
      status = { state: 'error', error: (e as Error).message };
      this.logger.warn({ mapping: m.name, err: (e as Error).message }, 'round-trip check failed');
    }
    // A newer definition may have started its own check meanwhile.
    const cur = this.results.get(m.name);
    if (cur?.key === key) cur.status = { ...status, checkedAt: new Date().toISOString() };
  }
}

// The Grafana dashboard: valid JSON, sane layout, every switchyard_* name in
// its queries exists in the metrics registry, and every metric of the registry
// has a panel (a new metric needs one).
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { registry } from '../../src/metrics.ts';

const dashboard = JSON.parse(
  readFileSync(new URL('../../deploy/grafana/switchyard.json', import.meta.url), 'utf8'),
) as {
  uid: string;
  title: string;
  panels: Array<{
    type: string;
    title: string;
    gridPos: { x: number; y: number; w: number; h: number };
    targets?: Array<{ expr: string }>;
  }>;
  templating: { list: Array<{ name: string; query?: unknown; definition?: string }> };
  annotations: { list: Array<{ expr?: string }> };
};

/** Every series name the registry exposes; histograms expose _bucket, _sum and _count. */
async function exposedNames(): Promise<Set<string>> {
  const names = new Set<string>();
  for (const m of await registry.getMetricsAsJSON()) {
    if (String(m.type) === 'histogram') for (const s of ['_bucket', '_sum', '_count']) names.add(m.name + s);
    else names.add(m.name);
  }
  return names;
}

function allExpressions(): string[] {
  const exprs: string[] = [];
  for (const p of dashboard.panels) for (const t of p.targets ?? []) exprs.push(t.expr);
  for (const v of dashboard.templating.list) if (v.definition) exprs.push(v.definition);
  for (const a of dashboard.annotations.list) if (a.expr) exprs.push(a.expr);
  return exprs;
}

describe('deploy/grafana/switchyard.json', () => {
  it('every switchyard_* name in a query exists in the registry', async () => {
    const exposed = await exposedNames();
    const used = new Set(allExpressions().flatMap((e) => e.match(/\bswitchyard_[a-z0-9_]+/g) ?? []));
    expect(used.size).toBeGreaterThan(15);
    const unknown = [...used].filter((n) => !exposed.has(n));
    expect(unknown).toEqual([]);
  });

  it('histograms are queried through their buckets, sums or counts, never by the bare name', async () => {
    const histograms = (await registry.getMetricsAsJSON())
      .filter((m) => String(m.type) === 'histogram')
      .map((m) => m.name);
    for (const e of allExpressions()) {
      for (const h of histograms) expect(e).not.toMatch(new RegExp(`\\b${h}(?![a-z_])`));
    }
  });

  it('covers what an SRE watches during a migration', () => {
    const text = allExpressions().join('\n');
    for (const needle of [
      'histogram_quantile(0.5,',
      'histogram_quantile(0.99,',
      'switchyard_statement_duration_seconds_bucket',
      'switchyard_statements_total',
      'switchyard_statement_errors_total',
      'switchyard_mirror_failures_total',
      'switchyard_unmirrored_writes_total',
      'switchyard_mapping_dual_write',
      'switchyard_mapping_reads_new',
      'switchyard_kill_switch',
      'switchyard_config_version',
      'switchyard_config_reloads_total',
      'switchyard_client_connections',
      'switchyard_backfill_progress_ratio',
      'switchyard_backfill_rows_per_second',
      'switchyard_backfill_replica_lag_seconds',
      'switchyard_backfill_throttled_seconds_total',
      'switchyard_verify_drift_rows_total',
      'switchyard_mirrored_statement_errors_total',
      'switchyard_mapping_round_trip_lossy_columns',
      'switchyard_fleet_version',
      'switchyard_fleet_mapping_version',
      'switchyard_fleet_control_connected',
      'switchyard_fleet_control_errors_total',
      'switchyard_fleet_last_sync_timestamp_seconds',
    ]) {
      expect(text, needle).toContain(needle);
    }
  });

  it('has a panel for every metric of the registry', async () => {
    const text = allExpressions().join('\n');
    const missing = (await registry.getMetricsAsJSON())
      .map((m) => m.name)
      .filter((n) => !new RegExp(`\\b${n}(?:_bucket|_sum|_count)?(?![a-z0-9_])`).test(text));
    expect(missing).toEqual([]);
  });

  it('fleet panels show, per mapping, the lowest and highest control version across the sidecars', () => {
    const text = allExpressions().join('\n');
    expect(text).toContain('min by (mapping) (switchyard_fleet_mapping_version');
    expect(text).toContain('max by (mapping) (switchyard_fleet_mapping_version');
  });

  it('latency panels group by route', () => {
    const latency = allExpressions().filter((e) => e.includes('histogram_quantile'));
    expect(latency.some((e) => /by \(le, route\)/.test(e))).toBe(true);
  });

  it('has an id, variables the queries use, and panels that do not overlap', () => {
    expect(dashboard.uid).toBe('switchyard');
    const vars = new Set(dashboard.templating.list.map((v) => v.name));
    for (const e of allExpressions()) {
      for (const [, v] of e.matchAll(/\$([a-z_]+)/g)) {
        if (!v.startsWith('_')) expect(vars, `variable $${v} in ${e}`).toContain(v);
      }
    }
    const cells = new Set<string>();
    for (const p of dashboard.panels) {
      const { x, y, w, h } = p.gridPos;
      expect(x + w, p.title).toBeLessThanOrEqual(24);
      for (let i = x; i < x + w; i++) {
        for (let j = y; j < y + h; j++) {
          const cell = `${i},${j}`;
          if (cells.has(cell)) expect.fail(`${p.title} overlaps another panel at ${cell}`);
          cells.add(cell);
        }
      }
    }
  });
});

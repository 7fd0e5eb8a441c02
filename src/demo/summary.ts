// A short reading of the metrics registry for the end of the tour: what an
// SRE would look at on the dashboard, taken from the same counters.
import { registry } from '../metrics.ts';

interface Sample {
  value: number;
  labels: Record<string, string | number>;
  metricName?: string;
}

interface MetricJson {
  name: string;
  values: Sample[];
}

export interface MetricsSummary {
  statementsByRoute: Record<string, number>;
  errorsByRoute: Record<string, number>;
  mirroredWrites: { count: number; p50Ms: number | undefined; p99Ms: number | undefined };
  reloads: { ok: number; error: number };
  mirrorFailures: number;
  backfillRows: number;
  verifyChunks: number;
  verifyDrift: number;
  repairedRows: number;
}

/**
 * The q-quantile of a Prometheus histogram from its cumulative buckets, with
 * linear interpolation inside the bucket (what histogram_quantile() does).
 */
export function histogramQuantile(q: number, buckets: { le: number; count: number }[]): number | undefined {
  const sorted = [...buckets].sort((a, b) => a.le - b.le);
  const total = sorted.at(-1)?.count ?? 0;
  if (total === 0) return undefined;
  const rank = q * total;
  let prevLe = 0;
  let prevCount = 0;
  for (const b of sorted) {
    if (b.count >= rank) {
      if (!Number.isFinite(b.le)) return prevLe;
      const inBucket = b.count - prevCount;
      return inBucket === 0 ? b.le : prevLe + ((b.le - prevLe) * (rank - prevCount)) / inBucket;
    }
    prevLe = b.le;
    prevCount = b.count;
  }
  return prevLe;
}

function sumBy(m: MetricJson | undefined, label: string, filter: (s: Sample) => boolean = () => true) {
  const out: Record<string, number> = {};
  for (const s of m?.values ?? []) {
    if (!filter(s)) continue;
    const k = String(s.labels[label] ?? '');
    out[k] = (out[k] ?? 0) + s.value;
  }
  return out;
}

const total = (m: MetricJson | undefined) => (m?.values ?? []).reduce((a, s) => a + s.value, 0);

export async function summarize(): Promise<MetricsSummary> {
  const all = (await registry.getMetricsAsJSON()) as unknown as MetricJson[];
  const get = (name: string) => all.find((m) => m.name === name);
  const latency = get('switchyard_statement_duration_seconds');
  const byLe = new Map<number, number>();
  let count = 0;
  for (const s of latency?.values ?? []) {
    if (s.labels.route !== 'mirrored_write') continue;
    if (s.metricName?.endsWith('_bucket')) {
      const le = s.labels.le === '+Inf' ? Number.POSITIVE_INFINITY : Number(s.labels.le);
      byLe.set(le, (byLe.get(le) ?? 0) + s.value);
    } else if (s.metricName?.endsWith('_count')) {
      count += s.value;
    }
  }
  const buckets = [...byLe].map(([le, c]) => ({ le, count: c }));
  const ms = (v: number | undefined) => (v === undefined ? undefined : v * 1000);
  const reloads = sumBy(get('switchyard_config_reloads_total'), 'result');
  return {
    statementsByRoute: sumBy(get('switchyard_statements_total'), 'route'),
    errorsByRoute: sumBy(get('switchyard_statement_errors_total'), 'route'),
    mirroredWrites: {
      count,
      p50Ms: ms(histogramQuantile(0.5, buckets)),
      p99Ms: ms(histogramQuantile(0.99, buckets)),
    },
    reloads: { ok: reloads.ok ?? 0, error: reloads.error ?? 0 },
    mirrorFailures: total(get('switchyard_mirror_failures_total')),
    backfillRows: total(get('switchyard_backfill_rows_total')),
    verifyChunks: total(get('switchyard_verify_chunks_total')),
    verifyDrift: total(get('switchyard_verify_drift_rows_total')),
    repairedRows: total(get('switchyard_verify_repaired_rows_total')),
  };
}

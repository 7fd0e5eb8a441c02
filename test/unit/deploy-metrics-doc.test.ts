// docs/metrics.md documents every metric of the registry with its real type
// and labels, and nothing that does not exist.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { registry } from '../../src/metrics.ts';

const doc = readFileSync(new URL('../../docs/metrics.md', import.meta.url), 'utf8');

/** Rows of the metric tables: | `name` | type | labels | meaning | */
function documentedRows(): Map<string, { type: string; labels: string[]; meaning: string }> {
  const rows = new Map<string, { type: string; labels: string[]; meaning: string }>();
  for (const line of doc.split('\n')) {
    const cells = line.split('|').map((c) => c.trim());
    const name = /^`(switchyard_[a-z0-9_]+)`$/.exec(cells[1] ?? '')?.[1];
    if (!name || cells.length !== 6) continue;
    if (rows.has(name)) throw new Error(`${name} documented twice`);
    const labels = cells[3] === '' ? [] : cells[3].split(',').map((l) => l.trim());
    rows.set(name, { type: cells[2], labels, meaning: cells[4] });
  }
  return rows;
}

async function registryMetrics() {
  const out: Array<{ name: string; type: string; labels: string[] }> = [];
  for (const metric of registry.getMetricsAsArray()) {
    const m = metric as unknown as { name: string; labelNames: string[]; get(): Promise<{ type: string }> };
    out.push({ name: m.name, type: String((await m.get()).type), labels: [...m.labelNames] });
  }
  return out;
}

describe('docs/metrics.md', () => {
  it('documents every registry metric with its type and labels', async () => {
    const rows = documentedRows();
    for (const m of await registryMetrics()) {
      const row = rows.get(m.name);
      expect(row, `${m.name} is not documented in docs/metrics.md`).toBeDefined();
      expect(row!.type, m.name).toBe(m.type);
      expect(row!.labels, m.name).toEqual(m.labels);
      expect(row!.meaning.length, m.name).toBeGreaterThan(20);
    }
  });

  it('documents no metric that does not exist', async () => {
    const names = new Set((await registryMetrics()).map((m) => m.name));
    expect([...documentedRows().keys()].filter((n) => !names.has(n))).toEqual([]);
  });

  it('points to the alerting rules that ship, and their page', () => {
    const alerts = doc.slice(doc.indexOf('## Alerts'));
    expect(alerts).toContain('`deploy/prometheus/alerts.yaml`');
    expect(alerts).toContain('[alerts.md](alerts.md)');
  });
});

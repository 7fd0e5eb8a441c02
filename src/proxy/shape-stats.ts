// The statements a mapping's reads and writes are made of, as the proxy saw
// them lately: a ring of the last texts with their latency, grouped by shape
// (literals as slots) only when someone asks. Recording is one array write per
// mapped statement; `switchyard plans` reads the groups to compare each
// shape's plan served from old with its plan switched to new.
import { shapeOf } from '../sql/shape.ts';

const RING = 4096;

export interface ShapeSummary {
  mapping: string;
  route: string;
  /** A text of this shape as a client sent it (literals included, or $n parameters). */
  sample: string;
  /** The values bound to the sample's $n parameters, as text, where they were captured. */
  params?: (string | null)[];
  count: number;
  meanMs: number;
}

interface Seen {
  mapping: string;
  route: string;
  sql: string;
  params?: (string | null)[];
  seconds: number;
}

export class ShapeStats {
  private readonly ring: (Seen | undefined)[] = new Array(RING);
  private next = 0;

  record(mapping: string, route: string, sql: string, seconds: number, params?: (string | null)[]): void {
    this.ring[this.next] = { mapping, route, sql, seconds, ...(params ? { params } : {}) };
    this.next = (this.next + 1) % RING;
  }

  /** The most frequent shapes of the recent statements, per mapping, most frequent first. */
  top(limit = 20): ShapeSummary[] {
    const groups = new Map<string, ShapeSummary & { total: number }>();
    for (const s of this.ring) {
      if (!s) continue;
      const key = `${s.mapping}\u0001${s.route}\u0001${shapeOf(s.sql)?.key ?? s.sql}`;
      const g = groups.get(key);
      // The latest text of the shape is its sample, with its values where they were captured.
      const sample = { sample: s.sql, params: s.params };
      if (g) {
        g.count++;
        g.total += s.seconds;
        Object.assign(g, sample);
      } else {
        groups.set(key, {
          mapping: s.mapping,
          route: s.route,
          ...sample,
          count: 1,
          meanMs: 0,
          total: s.seconds,
        });
      }
    }
    const byMapping = new Map<string, ShapeSummary[]>();
    for (const g of groups.values()) {
      const list = byMapping.get(g.mapping) ?? [];
      list.push({
        mapping: g.mapping,
        route: g.route,
        sample: g.sample,
        ...(g.params ? { params: g.params } : {}),
        count: g.count,
        meanMs: (1000 * g.total) / g.count,
      });
      byMapping.set(g.mapping, list);
    }
    return [...byMapping.values()].flatMap((l) => l.sort((a, b) => b.count - a.count).slice(0, limit));
  }
}

/** One per process, like the metrics registry: the admin endpoint reads it. */
export const shapeStats = new ShapeStats();

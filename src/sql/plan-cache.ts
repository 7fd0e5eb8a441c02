// An LRU of plans. A Map keeps insertion order: a hit re-inserts the entry at
// the end, eviction removes from the front.
import { metrics } from '../metrics.ts';

export class PlanCache<V> {
  private readonly map = new Map<string, V>();
  hits = 0;
  misses = 0;

  constructor(readonly capacity = 5000) {}

  /** Key of one plan: the SQL text and everything else the plan depends on. */
  static key(sql: string, context: string): string {
    return `${context}\u0000${sql}`;
  }

  get(key: string): V | undefined {
    const v = this.map.get(key);
    if (v === undefined) {
      this.misses++;
      metrics.planCache.inc({ result: 'miss' });
      return undefined;
    }
    this.hits++;
    metrics.planCache.inc({ result: 'hit' });
    this.map.delete(key);
    this.map.set(key, v);
    return v;
  }

  set(key: string, value: V): void {
    this.map.delete(key);
    this.map.set(key, value);
    if (this.map.size > this.capacity) {
      const oldest = this.map.keys().next().value as string;
      this.map.delete(oldest);
    }
  }

  get size(): number {
    return this.map.size;
  }

  clear(): void {
    this.map.clear();
  }
}

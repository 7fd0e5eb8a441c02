// Plans, cached by statement shape: a text whose literals differ from a
// cached one reuses its plan, with the current literals put back into the
// rewrite by position. A shape whose rewrite cannot be filled in that way is
// cached by exact text instead.
import { metrics } from '../metrics.ts';
import { deriveTemplate, fillTemplate, type Shape, shapeOf, type Template, withSentinels } from './shape.ts';

/** An LRU. A Map keeps insertion order: a hit re-inserts the entry at the end, eviction removes from the front. */
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
      return undefined;
    }
    this.hits++;
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

/** What a cached plan must have: the text to send and the route it is counted under. */
export interface CachedPlan {
  sql: string;
  route: string;
}

interface ShapeEntry<V> {
  /** undefined: this shape is cached by exact text. */
  template?: Template;
  /** The plan of the first text of this shape (its `sql` is that text's rewrite). */
  plan: V;
  /** The text last served from this shape: a text seen twice in a row goes into the recent texts. */
  lastSql: string;
}

/**
 * Texts served from a shape that came again, by exact text (a prepared
 * statement re-planned at each Bind, an ORM's SQL with constants): found
 * without lexing. A stream of new literals does not enter it (keeping every
 * text costs more than the lexing it saves). First in, first out.
 */
const RECENT_TEXTS = 2048;

type Entry<V> = { shape: ShapeEntry<V> } | { plan: V };

/** Everything but the text: a plan of the sentinel text must agree with the real one on all of it. */
function sameApartFromSql(a: CachedPlan, b: CachedPlan): boolean {
  return JSON.stringify({ ...a, sql: '' }) === JSON.stringify({ ...b, sql: '' });
}

export class ShapePlanCache<V extends CachedPlan> {
  private readonly lru: PlanCache<Entry<V>>;
  private readonly recent = new Map<string, V>();
  private readonly recentKeys: (string | undefined)[] = new Array(RECENT_TEXTS);
  private recentNext = 0;
  hits = 0;
  misses = 0;

  constructor(capacity = 5000) {
    this.lru = new PlanCache<Entry<V>>(capacity);
  }

  /**
   * The plan of `sql` in `context` (everything besides the text the plan
   * depends on), planning it with `plan` on a miss.
   */
  lookup(sql: string, context: string, plan: (text: string) => V): V {
    // Texts without literals, and shapes kept by exact text, are found without lexing.
    const exactKey = PlanCache.key(sql, context);
    const exact = this.lru.get(exactKey);
    if (exact && 'plan' in exact) return this.count('hit', 'text', exact.plan);
    const seen = this.recent.get(exactKey);
    if (seen) return this.count('hit', 'shape', seen);
    const shape = shapeOf(sql);
    if (shape) {
      const key = `${context}\u0000s\u0000${shape.key}`;
      const e = this.lru.get(key);
      if (e && 'shape' in e) {
        const s = e.shape;
        if (s.template) {
          const v: V = { ...s.plan, sql: fillTemplate(s.template, shape.literals) };
          if (s.lastSql === sql) this.remember(exactKey, v);
          else s.lastSql = sql;
          return this.count('hit', 'shape', v);
        }
      } else {
        const v = plan(sql);
        const template = this.derive(shape, v, plan);
        this.lru.set(key, { shape: { template, plan: v, lastSql: sql } });
        if (template) {
          this.remember(exactKey, v);
          return this.count('miss', 'shape', v);
        }
        this.lru.set(exactKey, { plan: v });
        return this.count('miss', 'text', v);
      }
    }
    const v = plan(sql);
    this.lru.set(exactKey, { plan: v });
    return this.count('miss', 'text', v);
  }

  /**
   * Plans the shape once more with a sentinel in each slot and finds the
   * sentinels in the rewrite; the template holds only when it reproduces the
   * real plan's rewrite from the real literals and the two plans agree on all
   * else (a plan that depends on a literal's value does not).
   */
  private derive(shape: Shape, v: V, plan: (text: string) => V): Template | undefined {
    const text = withSentinels(shape);
    if (text === undefined) return undefined;
    const probe = plan(text);
    if (!sameApartFromSql(probe, v)) return undefined;
    const template = deriveTemplate(shape, probe.sql);
    if (template === undefined || fillTemplate(template, shape.literals) !== v.sql) return undefined;
    return template;
  }

  private remember(exactKey: string, v: V): void {
    // A ring of keys: finding the oldest costs nothing (a Map's first key lies past every deleted slot).
    const old = this.recentKeys[this.recentNext];
    if (old !== undefined) this.recent.delete(old);
    this.recentKeys[this.recentNext] = exactKey;
    this.recentNext = (this.recentNext + 1) % RECENT_TEXTS;
    this.recent.set(exactKey, v);
  }

  private count(result: 'hit' | 'miss', key: 'shape' | 'text', v: V): V {
    if (result === 'hit') this.hits++;
    else this.misses++;
    metrics.planCache.inc({ result, route: v.route, key });
    return v;
  }

  get size(): number {
    return this.lru.size;
  }

  clear(): void {
    this.lru.clear();
    this.recent.clear();
    this.recentKeys.fill(undefined);
  }
}

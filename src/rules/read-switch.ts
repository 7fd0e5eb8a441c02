// A read of an old table served from the new one: the reference is replaced
// by a subquery that presents the old columns, aliased with the original
// name, so the rest of the statement is untouched.
import { readsNewPercent } from '../config/schema.ts';
import { quoteIdent } from '../pg/ident.ts';
import type { StatementRefs, TableRef } from '../sql/refs.ts';
import type { Edit } from '../sql/splice.ts';
import { indexAt, isKeyword, relationSpan, type StatementTokens } from '../sql/tokens.ts';
import type { CompiledMapping } from './mapping.ts';
import type { MappingRuntime } from './mapping-runtime.ts';
import type { PlanContext } from './plan-types.ts';

/**
 * The edits that make one read reference use the new table, or undefined
 * when the statement names the table in a way a subquery cannot stand in
 * for (the read then stays on the old table, which dual-write keeps exact).
 */
export function switchRead(
  ref: TableRef,
  rt: MappingRuntime,
  info: StatementRefs,
  st: StatementTokens,
): Edit[] | undefined {
  if (rt.readSubquery === undefined) return undefined;
  const refname = ref.alias ?? ref.name;
  // A bare alias in an expression is a whole-row value: its type would change from the table's row type.
  if (info.bareNames.has(refname) && !rt.m.oldColumns.some((c) => c.name === refname)) return undefined;
  // Another unaliased relation of the same name (other schema) would clash with the subquery's alias.
  if (
    ref.alias === undefined &&
    info.refs.some((r) => r !== ref && r.alias === undefined && r.name === ref.name && r.use !== 'write')
  ) {
    return undefined;
  }
  const span = relationSpan(st, ref.location, ref.only);
  if (!span) return undefined;
  const named = `${rt.readSubquery}${ref.alias === undefined ? ` AS ${quoteIdent(ref.name)}` : ''}`;
  const before = st.toks[indexAt(st, span.start) - 1];
  // `TABLE users` is short for `SELECT * FROM users`, and only takes a name.
  const edits: Edit[] = isKeyword(before, 'table')
    ? [{ start: before.start, end: span.end, text: `SELECT * FROM ${named}` }]
    : [{ start: span.start, end: span.end, text: named }];
  // schema.table.column: the subquery is known by its alias only, so drop the schema part.
  for (const lr of info.longColumnRefs) {
    if (lr.parts[lr.parts.length - 1] !== ref.name) continue;
    if (ref.alias !== undefined || lr.parts.length !== 2) return undefined;
    const i = indexAt(st, lr.location);
    if (i < 0 || st.toks[i + 1]?.text !== '.') return undefined;
    edits.push({ start: st.toks[i].start, end: st.toks[i + 2].start, text: '' });
  }
  return edits;
}

/** Whether this session reads the mapping's new table: reads: new, or inside a canary's share (sticky per session). */
export function readsNew(m: CompiledMapping, ctx: PlanContext): boolean {
  const p = readsNewPercent(m.config.reads);
  return p >= 100 || (p > 0 && (ctx.bucket ?? 0) < p);
}

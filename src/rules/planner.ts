// The per-statement decision: forward, mirror a write, or switch a read. A
// plan depends on the SQL text, the session's search_path (and role, for
// "$user"), the kill switch, onUnmirrorable and the config version; all of
// them are in the cache key.
import { quoteIdent } from '../pg/ident.ts';
import { lexSql } from '../sql/lex.ts';
import {
  type Node,
  type ParsedSql,
  type ParsedStatement,
  parseSql,
  SqlParseError,
  type Token,
} from '../sql/parse.ts';
import { ShapePlanCache } from '../sql/plan-cache.ts';
import { Prefilter } from '../sql/prefilter.ts';
import { collectRefs, type StatementRefs, type TableRef } from '../sql/refs.ts';
import { DEFAULT_SEARCH_PATH, effectiveSchemas } from '../sql/search-path.ts';
import { type Edit, spliceBytes } from '../sql/splice.ts';
import { indexAt, isKeyword, relationSpan, type StatementTokens, statementTokens } from '../sql/tokens.ts';
import type { CompiledMapping } from './mapping.ts';
import { buildMirror } from './mirror.ts';
import { qualified } from './rowsql.ts';
import { type RuleSet, relationKey } from './ruleset.ts';

export { DEFAULT_SEARCH_PATH, parseSearchPath } from '../sql/search-path.ts';
export { ROW_COLUMN } from './mirror.ts';

export type StatementShape =
  | { kind: 'forward' }
  | { kind: 'mirror'; tag: 'INSERT' | 'UPDATE' | 'DELETE'; returning: true }
  | { kind: 'mirror'; tag: 'INSERT' | 'UPDATE' | 'DELETE'; returning: false };

export type Route = 'passthrough' | 'mirrored_write' | 'read_old' | 'read_new';
export type UnmirroredReason = 'copy' | 'truncate' | 'where_current_of' | 'parse_error' | 'unsupported';

/** Plans are cached and shared between sessions: treat them as read-only. */
export interface Plan {
  /** The text to send (=== input when nothing changed). */
  sql: string;
  rewritten: boolean;
  route: Route;
  /** '' when no mapping is involved. */
  mapping: string;
  /**
   * One per top-level statement, in order. When the text was not parsed (the
   * prefilter found no mapped name) this is a single forward entry: with
   * `rewritten` false every statement is relayed untouched anyway.
   */
  statements: StatementShape[];
  unmirrored?: { mapping: string; reason: UnmirroredReason; detail?: string };
  /** onUnmirrorable=reject: answer SQLSTATE 0A000 with this message and send nothing. */
  reject?: { mapping: string; message: string };
}

export interface PlanContext {
  /** The search_path in force when the text starts; a SET inside the text applies to the statements after it. */
  searchPath: string[];
  /** What RESET / SET ... TO DEFAULT inside the text returns to (default: `"$user", public`). */
  defaultSearchPath?: string[];
  user: string;
  killSwitch: boolean;
  onUnmirrorable: 'passthrough' | 'reject';
  version: number;
}

export interface SearchPathChange {
  /** null: RESET / DEFAULT (back to the session's default). */
  value: string[] | null;
  local: boolean;
}

interface MappingRuntime {
  m: CompiledMapping;
  keySources: Set<string>;
  /** The parenthesised subquery presenting old columns over the new table. */
  readSubquery?: string;
}

const FORWARD: StatementShape = { kind: 'forward' };
const FORWARD_LIST: StatementShape[] = [FORWARD];

/** Old-table columns a set of SQL expressions reads (last part of each column reference). */
function columnsRead(exprs: string[]): Set<string> {
  const out = new Set<string>();
  const visit = (v: Node): void => {
    if (v === null || typeof v !== 'object') return;
    if (Array.isArray(v)) {
      for (const x of v) visit(x);
      return;
    }
    if (v.ColumnRef) {
      const f: Node[] = v.ColumnRef.fields ?? [];
      const last = f[f.length - 1]?.String?.sval;
      if (last !== undefined) out.add(last);
      return;
    }
    for (const k in v) visit(v[k]);
  };
  for (const e of exprs) visit(parseSql(`SELECT ${e}`).statements[0]?.node);
  return out;
}

function readSubquery(m: CompiledMapping): string | undefined {
  if (!m.down) return undefined;
  const down = new Map(m.down.map((d) => [d.column, d.expr]));
  if (!m.oldColumns.every((c) => down.has(c.name))) return undefined;
  const cols = m.oldColumns
    .map((c) => `(${down.get(c.name)})::${c.type} AS ${quoteIdent(c.name)}`)
    .join(', ');
  return `(SELECT ${cols} FROM ${qualified(m.new)})`;
}

export class Planner {
  readonly cache: ShapePlanCache<Plan>;
  private readonly prefilter: Prefilter;
  private readonly oldNameFilters: { filter: Prefilter; mapping: string }[];
  private readonly byOld = new Map<string, MappingRuntime>();
  private readonly oldNames = new Set<string>();

  constructor(
    readonly rules: RuleSet,
    opts: { cacheSize?: number } = {},
  ) {
    this.cache = new ShapePlanCache<Plan>(opts.cacheSize ?? 5000);
    this.prefilter = new Prefilter(rules.mappings.flatMap((m) => [m.old.name, m.new.name]));
    this.oldNameFilters = rules.mappings.map((m) => ({
      filter: new Prefilter([m.old.name], true),
      mapping: m.name,
    }));
    for (const m of rules.mappings) {
      const keyExprs = m.key.map((k) => m.up.find((u) => u.column === k)?.expr ?? quoteIdent(k));
      this.byOld.set(relationKey(m.old.schema, m.old.name), {
        m,
        keySources: columnsRead(keyExprs),
        readSubquery: readSubquery(m),
      });
      this.oldNames.add(m.old.name);
    }
  }

  plan(sql: string, ctx: PlanContext): Plan {
    if (!this.prefilter.matches(sql)) {
      return { sql, rewritten: false, route: 'passthrough', mapping: '', statements: FORWARD_LIST };
    }
    const context = `${ctx.version}\u0001${ctx.killSwitch ? 1 : 0}\u0001${ctx.onUnmirrorable}\u0001${ctx.user}\u0001${ctx.searchPath.join('\u0001')}\u0002${ctx.defaultSearchPath?.join('\u0001') ?? ''}`;
    return this.cache.lookup(sql, context, (text) => this.planText(text, ctx));
  }

  private planText(sql: string, ctx: PlanContext): Plan {
    let plan: Plan;
    try {
      plan = this.build(sql, ctx);
    } catch (e) {
      // A statement shape the planner did not foresee must not take the session down:
      // it is treated like any write that cannot be mirrored.
      const hit = this.oldNameFilters.find((f) => f.filter.matches(sql));
      if (!hit) return { sql, rewritten: false, route: 'passthrough', mapping: '', statements: FORWARD_LIST };
      plan = this.unmirrorable(
        sql,
        ctx,
        hit.mapping,
        'unsupported',
        `planner error: ${(e as Error).message}`,
        FORWARD_LIST,
      );
    }
    return plan;
  }

  private resolve(ref: TableRef, schemas: () => string[]): MappingRuntime | undefined {
    if (ref.cte || !this.oldNames.has(ref.name)) return undefined;
    if (ref.schema !== undefined) return this.byOld.get(relationKey(ref.schema, ref.name));
    for (const s of schemas()) {
      const k = relationKey(s, ref.name);
      if (this.rules.relations.has(k)) return this.byOld.get(k);
    }
    return undefined;
  }

  /**
   * The edits that make one read reference use the new table, or undefined
   * when the statement names the table in a way a subquery cannot stand in
   * for (the read then stays on the old table, which dual-write keeps exact).
   */
  private switchRead(
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

  private build(sql: string, ctx: PlanContext): Plan {
    let parsed: ParsedSql;
    try {
      parsed = parseSql(sql);
    } catch (e) {
      if (!(e instanceof SqlParseError)) throw e;
      const hit = this.oldNameFilters.find((f) => f.filter.matches(sql));
      if (!hit) return { sql, rewritten: false, route: 'passthrough', mapping: '', statements: FORWARD_LIST };
      return this.unmirrorable(sql, ctx, hit.mapping, 'parse_error', e.message, FORWARD_LIST);
    }
    let path: readonly string[] = ctx.searchPath;
    let schemasMemo: string[] | undefined;
    const schemas = () => {
      schemasMemo ??= effectiveSchemas(path, ctx.user);
      return schemasMemo;
    };
    let tokens: Token[] | undefined;
    const allTokens = () => {
      tokens ??= lexSql(parsed.bytes);
      return tokens;
    };

    const edits: Edit[] = [];
    const statements: StatementShape[] = [];
    let route: Route = 'passthrough';
    let mapping = '';
    let unmirrored: Plan['unmirrored'];
    const note = (r: Route, name: string) => {
      const rank = { passthrough: 0, read_old: 1, read_new: 2, mirrored_write: 3 };
      if (rank[r] > rank[route] || (rank[r] === rank[route] && mapping === '')) {
        route = r;
        mapping = name;
      }
    };

    for (const stmt of parsed.statements) {
      // A search_path change applies to the statements after it in the same text.
      const change = searchPathChangeOf(stmt);
      if (change) {
        path = change.value ?? ctx.defaultSearchPath ?? DEFAULT_SEARCH_PATH;
        schemasMemo = undefined;
        statements.push(FORWARD);
        continue;
      }
      const info = collectRefs(stmt);
      const resolved = info.refs
        .map((ref) => ({ ref, rt: this.resolve(ref, schemas) }))
        .filter((x): x is { ref: TableRef; rt: MappingRuntime } => x.rt !== undefined);
      if (resolved.length === 0) {
        statements.push(FORWARD);
        continue;
      }
      const st = statementTokens(allTokens(), stmt.start, stmt.end);

      // Switched reads.
      const readEdits: Edit[] = [];
      for (const { ref, rt } of resolved) {
        if (ref.use === 'write') continue;
        const edits =
          ref.use === 'read' && rt.m.config.reads === 'new' ? this.switchRead(ref, rt, info, st) : undefined;
        if (!edits) {
          note('read_old', rt.m.name);
          continue;
        }
        readEdits.push(...edits);
        note('read_new', rt.m.name);
      }

      // Writes.
      let shape: StatementShape = FORWARD;
      const writes = resolved.filter((x) => x.ref.use === 'write');
      for (const { ref, rt } of writes) {
        const m = rt.m;
        if (ctx.killSwitch || !m.config.dualWrite) {
          note('passthrough', m.name);
          continue;
        }
        let reason: UnmirroredReason | undefined;
        let detail = '';
        if (ref.form === 'copy') reason = 'copy';
        else if (ref.form === 'truncate') reason = 'truncate';
        else if (info.whereCurrentOf) reason = 'where_current_of';
        else if (ref.form !== 'dml' || writes.length > 1) {
          reason = 'unsupported';
          detail =
            ref.form === 'nested'
              ? 'a write inside a WITH clause'
              : ref.form === 'dml'
                ? 'several writes in one statement'
                : `${ref.form?.toUpperCase()} of a mapped table`;
        }
        if (reason === undefined) {
          const r = buildMirror({
            stmt,
            mapping: m,
            keySources: rt.keySources,
            target: ref,
            st,
            bytes: parsed.bytes,
            readEdits,
            serverVersion: this.rules.serverVersion,
          });
          if (r.ok) {
            edits.push(...r.edits);
            shape = r.returning
              ? { kind: 'mirror', tag: r.tag, returning: true }
              : { kind: 'mirror', tag: r.tag, returning: false };
            note('mirrored_write', m.name);
            continue;
          }
          reason = 'unsupported';
          detail = r.reason;
        }
        unmirrored ??= { mapping: m.name, reason, ...(detail ? { detail } : {}) };
        note('passthrough', m.name);
      }
      edits.push(...readEdits);
      statements.push(shape);
    }

    if (unmirrored && ctx.onUnmirrorable === 'reject') {
      return this.unmirrorable(
        sql,
        ctx,
        unmirrored.mapping,
        unmirrored.reason,
        unmirrored.detail,
        statements.map(() => FORWARD),
      );
    }
    const out = edits.length > 0 ? spliceBytes(parsed.bytes, edits) : sql;
    return {
      sql: out,
      rewritten: edits.length > 0,
      route,
      mapping,
      statements,
      ...(unmirrored ? { unmirrored } : {}),
    };
  }

  private unmirrorable(
    sql: string,
    ctx: PlanContext,
    mapping: string,
    reason: UnmirroredReason,
    detail: string | undefined,
    statements: StatementShape[],
  ): Plan {
    const plan: Plan = {
      sql,
      rewritten: false,
      route: 'passthrough',
      mapping,
      statements,
      unmirrored: { mapping, reason, ...(detail ? { detail } : {}) },
    };
    if (ctx.onUnmirrorable === 'reject') {
      const why: Record<UnmirroredReason, string> = {
        copy: 'COPY into a mapped table',
        truncate: 'TRUNCATE of a mapped table',
        where_current_of: 'WHERE CURRENT OF on a mapped table',
        parse_error: 'SQL switchyard cannot parse',
        unsupported: detail ?? 'this statement form',
      };
      plan.reject = {
        mapping,
        message: `switchyard: mapping ${mapping} cannot mirror ${reason === 'unsupported' ? detail || 'this statement' : why[reason]} (onUnmirrorable: reject)${reason === 'parse_error' && detail ? `: ${detail}` : ''}`,
      };
    }
    return plan;
  }
}

const SEARCH_PATH_HINT = /search_path|reset|discard/i;

/** The search_path change a simple-Query or Parse text makes, if any (the last one wins). */
export function searchPathChange(sql: string): SearchPathChange | undefined {
  if (!SEARCH_PATH_HINT.test(sql)) return undefined;
  let parsed: ParsedSql;
  try {
    parsed = parseSql(sql);
  } catch {
    return undefined;
  }
  let out: SearchPathChange | undefined;
  for (const s of parsed.statements) out = searchPathChangeOf(s) ?? out;
  return out;
}

function searchPathChangeOf(s: ParsedStatement): SearchPathChange | undefined {
  if (s.kind === 'DiscardStmt' && s.node.target === 'DISCARD_ALL') return { value: null, local: false };
  if (s.kind !== 'VariableSetStmt') return undefined;
  const n = s.node;
  const local = n.is_local === true;
  if (n.kind === 'VAR_RESET_ALL') return { value: null, local: false };
  if (n.name !== 'search_path') return undefined;
  if (n.kind === 'VAR_RESET' || n.kind === 'VAR_SET_DEFAULT') return { value: null, local };
  if (n.kind !== 'VAR_SET_VALUE') return undefined;
  // Each argument is one schema name; '' (as in SET search_path = '') names none.
  const value = (n.args ?? [])
    .map((a: Node) => a.A_Const?.sval?.sval)
    .filter((x: unknown): x is string => typeof x === 'string' && x !== '');
  return { value, local };
}

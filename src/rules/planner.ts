// The per-statement decision: forward, mirror a write, or switch a read. A
// plan depends on the SQL text, the session's search_path (and role, for
// "$user"), the kill switch, onUnmirrorable and the config version; all of
// them are in the cache key.
import { readsNewPercent } from '../config/schema.ts';
import { quoteIdent } from '../pg/ident.ts';
import { lexSql } from '../sql/lex.ts';
import {
  type ParsedSql,
  type ParsedStatement,
  parseSql,
  SqlParseError,
  scanTokens,
  type Token,
} from '../sql/parse.ts';
import { ShapePlanCache } from '../sql/plan-cache.ts';
import { Prefilter } from '../sql/prefilter.ts';
import { collectRefs, type TableRef } from '../sql/refs.ts';
import { DEFAULT_SEARCH_PATH, effectiveSchemas } from '../sql/search-path.ts';
import { type Edit, spliceBytes } from '../sql/splice.ts';
import { statementTokens } from '../sql/tokens.ts';
import { planBody } from './bodies.ts';
import { buildColumnWrite } from './columns-write.ts';
import { type DdlConfig, type DdlFlag, DdlGuard } from './ddl-check.ts';
import { DDL_HINT, isDdl } from './ddl-guard.ts';
import type { CompiledMapping } from './mapping.ts';
import { keySources, type MappingRuntime, readSubquery } from './mapping-runtime.ts';
import { buildMirror } from './mirror.ts';
import type {
  Plan,
  PlanContext,
  Route,
  SqlPrepared,
  StatementShape,
  UnmirroredReason,
} from './plan-types.ts';
import { EXECUTE_HINT, preparedQueryStart } from './prepared.ts';
import { readsNew, switchRead } from './read-switch.ts';
import { rowOrigins, type SwitchedColumns } from './row-origins.ts';
import { type RuleSet, relationKey } from './ruleset.ts';
import { searchPathChangeOf } from './session-settings.ts';
import { unmirrorablePlan } from './unmirrorable.ts';

export { DEFAULT_SEARCH_PATH, parseSearchPath } from '../sql/search-path.ts';
export { ROW_COLUMN } from './mirror.ts';
export type {
  Plan,
  PlanContext,
  Route,
  SearchPathChange,
  SqlPrepared,
  StatementShape,
  UnmirroredReason,
} from './plan-types.ts';
export { type RoleChange, roleChanges, searchPathChange } from './session-settings.ts';

const FORWARD: StatementShape = { kind: 'forward' };
const HIDDEN: StatementShape = { kind: 'forward', hidden: true };
const FORWARD_LIST: StatementShape[] = [FORWARD];

export class Planner {
  readonly cache: ShapePlanCache<Plan>;
  private readonly prefilter: Prefilter;
  private readonly oldNameFilters: { filter: Prefilter; mapping: string }[];
  private readonly byOld = new Map<string, MappingRuntime>();
  private readonly oldNames = new Set<string>();
  /** New tables whose writes are mirrored into old (dualWrite: both). */
  private readonly byNew = new Map<string, MappingRuntime>();
  private readonly newNames = new Set<string>();

  private readonly ddl?: DdlGuard;
  /** The percentages of mappings with a canary (reads: { new: N }, 0 < N < 100), if any. */
  private readonly canary?: number[];

  constructor(
    readonly rules: RuleSet,
    opts: { cacheSize?: number; ddl?: DdlConfig } = {},
  ) {
    this.cache = new ShapePlanCache<Plan>(opts.cacheSize ?? 5000);
    const canary = rules.mappings.map((m) => readsNewPercent(m.config.reads)).filter((p) => p > 0 && p < 100);
    if (canary.length > 0) this.canary = canary;
    if (opts.ddl && Object.values(opts.ddl.rules).some((mode) => mode !== 'off')) {
      this.ddl = new DdlGuard(opts.ddl, rules);
    }
    this.prefilter = new Prefilter(rules.mappings.flatMap((m) => [m.old.name, m.new.name]));
    // The names whose writes are mirrored: old, and new too where mirrored back.
    const both = (m: CompiledMapping) => (m.config.dualWrite === 'both' ? m.reverse : undefined);
    this.oldNameFilters = rules.mappings.map((m) => ({
      filter: new Prefilter(both(m) ? [m.old.name, m.new.name] : [m.old.name], true),
      mapping: m.name,
    }));
    for (const m of rules.mappings) {
      this.byOld.set(relationKey(m.old.schema, m.old.name), {
        m,
        keySources: keySources(m),
        readSubquery: readSubquery(m),
        switchedColumns:
          m.oldOrigins && m.oldColumns.map((c, i) => ({ name: c.name, origin: m.oldOrigins![i] })),
      });
      this.oldNames.add(m.old.name);
      const r = both(m);
      if (r) {
        this.byNew.set(relationKey(r.old.schema, r.old.name), {
          m: r,
          reverse: true,
          keySources: keySources(r),
        });
        this.newNames.add(r.old.name);
      }
    }
  }

  plan(sql: string, ctx: PlanContext): Plan {
    // An EXECUTE's plan depends on the session's prepared statements: never cached.
    if (ctx.prepared !== undefined && ctx.prepared.size > 0 && EXECUTE_HINT.test(sql)) {
      try {
        return this.build(sql, ctx);
      } catch {
        // Planned below like any text.
      }
    }
    if (!this.prefilter.matches(sql) && !(this.ddl && DDL_HINT.test(sql))) {
      return { sql, rewritten: false, route: 'passthrough', mapping: '', statements: FORWARD_LIST };
    }
    // A simple Query may get statements put in front of its DDL; a Parse may not.
    // A canary makes the plan depend on which side of it the session is.
    const canary = this.canary ? this.canary.map((p) => ((ctx.bucket ?? 0) < p ? 'n' : 'o')).join('') : '';
    const context = `${canary}${ctx.simpleQuery ? 'Q' : 'P'}${ctx.version}\u0001${ctx.killSwitch ? 1 : 0}\u0001${ctx.onUnmirrorable}\u0001${ctx.user}\u0001${ctx.searchPath.join('\u0001')}\u0002${ctx.defaultSearchPath?.join('\u0001') ?? ''}`;
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
      plan = unmirrorablePlan(
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

  /** The mapping a reference reaches: an old table, or for a write, a new table mirrored back. */
  private resolve(ref: TableRef, schemas: () => string[]): MappingRuntime | undefined {
    if (ref.cte) return undefined;
    const asNew = ref.use === 'write' && this.newNames.has(ref.name);
    if (!asNew && !this.oldNames.has(ref.name)) return undefined;
    const at = (k: string) => this.byOld.get(k) ?? (asNew ? this.byNew.get(k) : undefined);
    if (ref.schema !== undefined) return at(relationKey(ref.schema, ref.name));
    for (const s of schemas()) {
      const k = relationKey(s, ref.name);
      if (this.rules.relations.has(k)) return at(k);
    }
    return undefined;
  }

  /** `inBody`: the text is SQL inside a function body (see bodies.ts). */
  private build(sql: string, ctx: PlanContext, inBody = false): Plan {
    let parsed: ParsedSql;
    try {
      parsed = parseSql(sql);
    } catch (e) {
      if (!(e instanceof SqlParseError)) throw e;
      const hit = this.oldNameFilters.find((f) => f.filter.matches(sql));
      if (!hit) return { sql, rewritten: false, route: 'passthrough', mapping: '', statements: FORWARD_LIST };
      return unmirrorablePlan(sql, ctx, hit.mapping, 'parse_error', e.message, FORWARD_LIST);
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
    const prepared: SqlPrepared[] = [];
    const ddl: DdlFlag[] = [];
    /** An EXECUTE of a mirrored prepared statement: nothing to splice, but replies to reshape. */
    let shapesOnly = false;
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
      if (!inBody && (stmt.kind === 'CreateFunctionStmt' || stmt.kind === 'DoStmt')) {
        const r = this.planBody(stmt, parsed.bytes, { ...ctx, searchPath: [...path] });
        if (r.kind === 'rewrite') {
          edits.push(...r.edits);
          note('mirrored_write', r.mapping);
        } else if (r.kind === 'unmirrored') {
          unmirrored ??= { mapping: r.mapping, reason: r.reason, detail: r.detail };
          note('passthrough', r.mapping);
        }
        statements.push(FORWARD);
        continue;
      }
      if (!inBody && stmt.kind === 'ExecuteStmt') {
        let pw = ctx.prepared?.get(stmt.node.name);
        // A switch flipped since the PREPARE: what the name should run now. Only a
        // simple Query can carry the new PREPARE (a Parse holds one statement):
        // an extended-protocol EXECUTE keeps what was prepared (docs/sql-rewrites.md).
        if (pw && pw.version !== ctx.version && ctx.simpleQuery) {
          const next = this.preparedAs(pw.name, pw.head, pw.query, { ...ctx, searchPath: pw.searchPath });
          const now: SqlPrepared = next ?? {
            ...pw,
            shape: undefined,
            unmirrored: undefined,
            prepared: pw.query,
            version: ctx.version,
          };
          if (now.prepared !== pw.prepared) {
            // Prepared anew in the same Query, just before the EXECUTE; the client sees neither statement.
            edits.push({
              start: stmt.start,
              end: stmt.start,
              text: `DEALLOCATE ${quoteIdent(pw.name)}; ${now.head}${now.prepared}; `,
            });
            statements.push(HIDDEN, HIDDEN);
          }
          prepared.push(now);
          pw = now;
        }
        if (pw?.shape) {
          statements.push(pw.shape);
          shapesOnly = true;
          note('mirrored_write', pw.mapping);
          continue;
        }
        if (pw?.unmirrored) {
          // It was made here, so its reason is one of ours.
          unmirrored ??= pw.unmirrored as NonNullable<Plan['unmirrored']>;
          note('passthrough', pw.mapping);
          statements.push(FORWARD);
          continue;
        }
      }
      if (!inBody && stmt.kind === 'PrepareStmt') {
        const r = this.planPrepare(stmt, parsed.bytes, allTokens(), { ...ctx, searchPath: [...path] });
        if (r) {
          edits.push(...r.edits);
          prepared.push(r.prepared);
          if (r.prepared.shape) note('mirrored_write', r.prepared.mapping);
          else note('passthrough', r.prepared.mapping);
          // Under reject a PREPARE that cannot be mirrored is refused; otherwise each EXECUTE is counted.
          if (r.prepared.unmirrored && ctx.onUnmirrorable === 'reject') unmirrored ??= r.prepared.unmirrored;
          statements.push(FORWARD);
          continue;
        }
      }
      if (this.ddl && isDdl(stmt)) {
        const g = this.ddl.check(stmt, ctx, schemas, !!ctx.simpleQuery && !inBody);
        if (g.reject) {
          return {
            ...unmirrorablePlan(sql, ctx, g.reject.mapping, 'unsupported', undefined, FORWARD_LIST),
            reject: g.reject,
            ddl: g.flagged,
          };
        }
        ddl.push(...g.flagged);
        if (g.prefix) {
          edits.push({ start: stmt.start, end: stmt.start, text: g.prefix });
          statements.push(HIDDEN);
        }
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
      const switchedAt = new Map<number, SwitchedColumns>();
      for (const { ref, rt } of resolved) {
        if (ref.use === 'write') continue;
        const edits = ref.use === 'read' && readsNew(rt.m, ctx) ? switchRead(ref, rt, info, st) : undefined;
        if (!edits) {
          note('read_old', rt.m.name);
          continue;
        }
        readEdits.push(...edits);
        if (rt.switchedColumns) switchedAt.set(ref.location, rt.switchedColumns);
        note('read_new', rt.m.name);
      }

      // Writes.
      let shape: StatementShape = FORWARD;
      const writes = resolved.filter((x) => x.ref.use === 'write');
      for (const { ref, rt } of writes) {
        const m = rt.m;
        if (ctx.killSwitch || !m.config.dualWrite || (rt.reverse && m.config.dualWrite !== 'both')) {
          note('passthrough', m.name);
          continue;
        }
        if (m.sameTable && ref.form === 'dml' && writes.length === 1) {
          // A column migration: the write gains the other side's columns (columns-write.ts).
          const r = buildColumnWrite({
            stmt,
            mapping: m,
            target: ref,
            st,
            bytes: parsed.bytes,
            both: m.config.dualWrite === 'both',
            readEdits,
          });
          if (r.ok) {
            edits.push(...r.edits);
            // Switched reads inside the text it rewrote travel with that text.
            const inside = (e: Edit) =>
              r.edits.some((w) => e.start >= w.start && e.end <= w.end && w.end > w.start);
            for (let i = readEdits.length - 1; i >= 0; i--) if (inside(readEdits[i])) readEdits.splice(i, 1);
            note(r.edits.length > 0 ? 'mirrored_write' : 'passthrough', m.name);
            continue;
          }
          unmirrored ??= { mapping: m.name, reason: 'unsupported', detail: r.reason };
          note('passthrough', m.name);
          continue;
        }
        let reason: UnmirroredReason | undefined;
        let detail = '';
        if (m.sameTable && ref.form === 'truncate') {
          // Emptying the table empties old and new columns alike.
          note('passthrough', m.name);
          continue;
        }
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
            catalogFirst: schemas()[0] === 'pg_catalog',
            exactColumns: inBody,
          });
          if (r.ok) {
            edits.push(...r.edits);
            const way = rt.reverse ? { reverse: true as const } : {};
            shape = r.returning
              ? { kind: 'mirror', tag: r.tag, returning: true, ...way }
              : { kind: 'mirror', tag: r.tag, returning: false, ...way };
            note('mirrored_write', m.name);
            continue;
          }
          reason = r.code ?? 'unsupported';
          detail = r.reason;
        }
        unmirrored ??= { mapping: m.name, reason, ...(detail ? { detail } : {}) };
        note('passthrough', m.name);
      }
      edits.push(...readEdits);
      const origins = switchedAt.size > 0 ? rowOrigins(stmt, switchedAt) : undefined;
      if (origins && (shape.kind === 'forward' || shape.returning)) shape = { ...shape, origins };
      statements.push(shape);
    }

    if (unmirrored && ctx.onUnmirrorable === 'reject') {
      return unmirrorablePlan(
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
      rewritten: edits.length > 0 || shapesOnly,
      route,
      mapping,
      statements,
      ...(unmirrored ? { unmirrored } : {}),
      ...(prepared.length > 0 ? { prepared } : {}),
      ...(ddl.length > 0 ? { ddl } : {}),
    };
  }

  /** A PREPARE whose statement writes a mapped table: its mirrored form, or why it has none. */
  private planPrepare(
    stmt: ParsedStatement,
    bytes: Buffer,
    tokens: Token[],
    ctx: PlanContext,
  ): { edits: Edit[]; prepared: SqlPrepared } | undefined {
    const start = preparedQueryStart(stmt, statementTokens(tokens, stmt.start, stmt.end));
    if (start < 0) return undefined;
    const head = bytes.subarray(stmt.start, start).toString('utf8');
    const query = bytes.subarray(start, stmt.end).toString('utf8');
    const prepared = this.preparedAs(stmt.node.name, head, query, ctx);
    if (!prepared) return undefined;
    return {
      edits: prepared.prepared === query ? [] : [{ start, end: stmt.end, text: prepared.prepared }],
      prepared,
    };
  }

  /**
   * What a SQL-prepared statement on a mapped table is prepared as under this
   * context: mirrored or switched (with the reply shape its EXECUTEs get),
   * counted as unmirrorable, or the client's text (kill switch, dualWrite
   * off) kept so that a later switch reaches it. undefined: no mapping is involved.
   */
  private preparedAs(name: string, head: string, query: string, ctx: PlanContext): SqlPrepared | undefined {
    const inner = this.build(query, ctx);
    const base = { name, head, query, version: ctx.version, searchPath: ctx.searchPath };
    if (inner.unmirrored) {
      return { ...base, mapping: inner.unmirrored.mapping, unmirrored: inner.unmirrored, prepared: query };
    }
    if (inner.mapping === '' || inner.statements.length !== 1) return undefined;
    const shape = inner.statements[0];
    const reshaped = inner.rewritten && (shape?.kind === 'mirror' || shape?.origins !== undefined);
    return { ...base, mapping: inner.mapping, shape: reshaped ? shape : undefined, prepared: inner.sql };
  }

  private planBody(stmt: ParsedStatement, bytes: Buffer, ctx: PlanContext) {
    const tokens = scanTokens(bytes.toString('utf8'));
    return planBody(stmt, bytes, tokens, {
      plan: (sql) => {
        let p: Plan;
        try {
          p = this.build(sql, ctx, true);
        } catch (e) {
          const hit = this.oldNameFilters.find((f) => f.filter.matches(sql));
          if (!hit) return { sql, rewritten: false, returning: false };
          p = unmirrorablePlan(
            sql,
            ctx,
            hit.mapping,
            'unsupported',
            `planner error: ${(e as Error).message}`,
            [],
          );
        }
        const writes = p.unmirrored?.mapping ?? (p.route === 'mirrored_write' ? p.mapping : undefined);
        return {
          sql: p.sql,
          rewritten: p.rewritten,
          returning: p.statements.some((s) => s.kind === 'mirror' && s.returning),
          ...(writes !== undefined ? { writes } : {}),
          ...(p.unmirrored ? { unmirrored: p.unmirrored } : {}),
        };
      },
      mentions: (text) => this.oldNameFilters.find((f) => f.filter.matches(text))?.mapping,
    });
  }
}

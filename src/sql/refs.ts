// Table references of one parsed statement: where each relation is named,
// under which alias, whether it is a CTE, and how it is used (written, read,
// read with a row lock, or named somewhere the planner never rewrites).
import type { Node, ParsedStatement } from './parse.ts';

export type RefUse = 'write' | 'read' | 'lock' | 'other';

/** Why a write cannot be mirrored by wrapping it. */
export type WriteForm = 'dml' | 'copy' | 'truncate' | 'merge' | 'nested' | 'explain' | 'prepare';

export interface TableRef {
  schema?: string;
  name: string;
  alias?: string;
  /** Byte offset of the (possibly qualified) name in the SQL text. */
  location: number;
  use: RefUse;
  /** Names a CTE in scope, not a table. */
  cte: boolean;
  /** `ONLY name`: the keyword precedes the name. */
  only: boolean;
  /** For writes: the statement form. */
  form?: WriteForm;
}

export interface StatementRefs {
  refs: TableRef[];
  /** The statement uses `WHERE CURRENT OF`. */
  whereCurrentOf: boolean;
  /** Column references of 3+ parts (schema.table.column): the parts before the column, and where they start. */
  longColumnRefs: { parts: string[]; location: number }[];
  /** Names used as one-part column references (a bare table alias there is a whole-row reference). */
  bareNames: Set<string>;
}

interface Scope {
  ctes: ReadonlySet<string>;
  parent?: Scope;
}

interface LockSpec {
  all: boolean;
  names: ReadonlySet<string>;
}

const EMPTY: ReadonlySet<string> = new Set();

function hasCte(scope: Scope | undefined, name: string): boolean {
  for (let s = scope; s; s = s.parent) if (s.ctes.has(name)) return true;
  return false;
}

function sval(n: Node): string | undefined {
  return n?.String?.sval;
}

class Collector {
  refs: TableRef[] = [];
  whereCurrentOf = false;
  longColumnRefs: { parts: string[]; location: number }[] = [];
  bareNames = new Set<string>();
  /** Set while walking a statement whose references are never rewritten. */
  forceOther = false;

  addRangeVar(rv: Node, scope: Scope | undefined, use: RefUse, form?: WriteForm): void {
    const name: string = rv.relname;
    const schema: string | undefined = rv.schemaname || undefined;
    const cte = use !== 'write' && schema === undefined && hasCte(scope, name);
    this.refs.push({
      schema,
      name,
      alias: rv.alias?.aliasname,
      location: rv.location,
      use: this.forceOther && use !== 'write' ? 'other' : use,
      cte,
      only: rv.inh !== true,
      form: use === 'write' ? form : undefined,
    });
  }

  /** Walks any subtree; node wrappers are single upper-case keys. */
  walk(v: Node, scope: Scope | undefined): void {
    if (v === null || typeof v !== 'object') return;
    if (Array.isArray(v)) {
      for (const x of v) this.walk(x, scope);
      return;
    }
    for (const k in v) {
      const c = v[k];
      if (c === null || typeof c !== 'object') continue;
      const first = k.charCodeAt(0);
      if (first >= 65 && first <= 90) this.node(k, c, scope);
      // Utility statements hold their table as a bare RangeVar under `relation`.
      else if (k === 'relation' && typeof c.relname === 'string') this.addRangeVar(c, scope, 'read');
      else this.walk(c, scope);
    }
  }

  node(type: string, n: Node, scope: Scope | undefined): void {
    switch (type) {
      case 'RangeVar':
        this.addRangeVar(n, scope, 'read');
        return;
      case 'SelectStmt':
        this.select(n, scope, null);
        return;
      case 'InsertStmt':
      case 'UpdateStmt':
      case 'DeleteStmt':
      case 'MergeStmt':
        this.dml(type, n, scope, 'nested');
        return;
      case 'CurrentOfExpr':
        this.whereCurrentOf = true;
        return;
      case 'ColumnRef': {
        const f: Node[] = n.fields ?? [];
        if (f.length === 1) {
          const name = sval(f[0]);
          if (name !== undefined) this.bareNames.add(name);
        } else if (f.length >= 3) {
          const parts = f.slice(0, -1).map((x) => sval(x) ?? '');
          this.longColumnRefs.push({ parts, location: n.location });
        }
        return;
      }
      case 'RangeTableSample': {
        // A sampled relation cannot become a subquery: keep it where it is.
        const saved = this.forceOther;
        this.forceOther = true;
        this.walk(n, scope);
        this.forceOther = saved;
        return;
      }
      default:
        this.walk(n, scope);
    }
  }

  withScope(withClause: Node, scope: Scope | undefined): Scope | undefined {
    if (!withClause) return scope;
    const ctes: Node[] = (withClause.ctes ?? []).map((c: Node) => c.CommonTableExpr);
    const names = ctes.map((c) => c.ctename as string);
    if (withClause.recursive) {
      const all: Scope = { ctes: new Set(names), parent: scope };
      for (const c of ctes) this.walk(c.ctequery, all);
      return all;
    }
    // A non-recursive CTE sees only the ones before it; its own name still means the table.
    ctes.forEach((c, i) => {
      this.walk(c.ctequery, i === 0 ? scope : { ctes: new Set(names.slice(0, i)), parent: scope });
    });
    return { ctes: new Set(names), parent: scope };
  }

  select(n: Node, outer: Scope | undefined, inherited: LockSpec | null): void {
    const scope = this.withScope(n.withClause, outer);
    if (n.op && n.op !== 'SETOP_NONE') {
      if (n.larg) this.select(n.larg, scope, inherited);
      if (n.rarg) this.select(n.rarg, scope, inherited);
    }
    let lock = inherited;
    for (const lc of n.lockingClause ?? []) {
      const rels: Node[] = lc.LockingClause?.lockedRels ?? [];
      if (rels.length === 0) lock = { all: true, names: EMPTY };
      else {
        const names = new Set(lock?.names ?? []);
        for (const r of rels) names.add(r.RangeVar?.relname);
        lock = { all: lock?.all ?? false, names };
      }
    }
    for (const item of n.fromClause ?? []) this.from(item, scope, lock);
    for (const k in n) {
      if (k === 'withClause' || k === 'fromClause' || k === 'lockingClause' || k === 'larg' || k === 'rarg')
        continue;
      this.walk(n[k], scope);
    }
  }

  from(item: Node, scope: Scope | undefined, lock: LockSpec | null): void {
    if (item.RangeVar) {
      const rv = item.RangeVar;
      const refname = rv.alias?.aliasname ?? rv.relname;
      const locked = lock !== null && (lock.all || lock.names.has(refname));
      this.addRangeVar(rv, scope, locked ? 'lock' : 'read');
    } else if (item.JoinExpr) {
      const j = item.JoinExpr;
      this.from(j.larg, scope, lock);
      this.from(j.rarg, scope, lock);
      this.walk(j.quals, scope);
    } else if (item.RangeSubselect) {
      const rs = item.RangeSubselect;
      const alias = rs.alias?.aliasname;
      const sub: LockSpec | null =
        lock && (lock.all || (alias !== undefined && lock.names.has(alias)))
          ? { all: true, names: EMPTY }
          : null;
      if (rs.subquery?.SelectStmt) this.select(rs.subquery.SelectStmt, scope, sub);
      else this.walk(rs.subquery, scope);
    } else {
      this.walk(item, scope);
    }
  }

  dml(type: string, n: Node, outer: Scope | undefined, form: WriteForm): void {
    const scope = this.withScope(n.withClause, outer);
    if (n.relation) this.addRangeVar(n.relation, scope, 'write', type === 'MergeStmt' ? 'merge' : form);
    if (type === 'UpdateStmt') for (const item of n.fromClause ?? []) this.from(item, scope, null);
    if (type === 'DeleteStmt') for (const item of n.usingClause ?? []) this.from(item, scope, null);
    if (type === 'MergeStmt' && n.sourceRelation) this.from(n.sourceRelation, scope, null);
    for (const k in n) {
      if (k === 'withClause' || k === 'relation' || k === 'fromClause' || k === 'usingClause') continue;
      if (k === 'sourceRelation') continue;
      this.walk(n[k], scope);
    }
  }
}

/** Collects the table references of one top-level statement. */
export function collectRefs(stmt: ParsedStatement): StatementRefs {
  const c = new Collector();
  const n = stmt.node;
  switch (stmt.kind) {
    case 'SelectStmt':
      c.select(n, undefined, null);
      break;
    case 'InsertStmt':
    case 'UpdateStmt':
    case 'DeleteStmt':
    case 'MergeStmt':
      c.dml(stmt.kind, n, undefined, 'dml');
      break;
    case 'CopyStmt':
      if (n.relation) {
        if (n.is_from) c.addRangeVar(n.relation, undefined, 'write', 'copy');
        else c.addRangeVar(n.relation, undefined, 'other');
      }
      if (n.query) {
        c.forceOther = true;
        c.walk(n.query, undefined);
      }
      break;
    case 'TruncateStmt':
      for (const r of n.relations ?? []) c.addRangeVar(r.RangeVar, undefined, 'write', 'truncate');
      break;
    case 'ExplainStmt':
    case 'PrepareStmt': {
      const analyze =
        stmt.kind === 'PrepareStmt' ||
        (n.options ?? []).some(
          (o: Node) => o.DefElem?.defname === 'analyze' && o.DefElem?.arg?.Boolean?.boolval !== false,
        );
      c.forceOther = true;
      c.walk(n.query, undefined);
      for (const r of c.refs) {
        if (r.use === 'write')
          r.form = analyze ? (stmt.kind === 'PrepareStmt' ? 'prepare' : 'explain') : undefined;
        if (r.use === 'write' && !analyze) r.use = 'other';
      }
      break;
    }
    default:
      c.forceOther = true;
      c.walk(n, undefined);
  }
  return {
    refs: c.refs,
    whereCurrentOf: c.whereCurrentOf,
    longColumnRefs: c.longColumnRefs,
    bareNames: c.bareNames,
  };
}

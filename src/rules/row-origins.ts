// Which output columns of a statement with switched reads present a column of
// the old table, so that its RowDescription can name the old table's OID and
// the column's attnum as Postgres does when the old table is read directly.
//
// Postgres marks a target entry with its origin only when it is a plain column
// reference (markTargetListOrigins), followed through `*`, `t.*`, joins,
// subqueries and CTEs in FROM; anything else gets 0/0. A switched read turns
// the old table into a subquery of cast `down` expressions, so those columns
// lose their origin: this analysis finds them in the client's own parse tree.
//
// It only claims a field when the parse tree settles it: a name found exactly
// once among the columns it knows at that query level (any other match would
// have made Postgres refuse the name as ambiguous). Whatever it cannot tell
// (relations it has no catalog for, NATURAL joins, set operations) is left as
// the server sent it.
import type { Node, ParsedStatement } from '../sql/parse.ts';
import type { ColumnOrigin } from './mapping.ts';

export type { ColumnOrigin } from './mapping.ts';

/**
 * A column's origin as it reaches an output column. `cast`: through casts,
 * which Postgres drops when they change nothing (same type and typmod), so
 * the origin holds only if the field keeps the column's exact type and typmod.
 */
type Origin = ColumnOrigin & { cast?: true };

/** One output field to restore: its expected name (when known) and origin. */
export interface FieldOrigin extends Origin {
  name?: string;
}

/**
 * Per RowDescription field, the origin to restore or null to leave it. `head`
 * is counted from the first field; when the statement has columns of unknown
 * number (a `*` over a table without catalog facts), `tail` is counted back
 * from the last field, and the fields in between are left alone.
 */
export interface RowOrigins {
  head: (FieldOrigin | null)[];
  tail: (FieldOrigin | null)[] | null;
}

/** The old columns a switched reference presents, in catalog order. */
export type SwitchedColumns = { name: string; origin: ColumnOrigin }[];

interface Col {
  /** undefined: the name is not known here (never matched by a reference). */
  name: string | undefined;
  origin: Origin | null;
}

/** A run of columns of unknown number and names. */
const UNKNOWN = null;
type Part = Col | typeof UNKNOWN;

interface Item {
  /** The name a qualified reference uses (alias or table name); undefined: none. */
  refname?: string;
  /** Unaliased table: schema.table.column can name it. */
  relname?: string;
  schema?: string;
  parts: Part[];
  /** Members still visible to qualified references (an unaliased join's inputs). */
  children: Item[];
}

interface Scope {
  ctes: Map<string, Node | null>;
  parent?: Scope;
}

const OPAQUE: Part[] = [UNKNOWN];

function sval(n: Node): string | undefined {
  return n?.String?.sval;
}

class Analysis {
  constructor(private readonly switched: ReadonlyMap<number, SwitchedColumns>) {}

  select(sel: Node, outer: Scope | undefined): Part[] {
    if (sel.op && sel.op !== 'SETOP_NONE') {
      // Postgres gives a set operation's columns no origin; names come from the left.
      const left: Node = sel.larg;
      return left ? this.select(left, outer).map((p) => (p ? { name: p.name, origin: null } : p)) : OPAQUE;
    }
    if (sel.valuesLists) {
      const first: Node[] = sel.valuesLists[0]?.List?.items ?? [];
      return first.map((_, i) => ({ name: `column${i + 1}`, origin: null }));
    }
    const scope = this.withScope(sel.withClause, outer);
    const items = (sel.fromClause ?? []).map((f: Node) => this.fromItem(f, scope));
    return this.targets(sel.targetList ?? [], items);
  }

  /** Output columns of a select list or RETURNING list over these FROM items. */
  targets(list: Node[], items: Item[]): Part[] {
    const out: Part[] = [];
    for (const t of list) {
      const rt = t.ResTarget;
      const val: Node = rt?.val;
      const ref = val?.ColumnRef;
      if (ref) {
        const fields: Node[] = ref.fields ?? [];
        if (fields[fields.length - 1]?.A_Star) {
          if (fields.length === 1) {
            for (const it of items) out.push(...it.parts);
          } else {
            const it = this.find(items, fields.slice(0, -1).map(sval));
            out.push(...(it ? it.parts : OPAQUE));
          }
          continue;
        }
        const names = fields.map(sval);
        const origin = names.every((n) => n !== undefined) ? this.resolve(items, names as string[]) : null;
        out.push({ name: rt.name ?? names[names.length - 1], origin });
        continue;
      }
      let inner: Node = val;
      while (inner?.TypeCast) inner = inner.TypeCast.arg;
      const cref = inner !== val ? inner?.ColumnRef : undefined;
      if (cref && !cref.fields?.some((f: Node) => f.A_Star)) {
        const names = (cref.fields as Node[]).map(sval);
        const origin = names.every((n) => n !== undefined) ? this.resolve(items, names as string[]) : null;
        out.push({ name: rt.name ?? names[names.length - 1], origin: origin && { ...origin, cast: true } });
        continue;
      }
      // `(row).*` expands to columns this analysis does not know.
      if ((val?.A_Indirection?.indirection ?? []).some((x: Node) => x.A_Star)) {
        out.push(UNKNOWN);
        continue;
      }
      out.push({ name: rt?.name, origin: null });
    }
    return out;
  }

  withScope(withClause: Node, outer: Scope | undefined): Scope | undefined {
    if (!withClause) return outer;
    const ctes: Node[] = (withClause.ctes ?? []).map((c: Node) => c.CommonTableExpr);
    const map = new Map<string, Node | null>();
    const scope: Scope = { ctes: map, parent: outer };
    for (const c of ctes) {
      // A recursive CTE's columns depend on itself: not followed.
      map.set(c.ctename, withClause.recursive ? null : c);
    }
    return scope;
  }

  cteParts(name: string, scope: Scope | undefined): Part[] | undefined {
    for (let s = scope; s; s = s.parent) {
      if (!s.ctes.has(name)) continue;
      const c = s.ctes.get(name);
      if (!c?.ctequery?.SelectStmt) return OPAQUE;
      // A CTE sees only the ones before it: analyse it in the scope it was defined in.
      const before = new Map<string, Node | null>();
      for (const [k, v] of s.ctes) {
        if (k === name) break;
        before.set(k, v);
      }
      const parts = this.select(c.ctequery.SelectStmt, { ctes: before, parent: s.parent });
      return rename(parts, c.aliascolnames);
    }
    return undefined;
  }

  fromItem(n: Node, scope: Scope | undefined): Item {
    if (n.RangeVar) {
      const rv = n.RangeVar;
      const sw = this.switched.get(rv.location);
      let parts: Part[];
      if (sw) parts = sw.map((c) => ({ name: c.name, origin: c.origin }));
      else if (!rv.schemaname) parts = this.cteParts(rv.relname, scope) ?? OPAQUE;
      else parts = OPAQUE;
      return {
        refname: rv.alias?.aliasname ?? rv.relname,
        relname: rv.alias ? undefined : rv.relname,
        schema: rv.alias ? undefined : rv.schemaname || undefined,
        parts: rename(parts, rv.alias?.colnames),
        children: [],
      };
    }
    if (n.JoinExpr) {
      const j = n.JoinExpr;
      const l = this.fromItem(j.larg, scope);
      const r = this.fromItem(j.rarg, scope);
      let parts: Part[];
      if (j.isNatural) {
        parts = OPAQUE;
      } else if (j.usingClause) {
        const using = (j.usingClause as Node[]).map(sval);
        const merged: Part[] = using.map((name) => {
          // Inner and left joins present the left input's column, right joins the right's;
          // a full join's COALESCE has no origin. A coercion (types differ) is caught at reply time.
          const side = j.jointype === 'JOIN_RIGHT' ? r : j.jointype === 'JOIN_FULL' ? undefined : l;
          return { name, origin: side && name !== undefined ? lookup(side.parts, name) : null };
        });
        const rest = (p: Part) => p === UNKNOWN || !using.includes(p.name);
        parts = [...merged, ...l.parts.filter(rest), ...r.parts.filter(rest)];
      } else {
        parts = [...l.parts, ...r.parts];
      }
      const alias = j.alias?.aliasname;
      return {
        refname: alias,
        parts: rename(parts, j.alias?.colnames),
        children: alias === undefined ? [l, r] : [],
      };
    }
    if (n.RangeSubselect) {
      const rs = n.RangeSubselect;
      const sub: Node = rs.subquery?.SelectStmt;
      const parts = sub ? this.select(sub, scope) : OPAQUE;
      return { refname: rs.alias?.aliasname, parts: rename(parts, rs.alias?.colnames), children: [] };
    }
    return { refname: n.RangeFunction?.alias?.aliasname, parts: OPAQUE, children: [] };
  }

  /** The FROM item a qualifier (alias, table, or schema.table) names at this level. */
  find(items: Item[], qual: (string | undefined)[]): Item | undefined {
    if (qual.some((q) => q === undefined)) return undefined;
    const hits: Item[] = [];
    const visit = (it: Item) => {
      if (qual.length === 1 && it.refname === qual[0]) hits.push(it);
      else if (
        qual.length === 2 &&
        it.relname === qual[1] &&
        (it.schema === undefined || it.schema === qual[0])
      ) {
        hits.push(it);
      }
      for (const c of it.children) visit(c);
    };
    for (const it of items) visit(it);
    return hits.length === 1 ? hits[0] : undefined;
  }

  resolve(items: Item[], names: string[]): Origin | null {
    const col = names[names.length - 1];
    if (names.length === 1) {
      let found: Origin | null = null;
      let n = 0;
      for (const it of items) {
        for (const p of it.parts) {
          if (p !== UNKNOWN && p.name === col) {
            n++;
            found = p.origin;
          }
        }
      }
      return n === 1 ? found : null;
    }
    if (names.length > 3) return null;
    const it = this.find(items, names.slice(0, -1));
    return it ? lookup(it.parts, col) : null;
  }
}

function lookup(parts: Part[], name: string): Origin | null {
  let found: Origin | null = null;
  let n = 0;
  for (const p of parts) {
    if (p !== UNKNOWN && p.name === name) {
      n++;
      found = p.origin;
    }
  }
  return n === 1 ? found : null;
}

/** `AS t(a, b)`: the first columns take the listed names. */
function rename(parts: Part[], colnames: Node[] | undefined): Part[] {
  if (!colnames || colnames.length === 0) return parts;
  const names = colnames.map(sval);
  const out: Part[] = [];
  let i = 0;
  let blind = false;
  for (const p of parts) {
    if (p === UNKNOWN) {
      // Past a run of unknown length, which columns the list still covers is unknown.
      blind = true;
      out.push(p);
      continue;
    }
    if (blind) out.push({ name: undefined, origin: p.origin });
    else out.push(i < names.length ? { name: names[i], origin: p.origin } : p);
    i++;
  }
  return out;
}

/**
 * The origins to restore in the RowDescription of one top-level statement,
 * given the FROM references (by parse location) that were switched to the new
 * table; undefined when no field needs it.
 */
export function rowOrigins(
  stmt: ParsedStatement,
  switched: ReadonlyMap<number, SwitchedColumns>,
): RowOrigins | undefined {
  if (switched.size === 0) return undefined;
  const a = new Analysis(switched);
  const n = stmt.node;
  let parts: Part[];
  switch (stmt.kind) {
    case 'SelectStmt':
      if (n.intoClause) return undefined;
      parts = a.select(n, undefined);
      break;
    case 'UpdateStmt':
    case 'DeleteStmt':
    case 'InsertStmt': {
      // RETURNING WITH (OLD AS x, NEW AS y) adds names this analysis does not follow.
      const returning: Node[] | undefined = n.returningClause
        ? n.returningClause.options?.length
          ? undefined
          : n.returningClause.exprs
        : n.returningList;
      if (!returning) return undefined;
      const scope = a.withScope(n.withClause, undefined);
      const target = n.relation;
      // The written table is never switched: Postgres marks its columns itself.
      const items: Item[] = [
        {
          refname: target.alias?.aliasname ?? target.relname,
          relname: target.alias ? undefined : target.relname,
          schema: target.alias ? undefined : target.schemaname || undefined,
          parts: OPAQUE,
          children: [],
        },
      ];
      const from: Node[] =
        stmt.kind === 'UpdateStmt' ? n.fromClause : stmt.kind === 'DeleteStmt' ? n.usingClause : [];
      for (const f of from ?? []) items.push(a.fromItem(f, scope));
      parts = a.targets(returning, items);
      break;
    }
    default:
      return undefined;
  }
  const first = parts.indexOf(UNKNOWN);
  const field = (p: Part): FieldOrigin | null =>
    p?.origin ? { ...p.origin, ...(p.name === undefined ? {} : { name: p.name }) } : null;
  const head = (first < 0 ? parts : parts.slice(0, first)).map(field);
  const tail = first < 0 ? null : parts.slice(parts.lastIndexOf(UNKNOWN) + 1).map(field);
  if (!head.some((f) => f) && !tail?.some((f) => f)) return undefined;
  return { head, tail };
}

// search_path as Postgres reads it: a comma-separated list of schema names,
// unquoted ones folded to lower case, "$user" meaning the session's role.
import { parseQualifiedName } from '../pg/ident.ts';

export const DEFAULT_SEARCH_PATH: readonly string[] = ['$user', 'public'];

/** Parses a search_path setting (`"$user", public`, `"My Schema",x`) into schema names. */
export function parseSearchPath(value: string): string[] {
  const out: string[] = [];
  let cur = '';
  let inQuote = false;
  for (let i = 0; i < value.length; i++) {
    const ch = value[i];
    if (ch === '"') {
      if (inQuote && value[i + 1] === '"') {
        cur += '""';
        i++;
        continue;
      }
      inQuote = !inQuote;
      cur += ch;
    } else if (ch === ',' && !inQuote) {
      out.push(cur);
      cur = '';
    } else cur += ch;
  }
  out.push(cur);
  return out
    .map((p) => p.trim())
    .filter((p) => p.length > 0)
    .map((p) => parseQualifiedName(p).name);
}

/**
 * The schemas an unqualified table name is looked up in, in order. pg_catalog
 * is searched first unless listed; temporary schemas are not modelled.
 */
export function effectiveSchemas(searchPath: readonly string[], user: string): string[] {
  const out = searchPath.includes('pg_catalog') ? [] : ['pg_catalog'];
  for (const s of searchPath) out.push(s === '$user' ? user : s);
  return out;
}

// biome-ignore lint/suspicious/noExplicitAny: the parse tree is untyped JSON from the parser
type Node = any;

function constText(n: Node): string | undefined {
  const c = n?.TypeCast?.arg?.A_Const ?? n?.A_Const;
  return typeof c?.sval?.sval === 'string' ? c.sval.sval : undefined;
}

function constBool(n: Node): boolean | undefined {
  const c = n?.TypeCast?.arg?.A_Const ?? n?.A_Const;
  if (typeof c?.boolval?.boolval === 'boolean') return c.boolval.boolval;
  if (c?.boolval !== undefined) return false;
  const s = constText(n)?.toLowerCase();
  return s === 'true' || s === 't' || s === 'on'
    ? true
    : s === 'false' || s === 'f' || s === 'off'
      ? false
      : undefined;
}

/**
 * `SELECT set_config('search_path', '<path>', <is_local>)` with literal
 * arguments and nothing else in the statement (so it runs exactly once): the
 * path it sets, as SET [LOCAL] search_path would. Anything else (parameters,
 * a FROM clause, other columns) is not followed.
 */
export function setConfigSearchPath(select: Node): { value: string[]; local: boolean } | undefined {
  if (
    select.fromClause ||
    select.whereClause ||
    select.withClause ||
    (select.op && select.op !== 'SETOP_NONE')
  )
    return undefined;
  const targets: Node[] = select.targetList ?? [];
  if (targets.length !== 1) return undefined;
  const f = targets[0].ResTarget?.val?.FuncCall;
  if (!f) return undefined;
  const name: string[] = (f.funcname ?? []).map((p: Node) => p?.String?.sval);
  if (
    name[name.length - 1] !== 'set_config' ||
    (name.length === 2 && name[0] !== 'pg_catalog') ||
    name.length > 2
  )
    return undefined;
  const args: Node[] = f.args ?? [];
  if (args.length !== 3 || constText(args[0])?.toLowerCase() !== 'search_path') return undefined;
  const value = constText(args[1]);
  const local = constBool(args[2]);
  if (value === undefined || local === undefined) return undefined;
  return { value: parseSearchPath(value), local };
}

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

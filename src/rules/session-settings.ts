// Statements that change how names resolve for the rest of the session:
// SET/RESET search_path (and set_config with literals), SET ROLE and SET
// SESSION AUTHORIZATION, DISCARD ALL. Pure functions of the text.
import { type Node, type ParsedSql, type ParsedStatement, parseSql } from '../sql/parse.ts';
import { setConfigSearchPath } from '../sql/search-path.ts';
import type { SearchPathChange } from './plan-types.ts';

// Only texts that can change search_path are parsed: they name it, reset or
// discard everything, or spell a name Unicode-escaped (SET U&"\0073earch_path").
const SEARCH_PATH_HINT = /search_path|reset\s+all|discard\s+all|u&"/i;

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

/** The search_path change one parsed statement makes. */
export function searchPathChangeOf(s: ParsedStatement): SearchPathChange | undefined {
  if (s.kind === 'DiscardStmt' && s.node.target === 'DISCARD_ALL') return { value: null, local: false };
  if (s.kind === 'SelectStmt') return setConfigSearchPath(s.node);
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

/** A change of the role "$user" names: `role` null returns to the session user (login or SET SESSION AUTHORIZATION). */
export interface RoleChange {
  /** Which setting: the current role (SET ROLE) or the session user (SET SESSION AUTHORIZATION). */
  what: 'role' | 'session';
  role: string | null;
  local: boolean;
}

const ROLE_HINT = /\brole\b|authorization|discard/i;
/**
 * Some statement of the text starts with SET, RESET or DISCARD (comments
 * before it allowed): texts that merely name a column "role" are not parsed
 * again for every execution.
 */
const SETTING_STATEMENT = /(?:^|;)\s*(?:(?:--[^\n]*(?:\n|$)|\/\*[\s\S]*?\*\/)\s*)*(?:set|reset|discard)\b/i;

/**
 * The role changes a text makes, in order: SET [SESSION|LOCAL] ROLE, RESET
 * ROLE, SET ROLE NONE, SET/RESET SESSION AUTHORIZATION, DISCARD ALL. Only
 * "$user" in the search_path depends on them.
 */
export function roleChanges(sql: string): RoleChange[] {
  if (!ROLE_HINT.test(sql) || !SETTING_STATEMENT.test(sql)) return [];
  let parsed: ParsedSql;
  try {
    parsed = parseSql(sql);
  } catch {
    return [];
  }
  const out: RoleChange[] = [];
  for (const s of parsed.statements) {
    if (s.kind === 'DiscardStmt' && s.node.target === 'DISCARD_ALL') {
      out.push({ what: 'session', role: null, local: false });
      continue;
    }
    if (s.kind !== 'VariableSetStmt') continue;
    const n = s.node;
    const what = n.name === 'role' ? 'role' : n.name === 'session_authorization' ? 'session' : undefined;
    if (what === undefined) continue;
    const local = n.is_local === true;
    const arg: unknown = n.args?.[0]?.A_Const?.sval?.sval;
    if (n.kind === 'VAR_SET_VALUE' && typeof arg === 'string') {
      out.push({ what, role: what === 'role' && arg === 'none' ? null : arg, local });
    } else if (n.kind === 'VAR_RESET' || n.kind === 'VAR_SET_DEFAULT') {
      out.push({ what, role: null, local });
    }
  }
  return out;
}

// Function bodies as text the proxy can rewrite: where a CREATE FUNCTION's or
// DO's body literal sits in the client's text, its decoded content, and, for
// PL/pgSQL, where each embedded SQL statement sits inside that content.
// libpg-query's PL/pgSQL parser gives each statement's query text but no
// offsets, so each is found again in the body, in source order.
import { parsePlPgSQLSync } from 'libpg-query';
import type { Node, ParsedStatement, Token } from './parse.ts';

export interface FunctionBody {
  kind: 'function' | 'do';
  /** Lower-case language name (`plpgsql` for DO without LANGUAGE). */
  language: string;
  /** Created in the session's temporary schema (pg_temp / pg_temp_N), or a DO block. */
  temporary: boolean;
  /** The decoded body. */
  body: string;
  /**
   * Byte range of the body literal (quotes included) in the client's text, and
   * how to write a changed body back in the same quoting; undefined when the
   * literal's form is not one the proxy re-encodes (E'', U&'').
   */
  literal?: { start: number; end: number; encode: (body: string) => string };
}

function sval(n: Node): string | undefined {
  return n?.String?.sval;
}

function option(list: Node[] | undefined, name: string): Node | undefined {
  return (list ?? []).find((o: Node) => o.DefElem?.defname === name)?.DefElem;
}

/** The body of a DO or CREATE FUNCTION statement as the parser decoded it (one `AS` string). */
export function bodyString(stmt: ParsedStatement): string | undefined {
  const n = stmt.node;
  if (stmt.kind === 'DoStmt') return sval(option(n.args, 'as')?.arg);
  if (stmt.kind !== 'CreateFunctionStmt') return undefined;
  const as = option(n.options, 'as')?.arg?.List?.items;
  return Array.isArray(as) && as.length === 1 ? sval(as[0]) : undefined;
}

/** A dollar tag that `body` does not contain (the original one when possible). */
function dollarTag(body: string, preferred: string): string {
  let tag = preferred;
  for (let i = 0; body.includes(tag); i++) tag = `$sy${i}$`;
  return tag;
}

/** The literal's decoder, when its bytes decode by a rule the proxy can reverse. */
function literalForm(text: string): { decoded: string; encode: (b: string) => string } | undefined {
  const dollar = /^(\$(?:[A-Za-z_\u0080-\uffff][A-Za-z0-9_\u0080-\uffff]*)?\$)/.exec(text);
  if (dollar) {
    const tag = dollar[1];
    if (!text.endsWith(tag) || text.length < tag.length * 2) return undefined;
    return {
      decoded: text.slice(tag.length, text.length - tag.length),
      encode: (b) => {
        const t = dollarTag(b, tag);
        return `${t}${b}${t}`;
      },
    };
  }
  // A plain '...' literal (standard_conforming_strings on: backslashes are literal).
  if (text.startsWith("'") && text.endsWith("'") && text.length >= 2) {
    return {
      decoded: text.slice(1, -1).replaceAll("''", "'"),
      encode: (b) => `'${b.replaceAll("'", "''")}'`,
    };
  }
  return undefined;
}

/**
 * The body of a CREATE FUNCTION / PROCEDURE or DO statement, or undefined when
 * it has no single string body (BEGIN ATOMIC bodies, C functions).
 */
export function functionBody(
  stmt: ParsedStatement,
  bytes: Buffer,
  tokens: readonly Token[],
): FunctionBody | undefined {
  const n = stmt.node;
  let language: string | undefined;
  let temporary: boolean;
  const body = bodyString(stmt);
  if (stmt.kind === 'DoStmt') {
    language = sval(option(n.args, 'language')?.arg) ?? 'plpgsql';
    temporary = true;
  } else if (stmt.kind === 'CreateFunctionStmt') {
    language = sval(option(n.options, 'language')?.arg) ?? 'sql';
    const names: string[] = (n.funcname ?? []).map((x: Node) => sval(x) ?? '');
    temporary = names.length >= 2 && /^pg_temp(_\d+)?$/.test(names[names.length - 2]);
  } else {
    return undefined;
  }
  if (body === undefined) return undefined;
  const out: FunctionBody = {
    kind: stmt.kind === 'DoStmt' ? 'do' : 'function',
    language: language.toLowerCase(),
    temporary,
    body,
  };
  for (const t of tokens) {
    if (t.start < stmt.start || t.end > stmt.end || t.tokenName !== 'SCONST') continue;
    const form = literalForm(bytes.subarray(t.start, t.end).toString('utf8'));
    if (form && form.decoded === body) {
      out.literal = { start: t.start, end: t.end, encode: form.encode };
      break;
    }
  }
  return out;
}

/** One SQL statement of a PL/pgSQL body, found in the body's bytes. */
export interface EmbeddedSql {
  /** The query as PL/pgSQL hands it to the executor (an INTO clause blanked out). */
  query: string;
  /** Byte range in the body: the whole statement, INTO included, up to its `;` (excluded). */
  start: number;
  end: number;
  /** `INTO [STRICT] target` as written, when the statement has one. */
  into?: string;
}

export interface PlpgsqlBody {
  /** Plain SQL statements (PLpgSQL_stmt_execsql), in source order. */
  statements: EmbeddedSql[];
  /** Other embedded statements (FOR ... IN query, RETURN QUERY, cursors, PERFORM). */
  otherQueries: string[];
  /**
   * Dynamic SQL (EXECUTE, FOR ... IN EXECUTE, RETURN QUERY EXECUTE, OPEN ...
   * FOR EXECUTE): the query as written, a string literal or an expression.
   */
  dynamic: string[];
}

export class PlpgsqlError extends Error {
  override name = 'PlpgsqlError';
}

const DYNAMIC_KEYS: Record<string, string> = {
  PLpgSQL_stmt_dynexecute: 'query',
  PLpgSQL_stmt_dynfors: 'query',
  PLpgSQL_stmt_return_query: 'dynquery',
  PLpgSQL_stmt_open: 'dynquery',
};

function isSpace(c: number): boolean {
  return c === 32 || (c >= 9 && c <= 13);
}

/**
 * Where `query` (PL/pgSQL's copy of the source with INTO blanked by spaces and
 * trailing space trimmed) starts in `body` at or after `from`, followed by
 * optional space and the statement's `;`.
 */
function locate(body: Buffer, query: Buffer, from: number, starts: ReadonlySet<number> | undefined) {
  for (let p = body.indexOf(query[0], from); p >= 0 && p + query.length <= body.length; ) {
    let ok = !starts || starts.has(p);
    let diffStart = -1;
    let diffEnd = -1;
    for (let i = 0; ok && i < query.length; i++) {
      if (body[p + i] === query[i]) continue;
      if (query[i] !== 32) ok = false;
      else {
        if (diffStart < 0) diffStart = i;
        diffEnd = i + 1;
      }
    }
    if (ok) {
      // Between the trimmed query and its `;` there is only space and the blanked INTO.
      const e = p + query.length;
      const semi = body.indexOf(59, e);
      for (let i = e; semi >= 0 && i < semi; i++) {
        if (isSpace(body[i])) continue;
        if (diffStart < 0) diffStart = i - p;
        diffEnd = i - p + 1;
      }
      if (semi >= 0) {
        const into = diffStart >= 0 ? body.subarray(p + diffStart, p + diffEnd).toString('utf8') : undefined;
        if (into === undefined || /^into\b/i.test(into)) return { start: p, end: semi, into };
      }
    }
    p = body.indexOf(query[0], p + 1);
  }
  return undefined;
}

/** The SQL statements and dynamic queries of a PL/pgSQL function or DO block. */
export function plpgsqlBody(stmtText: string, body: string, bodyTokens?: readonly Token[]): PlpgsqlBody {
  let tree: Node;
  try {
    tree = parsePlPgSQLSync(stmtText);
  } catch (e) {
    throw new PlpgsqlError((e as Error).message);
  }
  const funcs: Node[] = tree.plpgsql_funcs ?? [];
  if (funcs.length !== 1) throw new PlpgsqlError(`expected one PL/pgSQL function, got ${funcs.length}`);
  const out: PlpgsqlBody = { statements: [], otherQueries: [], dynamic: [] };
  const execsql: string[] = [];
  const visit = (v: Node): void => {
    if (v === null || typeof v !== 'object') return;
    if (Array.isArray(v)) {
      for (const x of v) visit(x);
      return;
    }
    for (const k in v) {
      const c = v[k];
      if (c === null || typeof c !== 'object') continue;
      if (k === 'PLpgSQL_stmt_execsql') {
        execsql.push(c.sqlstmt?.PLpgSQL_expr?.query ?? '');
        continue;
      }
      if (k === 'PLpgSQL_expr') {
        // Expressions and assignments (other parse modes) cannot hold a data-modifying statement.
        if (typeof c.query === 'string' && (c.parseMode ?? 0) === 0) out.otherQueries.push(c.query);
        continue;
      }
      const dyn = DYNAMIC_KEYS[k];
      if (dyn && c[dyn]?.PLpgSQL_expr) {
        out.dynamic.push(c[dyn].PLpgSQL_expr.query ?? '');
        for (const f in c) if (f !== dyn) visit(c[f]);
        continue;
      }
      visit(c);
    }
  };
  visit(funcs[0].PLpgSQL_function?.action);

  const bytes = Buffer.from(body, 'utf8');
  const starts = bodyTokens ? new Set(bodyTokens.map((t) => t.start)) : undefined;
  let cursor = 0;
  for (const q of execsql) {
    const qb = Buffer.from(q, 'utf8');
    const at = qb.length > 0 ? locate(bytes, qb, cursor, starts) : undefined;
    if (!at) throw new PlpgsqlError(`could not find the statement "${q.slice(0, 60)}" in the body`);
    out.statements.push({ query: q, ...at });
    cursor = at.end;
  }
  return out;
}

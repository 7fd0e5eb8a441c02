// Writes inside function bodies the client sends: a DO block or a function it
// creates in pg_temp (Sequelize's findOrCreate) runs right away in the same
// session, so each SQL statement of its body is planned like a top-level one
// and the rewritten body is spliced back into the client's text. What cannot
// be rewritten is reported: a permanent function that writes a mapped table
// (its later calls are never seen), dynamic SQL that may name one, a write
// inside an expression or loop query.
import { type ParsedStatement, scanTokens, type Token } from '../sql/parse.ts';
import {
  type FunctionBody,
  functionBody,
  type PlpgsqlBody,
  PlpgsqlError,
  plpgsqlBody,
} from '../sql/plpgsql.ts';
import { type Edit, spliceBytes } from '../sql/splice.ts';

/** What the planner says about one statement text of a body. */
export interface BodyStatementPlan {
  sql: string;
  rewritten: boolean;
  /** The text writes a mapped table (mirrored or not). */
  writes?: string;
  /** The statement that writes returns rows (RETURNING). */
  returning: boolean;
  unmirrored?: { mapping: string; reason: string; detail?: string };
}

export interface BodyPlanner {
  /** Plans one SQL text of a body (its writes mirrored returning exactly the client's columns). */
  plan(sql: string): BodyStatementPlan;
  /** The mapping whose old table the text names as a whole word, if any. */
  mentions(text: string): string | undefined;
}

export type BodyReason = 'function_body' | 'dynamic_sql';

export type BodyResult =
  | { kind: 'none' }
  | { kind: 'rewrite'; edits: Edit[]; mapping: string }
  | { kind: 'unmirrored'; mapping: string; reason: BodyReason; detail: string };

const NONE: BodyResult = { kind: 'none' };
const COUNT_VAR = '"__sy_n"';

function isLiteral(q: string): string | undefined {
  const m = /^\s*'((?:[^']|'')*)'\s*$/.exec(q);
  return m ? m[1].replaceAll("''", "'") : undefined;
}

function safeTokens(sql: string): Token[] | undefined {
  try {
    return scanTokens(sql);
  } catch {
    return undefined;
  }
}

/** Plans the body of a CREATE FUNCTION / PROCEDURE or DO statement. */
export function planBody(
  stmt: ParsedStatement,
  bytes: Buffer,
  tokens: readonly Token[],
  p: BodyPlanner,
): BodyResult {
  const fb = functionBody(stmt, bytes, tokens);
  const stmtText = bytes.subarray(stmt.start, stmt.end).toString('utf8');
  if (!fb) {
    // BEGIN ATOMIC bodies are parsed with the statement: their writes show as nested ones.
    if (stmt.kind === 'CreateFunctionStmt' && stmt.node.sql_body) {
      const writes = p.mentions(stmtText) && p.plan(stmtText).writes;
      if (!writes) return NONE;
      return {
        kind: 'unmirrored',
        mapping: writes,
        reason: 'function_body',
        detail: 'a BEGIN ATOMIC body that writes',
      };
    }
    return NONE;
  }
  const mapping = p.mentions(fb.body);
  if (!mapping) return NONE;
  const what = fb.kind === 'do' ? 'a DO block' : 'a function body';

  if (fb.language === 'sql') {
    const r = p.plan(fb.body);
    if (r.writes === undefined) return NONE;
    if (!fb.temporary) return permanent(r.writes);
    if (r.unmirrored) return inner(r.unmirrored, what);
    if (!r.rewritten) return NONE;
    return rewrite(fb, r.sql, r.writes);
  }
  if (fb.language !== 'plpgsql') {
    return {
      kind: 'unmirrored',
      mapping,
      reason: 'function_body',
      detail: `${what} in LANGUAGE ${fb.language}`,
    };
  }

  let body: PlpgsqlBody;
  try {
    body = plpgsqlBody(stmtText, fb.body, safeTokens(fb.body));
  } catch (e) {
    if (!(e instanceof PlpgsqlError)) throw e;
    return {
      kind: 'unmirrored',
      mapping,
      reason: 'function_body',
      detail: `${what} switchyard cannot parse: ${e.message}`,
    };
  }

  // Dynamic SQL: a literal is checked like any text; anything built at run time may name the table.
  for (const q of body.dynamic) {
    const lit = isLiteral(q);
    if (lit !== undefined && (!p.mentions(lit) || p.plan(lit).writes === undefined)) continue;
    return {
      kind: 'unmirrored',
      mapping,
      reason: 'dynamic_sql',
      detail: `EXECUTE in ${what} that names a mapped table`,
    };
  }
  for (const q of body.otherQueries) {
    if (!p.mentions(q)) continue;
    const r = p.plan(q);
    if (r.writes !== undefined) {
      return {
        kind: 'unmirrored',
        mapping: r.writes,
        reason: 'function_body',
        detail: `a write in a loop query, RETURN QUERY or expression of ${what}`,
      };
    }
  }

  const edits: Edit[] = [];
  let writes: string | undefined;
  const bodyBytes = Buffer.from(fb.body, 'utf8');
  for (const s of body.statements) {
    if (!p.mentions(s.query)) continue;
    const r = p.plan(s.query);
    if (r.writes === undefined && !r.rewritten) continue;
    if (r.writes !== undefined && !fb.temporary) return permanent(r.writes);
    if (r.unmirrored) return inner(r.unmirrored, what);
    if (!r.rewritten) continue;
    writes ??= r.writes;
    let text: string;
    if (r.writes === undefined || r.returning) {
      // PL/pgSQL takes INTO out wherever it stands; the mirrored form returns the client's columns.
      // New lines: the rewritten text, and the INTO clause as PL/pgSQL cut it out, may end in a -- comment.
      text = s.into ? `${r.sql}\n${s.into}\n` : r.sql;
    } else {
      if (s.into)
        return inner({ mapping: r.writes, reason: 'unsupported', detail: 'INTO without RETURNING' }, what);
      // The mirrored form is a SELECT of the row count; a nested block keeps FOUND and ROW_COUNT.
      text =
        `DECLARE ${COUNT_VAR} bigint; BEGIN ${r.sql}\nINTO ${COUNT_VAR}; ` +
        `PERFORM FROM pg_catalog.generate_series(1, ${COUNT_VAR}); END`;
    }
    edits.push({ start: s.start, end: s.end, text });
  }
  if (edits.length === 0) return NONE;
  return rewrite(fb, spliceBytes(bodyBytes, edits), writes ?? mapping);
}

function rewrite(fb: FunctionBody, body: string, mapping: string): BodyResult {
  // A body in an E'' or U&'' literal is not re-encoded: its writes are counted instead.
  if (!fb.literal) {
    return {
      kind: 'unmirrored',
      mapping,
      reason: 'function_body',
      detail: 'a body that writes, in a string form switchyard does not rewrite',
    };
  }
  return {
    kind: 'rewrite',
    mapping,
    edits: [{ start: fb.literal.start, end: fb.literal.end, text: fb.literal.encode(body) }],
  };
}

function permanent(mapping: string): BodyResult {
  return {
    kind: 'unmirrored',
    mapping,
    reason: 'function_body',
    detail: 'a permanent function that writes a mapped table (its calls are not seen)',
  };
}

function inner(u: { mapping: string; reason: string; detail?: string }, what: string): BodyResult {
  return {
    kind: 'unmirrored',
    mapping: u.mapping,
    reason: 'function_body',
    detail: `${u.detail ?? u.reason} in ${what}`,
  };
}

// An up/down expression is checked on its own before the catalog check wraps
// it in SQL of the proxy's making: a syntax error found inside the wrapper
// ("syntax error at or near "FROM"") would point at text the user never wrote.
// The parser sees `SELECT <expr>` only, so whatever it quotes is the user's,
// and the tree must be exactly one expression: a `)` or `;` that closes the
// wrapper early must never reach the database.
import { parseSql, SqlParseError } from '../sql/parse.ts';

/** Why the text is not one SQL expression, or null when it is. */
export function expressionProblem(expr: string): string | null {
  let statements: ReturnType<typeof parseSql>['statements'];
  try {
    statements = parseSql(`SELECT ${expr}`).statements;
  } catch (e) {
    if (e instanceof SqlParseError) return `is not valid SQL: ${e.message}`;
    throw e;
  }
  const s = statements.length === 1 && statements[0].kind === 'SelectStmt' ? statements[0].node : undefined;
  const target = s?.targetList?.length === 1 ? s.targetList[0].ResTarget : undefined;
  const clauses = [
    'distinctClause',
    'intoClause',
    'fromClause',
    'whereClause',
    'groupClause',
    'havingClause',
    'windowClause',
    'valuesLists',
    'sortClause',
    'limitOffset',
    'limitCount',
    'lockingClause',
    'withClause',
  ];
  if (
    !s ||
    !target ||
    target.name !== undefined ||
    clauses.some((c) => s[c] !== undefined) ||
    (s.op && s.op !== 'SETOP_NONE')
  ) {
    return 'must be a single SQL expression (no AS, FROM, other clauses or ;)';
  }
  return null;
}

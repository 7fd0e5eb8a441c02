// An up/down expression is checked alone, so errors quote only what the user wrote.
import { beforeAll, describe, expect, it } from 'vitest';
import { expressionProblem } from '../../src/rules/expr-check.ts';
import { loadParser } from '../../src/sql/parse.ts';

beforeAll(async () => {
  await loadParser();
});

describe('expressionProblem', () => {
  it('accepts single expressions, subqueries included', () => {
    for (const e of [
      'id',
      "first_name || ' ' || last_name",
      '(amount * 100)::bigint',
      'coalesce(a, b)',
      '(SELECT 1)',
    ])
      expect(expressionProblem(e), e).toBeNull();
  });

  it('reports a syntax error in the terms of the expression', () => {
    expect(expressionProblem('first_name ||')).toBe('is not valid SQL: syntax error at end of input');
    expect(expressionProblem('lower(')).toBe('is not valid SQL: syntax error at end of input');
  });

  it('refuses text that is not one expression, which would escape the SQL built around it', () => {
    for (const e of [
      '1 FROM users',
      '1; DROP TABLE users',
      'a AS b',
      '1, 2',
      '1 UNION SELECT 2',
      'x WHERE true',
    ])
      expect(expressionProblem(e), e).toMatch(/^(must be a single SQL expression|is not valid SQL)/);
  });
});

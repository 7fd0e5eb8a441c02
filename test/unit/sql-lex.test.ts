import { beforeAll, describe, expect, it } from 'vitest';
import { lexSql } from '../../src/sql/lex.ts';
import { loadParser, scanTokens } from '../../src/sql/parse.ts';
import { ORM_CORPUS } from '../fixtures/orm-corpus.ts';

beforeAll(async () => {
  await loadParser();
});

const TRICKY = [
  `SELECT 'it''s', E'a\\'b', $$x'y$$, $tag$ "no" $tag$, U&"d\\0061t", "we""ird", B'101', X'1F' FROM "Ünï"."Çé" t`,
  `SELECT 1.5e-3, .5, 10, a[1:2], $1::int[], -- comment ' "\n /* nested /* x */ ' */ "end" FROM users`,
  `UPDATE users SET n = n+1, flag = a IS DISTINCT FROM b WHERE x->>'k' = $2 RETURNING *`,
  `INSERT INTO "café" ("prénom") VALUES ('Zoë 🚀 ☃') ON CONFLICT DO NOTHING`,
];

describe('lexSql', () => {
  it('finds the same token boundaries as the Postgres scanner', () => {
    for (const sql of [...TRICKY, ...ORM_CORPUS.map((e) => e.sql)]) {
      const mine = new Set(lexSql(Buffer.from(sql)).map((t) => `${t.start}-${t.end}`));
      const theirs = scanTokens(sql).filter(
        (t) =>
          !['SQL_COMMENT', 'C_COMMENT'].includes(t.tokenName) && !/^[-+*/<>=~!@#%^&|`?:]{2,}$/.test(t.text),
      );
      const missing = theirs.filter((t) => !mine.has(`${t.start}-${t.end}`)).map((t) => t.text);
      expect({ sql, missing }).toEqual({ sql, missing: [] });
    }
  });

  it('marks the keywords the planner looks for and never quoted names', () => {
    const t = lexSql(Buffer.from('WITH x AS (SELECT 1) UPDATE "set" SET a = 1 FROM y WHERE b RETURNING c'));
    const kw = t.filter((x) => x.keywordName !== 'NO_KEYWORD').map((x) => x.text.toLowerCase());
    expect(kw).toEqual(['with', 'as', 'select', 'update', 'set', 'from', 'where', 'returning']);
  });
});

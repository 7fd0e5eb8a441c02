// A small SQL lexer over the UTF-8 bytes of text the parser has already
// accepted. It only needs token boundaries (names, keywords, brackets, dots),
// never values, so it is far cheaper than a second pass through the parser.
// Comments are dropped. Operators come out one character per token.
import type { Token } from './parse.ts';

/** Keywords the planner looks for; other words are reported as identifiers. */
const KEYWORDS = new Set([
  'with',
  'recursive',
  'insert',
  'update',
  'delete',
  'set',
  'from',
  'where',
  'returning',
  'only',
  'distinct',
  'as',
  'table',
  'values',
  'select',
  'default',
  'on',
  'conflict',
  'overriding',
  'value',
]);

function isIdentStart(c: number): boolean {
  return (c >= 97 && c <= 122) || (c >= 65 && c <= 90) || c === 95 || c >= 128;
}

function isIdentChar(c: number): boolean {
  return isIdentStart(c) || (c >= 48 && c <= 57) || c === 36;
}

function isDigit(c: number): boolean {
  return c >= 48 && c <= 57;
}

function isSpace(c: number): boolean {
  return c === 32 || (c >= 9 && c <= 13);
}

/** End of a '...' literal starting at the quote `q`; `backslash`: E'' escapes. */
function quotedEnd(b: Buffer, q: number, quote: number, backslash: boolean): number {
  let i = q + 1;
  for (;;) {
    if (i >= b.length) return b.length;
    const c = b[i];
    if (backslash && c === 92) {
      i += 2;
      continue;
    }
    if (c === quote) {
      if (b[i + 1] === quote) {
        i += 2;
        continue;
      }
      return i + 1;
    }
    i++;
  }
}

export function lexSql(b: Buffer): Token[] {
  const out: Token[] = [];
  const push = (start: number, end: number, tokenName: string, keyword = false, text?: string) => {
    out.push({
      start,
      end,
      text: text ?? b.toString('utf8', start, end),
      tokenName,
      keywordName: keyword ? 'KEYWORD' : 'NO_KEYWORD',
    });
  };
  let i = 0;
  const n = b.length;
  while (i < n) {
    const c = b[i];
    if (isSpace(c)) {
      i++;
      continue;
    }
    // -- comment
    if (c === 45 && b[i + 1] === 45) {
      while (i < n && b[i] !== 10 && b[i] !== 13) i++;
      continue;
    }
    // /* nested comment */
    if (c === 47 && b[i + 1] === 42) {
      let depth = 1;
      i += 2;
      while (i < n && depth > 0) {
        if (b[i] === 47 && b[i + 1] === 42) {
          depth++;
          i += 2;
        } else if (b[i] === 42 && b[i + 1] === 47) {
          depth--;
          i += 2;
        } else i++;
      }
      continue;
    }
    const start = i;
    // string literals: '..', E'..', B'..', X'..', N'..', U&'..'
    if (c === 39) {
      i = quotedEnd(b, i, 39, false);
      push(start, i, 'SCONST', false, '');
      continue;
    }
    if ((c === 69 || c === 101) && b[i + 1] === 39) {
      i = quotedEnd(b, i + 1, 39, true);
      push(start, i, 'SCONST', false, '');
      continue;
    }
    if ((c === 66 || c === 98 || c === 88 || c === 120 || c === 78 || c === 110) && b[i + 1] === 39) {
      i = quotedEnd(b, i + 1, 39, false);
      push(start, i, 'SCONST', false, '');
      continue;
    }
    if ((c === 85 || c === 117) && b[i + 1] === 38 && (b[i + 2] === 39 || b[i + 2] === 34)) {
      const q = b[i + 2];
      i = quotedEnd(b, i + 2, q, false);
      push(start, i, q === 39 ? 'SCONST' : 'IDENT');
      continue;
    }
    // "quoted identifier"
    if (c === 34) {
      i = quotedEnd(b, i, 34, false);
      push(start, i, 'IDENT');
      continue;
    }
    // $n parameter or $tag$ dollar-quoted string
    if (c === 36) {
      if (isDigit(b[i + 1])) {
        i++;
        while (i < n && isDigit(b[i])) i++;
        push(start, i, 'PARAM');
        continue;
      }
      let j = i + 1;
      while (j < n && isIdentChar(b[j]) && b[j] !== 36) j++;
      if (b[j] === 36) {
        const tag = b.subarray(i, j + 1);
        const close = b.indexOf(tag, j + 1);
        i = close < 0 ? n : close + tag.length;
        push(start, i, 'SCONST', false, '');
        continue;
      }
    }
    if (isIdentStart(c)) {
      i++;
      while (i < n && isIdentChar(b[i])) i++;
      const text = b.toString('utf8', start, i);
      const lower = text.toLowerCase();
      push(start, i, 'IDENT', KEYWORDS.has(lower), text);
      continue;
    }
    if (isDigit(c) || (c === 46 && isDigit(b[i + 1]))) {
      i++;
      while (i < n) {
        const d = b[i];
        if (isDigit(d) || d === 95 || (d >= 65 && d <= 90) || (d >= 97 && d <= 122)) {
          if ((d === 101 || d === 69) && (b[i + 1] === 43 || b[i + 1] === 45)) i++;
          i++;
        } else if (d === 46 && b[i + 1] !== 46) i++;
        else break;
      }
      push(start, i, 'NUMBER', false, '');
      continue;
    }
    i++;
    push(start, i, 'OP', false, String.fromCharCode(c));
  }
  return out;
}

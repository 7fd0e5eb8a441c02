// Token-level helpers over one statement: the parse tree gives where a node
// starts, the tokens say where clauses and names end.
import type { Token } from './parse.ts';

export interface StatementTokens {
  /** Tokens of the statement, comments dropped. */
  toks: Token[];
  /** Parenthesis depth of each token, relative to the statement start. */
  depth: number[];
}

export function statementTokens(all: readonly Token[], start: number, end: number): StatementTokens {
  const toks: Token[] = [];
  const depth: number[] = [];
  let d = 0;
  for (const t of all) {
    if (t.start < start) continue;
    if (t.start >= end) break;
    if (t.tokenName === 'SQL_COMMENT' || t.tokenName === 'C_COMMENT') continue;
    if (t.text === ')' || t.text === ']') d--;
    toks.push(t);
    depth.push(d);
    if (t.text === '(' || t.text === '[') d++;
  }
  return { toks, depth };
}

export function indexAt(st: StatementTokens, offset: number): number {
  let lo = 0;
  let hi = st.toks.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const s = st.toks[mid].start;
    if (s === offset) return mid;
    if (s < offset) lo = mid + 1;
    else hi = mid - 1;
  }
  return -1;
}

export function isKeyword(t: Token | undefined, word: string): boolean {
  return t !== undefined && t.keywordName !== 'NO_KEYWORD' && t.text.toLowerCase() === word;
}

/** Index of the last token of the name part at `i`: a U&"..." identifier may be followed by UESCAPE 'c'. */
function uescapeEnd(st: StatementTokens, i: number): number {
  const t = st.toks[i];
  if (!/^u&"/i.test(t.text)) return i;
  const u = st.toks[i + 1];
  if (u?.text.toLowerCase() !== 'uescape' || st.toks[i + 2]?.tokenName !== 'SCONST') return i;
  return i + 2;
}

/** Byte range of a relation name starting at `location` (`a`, `a.b`, `"A" . "b"`, a trailing `*`), with a leading ONLY. */
export function relationSpan(
  st: StatementTokens,
  location: number,
  only: boolean,
): { start: number; end: number } | undefined {
  const i = indexAt(st, location);
  if (i < 0) return undefined;
  let j = uescapeEnd(st, i);
  while (st.toks[j + 1]?.text === '.' && st.toks[j + 2] !== undefined) j = uescapeEnd(st, j + 2);
  if (st.toks[j + 1]?.text === '*') j++;
  let start = st.toks[i].start;
  if (only) {
    if (!isKeyword(st.toks[i - 1], 'only')) return undefined;
    start = st.toks[i - 1].start;
  }
  return { start, end: st.toks[j].end };
}

/** First token at depth 0 from index `from` that is the keyword `word` and passes `ok`. */
export function findTopKeyword(
  st: StatementTokens,
  word: string,
  from: number,
  ok: (i: number) => boolean = () => true,
): number {
  const base = st.depth[from] ?? 0;
  for (let i = from; i < st.toks.length; i++) {
    if (st.depth[i] < base) return -1;
    if (st.depth[i] === base && isKeyword(st.toks[i], word) && ok(i)) return i;
  }
  return -1;
}

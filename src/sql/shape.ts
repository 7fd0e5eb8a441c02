// A statement's shape: its text with each literal constant (number, '...'
// or E'...' string) replaced by a slot, so that statements differing only in
// their literals share one plan. Only statement kinds whose plan cannot depend
// on a literal's value are normalized; everything else keeps its exact text.
import { lexSql } from './lex.ts';
import type { Token } from './parse.ts';

/** How a literal is written; part of the key (`5` and `'5'` are different statements). */
export type SlotClass = 'i' | 'f' | 's' | 'e';

export interface Shape {
  /** The text with each literal replaced by `\u0000` and its class (the wire forbids NUL in SQL text). */
  key: string;
  /** Text between the literals: one more than there are literals. */
  parts: string[];
  literals: string[];
  classes: SlotClass[];
}

/** A cached rewrite: `pieces[0] + literal[slots[0]] + pieces[1] + ...`. */
export interface Template {
  pieces: string[];
  slots: number[];
}

/**
 * First words of the statements that may be normalized. SET, RESET, SET ROLE,
 * DO, CREATE FUNCTION, PREPARE, COPY, EXPLAIN, CALL and the rest keep their
 * exact text: their literals name schemas and roles or hold code that is
 * parsed for writes.
 */
const NORMALIZED_STATEMENTS = new Set(['select', 'insert', 'update', 'delete', 'with', 'values', 'table']);

/** Names whose presence keeps the whole text exact (their literal arguments change session state). */
const EXACT_NAMES = new Set(['set_config', 'uescape']);

/** A plain decimal number: anything else the lexer calls a number (0x1F, 1_000, 12abc) stays exact. */
const PLAIN_NUMBER = /^(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/;
const INTEGER = /^\d+$/;

/** Sentinels stand in for the literals when a template is derived; text already containing one stays exact. */
const SENTINEL_INT_BASE = 1987650000;
const MAX_SLOTS = 10_000;
const SENTINEL_CORE = /198765\d{4}|~sy~/;

function unquotedLower(t: Token): string {
  const s = t.text.toLowerCase();
  return s.length > 1 && s.startsWith('"') && s.endsWith('"') ? s.slice(1, -1) : s;
}

/** The shape of `sql`, or undefined when it has no literal or must be keyed by its exact text. */
export function shapeOf(sql: string): Shape | undefined {
  const b = Buffer.from(sql, 'utf8');
  const ascii = b.length === sql.length;
  const slice = (s: number, e: number) => (ascii ? sql.slice(s, e) : b.toString('utf8', s, e));
  const toks = lexSql(b);
  const parts: string[] = [];
  const literals: string[] = [];
  const classes: SlotClass[] = [];
  let pos = 0;
  let startOfStatement = true;
  let prev: Token | undefined;
  for (const t of toks) {
    if (startOfStatement) {
      if (!(t.text === '(' || NORMALIZED_STATEMENTS.has(t.text.toLowerCase()))) return undefined;
      startOfStatement = false;
    }
    if (t.tokenName === 'OP') {
      if (t.text === ';') startOfStatement = true;
    } else if (t.tokenName === 'IDENT') {
      if (EXACT_NAMES.has(unquotedLower(t))) return undefined;
    } else if (t.tokenName === 'NUMBER' || t.tokenName === 'SCONST') {
      let cls: SlotClass | undefined;
      const first = b[t.start];
      if (t.tokenName === 'NUMBER') {
        const text = slice(t.start, t.end);
        if (PLAIN_NUMBER.test(text)) cls = INTEGER.test(text) ? 'i' : 'f';
      } else if (first === 39) cls = 's';
      else if ((first === 69 || first === 101) && b[t.start + 1] === 39) cls = 'e';
      // A string continued on the next line ('a'\n'b') is one constant whose
      // escapes follow its first part: keep the text exact.
      if (cls !== undefined && (cls === 's' || cls === 'e') && prev?.tokenName === 'SCONST') return undefined;
      if (cls !== undefined) {
        parts.push(slice(pos, t.start));
        literals.push(slice(t.start, t.end));
        classes.push(cls);
        pos = t.end;
        if (literals.length > MAX_SLOTS) return undefined;
      }
    }
    prev = t;
  }
  if (literals.length === 0) return undefined;
  parts.push(slice(pos, b.length));
  let key = parts[0];
  for (let i = 0; i < literals.length; i++) key += `\u0000${classes[i]}${parts[i + 1]}`;
  return { key, parts, literals, classes };
}

/** The literal that stands for slot `i` while a template is derived. */
export function sentinel(cls: SlotClass, i: number): string {
  const n = SENTINEL_INT_BASE + i;
  switch (cls) {
    case 'i':
      return String(n);
    case 'f':
      return `${n}.5`;
    case 's':
      return `'~sy~${n}'`;
    case 'e':
      return `E'~sy~${n}'`;
  }
}

/** The shape's text with the given literal texts in its slots. */
export function withLiterals(shape: Shape, literals: readonly string[]): string {
  let out = shape.parts[0];
  for (let i = 0; i < literals.length; i++) out += literals[i] + shape.parts[i + 1];
  return out;
}

/** The shape's text with sentinels in its slots, or undefined when the text already contains one. */
export function withSentinels(shape: Shape): string | undefined {
  if (shape.parts.some((p) => SENTINEL_CORE.test(p))) return undefined;
  return withLiterals(
    shape,
    shape.classes.map((c, i) => sentinel(c, i)),
  );
}

/**
 * The template of a rewrite planned from the sentinel text: every sentinel
 * must stand as a whole token of the output (a copy inside a comment, an
 * identifier or another string, or a transformed copy, cannot be filled in by
 * position). Undefined when one does not.
 */
export function deriveTemplate(shape: Shape, output: string): Template | undefined {
  const bySentinel = new Map(shape.classes.map((c, i) => [sentinel(c, i), i]));
  const b = Buffer.from(output, 'utf8');
  const pieces: string[] = [];
  const slots: number[] = [];
  let pos = 0;
  for (const t of lexSql(b)) {
    if (t.tokenName !== 'NUMBER' && t.tokenName !== 'SCONST') continue;
    const slot = bySentinel.get(b.toString('utf8', t.start, t.end));
    if (slot === undefined) continue;
    pieces.push(b.toString('utf8', pos, t.start));
    slots.push(slot);
    pos = t.end;
  }
  pieces.push(b.toString('utf8', pos));
  if (pieces.some((p) => SENTINEL_CORE.test(p))) return undefined;
  return { pieces, slots };
}

export function fillTemplate(t: Template, literals: readonly string[]): string {
  let out = t.pieces[0];
  for (let i = 0; i < t.slots.length; i++) out += literals[t.slots[i]] + t.pieces[i + 1];
  return out;
}

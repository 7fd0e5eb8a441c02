// The fast path: one precompiled case-insensitive matcher over every mapped
// old/new table name. A statement that matches nothing cannot reference a
// mapped table (a reference always spells the name), so it is never parsed.
// The one spelling that need not contain the name is a Unicode-escaped
// identifier (U&"\0061cct", U&"!0061cct" UESCAPE '!'): any text with one is
// parsed, and the parser resolves the escapes into the name.

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** U& directly followed by a double quote starts a Unicode-escaped identifier (no space allowed between). */
const UNICODE_IDENT = /u&"/i;

export function hasUnicodeIdentifier(sql: string): boolean {
  return UNICODE_IDENT.test(sql);
}

const UNICODE_IDENT_TOKEN = /u&"((?:[^"]|"")*)"(\s*uescape\s*'((?:[^']|'')*)')?/gi;

/**
 * The text with every U&"..." [UESCAPE 'c'] identifier replaced by the name it
 * spells (\XXXX, \+XXXXXX, a doubled escape character). Best effort, for
 * attributing text the parser rejects: an escape that does not decode is left
 * as written.
 */
export function decodeUnicodeIdentifiers(sql: string): string {
  return sql.replace(UNICODE_IDENT_TOKEN, (whole, body: string, _u, esc: string | undefined) => {
    const e = esc === undefined ? '\\' : esc.replaceAll("''", "'");
    if (e.length !== 1) return whole;
    let out = '';
    const s = body.replaceAll('""', '"');
    for (let i = 0; i < s.length; i++) {
      if (s[i] !== e) {
        out += s[i];
        continue;
      }
      if (s[i + 1] === e) {
        out += e;
        i++;
        continue;
      }
      const long = s[i + 1] === '+';
      const hex = long ? s.slice(i + 2, i + 8) : s.slice(i + 1, i + 5);
      if (!/^[0-9a-f]+$/i.test(hex) || hex.length !== (long ? 6 : 4)) return whole;
      const cp = Number.parseInt(hex, 16);
      if (cp > 0x10ffff) return whole;
      out += String.fromCodePoint(cp);
      i += long ? 7 : 4;
    }
    return `"${out.replaceAll('"', '""')}"`;
  });
}

export class Prefilter {
  private readonly re: RegExp | null;

  /** `wholeWords`: a name must not be part of a longer identifier (`users` does not match `users_v2`). */
  constructor(
    names: Iterable<string>,
    private readonly wholeWords = false,
  ) {
    const alts = new Set<string>();
    for (const n of names) {
      if (n.length === 0) continue;
      alts.add(escapeRegExp(n));
      // Inside a quoted identifier a " is written twice.
      if (n.includes('"')) alts.add(escapeRegExp(n.replaceAll('"', '""')));
    }
    // Longest first so the alternation is deterministic; the match only needs to exist.
    const list = [...alts].sort((a, b) => b.length - a.length);
    const body = wholeWords
      ? `(?<![\\p{L}\\p{N}_$])(?:${list.join('|')})(?![\\p{L}\\p{N}_$])`
      : list.join('|');
    this.re = list.length > 0 ? new RegExp(body, 'iu') : null;
  }

  /**
   * True when the text may reference a mapped table and must be parsed. A
   * Unicode-escaped identifier always may; a whole-word filter (used on text
   * the parser rejected) looks at the names such identifiers spell.
   */
  matches(sql: string): boolean {
    if (this.re === null) return false;
    if (this.re.test(sql)) return true;
    if (!UNICODE_IDENT.test(sql)) return false;
    return this.wholeWords ? this.re.test(decodeUnicodeIdentifiers(sql)) : true;
  }
}

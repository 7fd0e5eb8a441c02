// The fast path: one precompiled case-insensitive matcher over every mapped
// old/new table name. A statement that matches nothing cannot reference a
// mapped table (a reference always spells the name), so it is never parsed.

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

export class Prefilter {
  private readonly re: RegExp | null;

  /** `wholeWords`: a name must not be part of a longer identifier (`users` does not match `users_v2`). */
  constructor(names: Iterable<string>, wholeWords = false) {
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

  /** True when the text may reference a mapped table and must be parsed. */
  matches(sql: string): boolean {
    return this.re?.test(sql) ?? false;
  }
}

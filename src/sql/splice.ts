// Rewrites by splicing: the client's text stays byte-for-byte except the
// ranges replaced. Positions are UTF-8 byte offsets (as the parser reports).

export interface Edit {
  /** Byte offset where the replaced range starts. */
  start: number;
  /** Byte offset where it ends (exclusive); equal to start for an insertion. */
  end: number;
  text: string;
}

/** Applies non-overlapping edits to `bytes[from, to)`; insertions at one offset keep their given order. */
export function spliceBytes(bytes: Buffer, edits: readonly Edit[], from = 0, to = bytes.length): string {
  const sorted = edits
    .map((e, i) => ({ e, i }))
    .filter(({ e }) => e.start >= from && e.end <= to)
    .sort((a, b) => a.e.start - b.e.start || a.e.end - b.e.end || a.i - b.i)
    .map(({ e }) => e);
  const parts: Buffer[] = [];
  let pos = from;
  for (const e of sorted) {
    if (e.start < pos) {
      throw new Error(`overlapping edits at byte ${e.start}`);
    }
    if (e.start > pos) parts.push(bytes.subarray(pos, e.start));
    parts.push(Buffer.from(e.text, 'utf8'));
    pos = e.end;
  }
  if (pos < to) parts.push(bytes.subarray(pos, to));
  return Buffer.concat(parts).toString('utf8');
}

/** Convenience over a string: positions are still byte offsets into its UTF-8 encoding. */
export function splice(sql: string, edits: readonly Edit[]): string {
  return spliceBytes(Buffer.from(sql, 'utf8'), edits);
}

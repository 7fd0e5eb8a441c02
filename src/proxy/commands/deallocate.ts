// DEALLOCATE / DISCARD ALL: which prepared statements a simple Query drops.

/** Cheap test: only texts that start like these are parsed further. */
export const DEALLOCATE_HINT = /^\s*(discard|deallocate)/i;

const DEALLOCATE_STMT =
  /^\s*(?:deallocate\s+(?:prepare\s+)?(all|"(?:[^"]|"")+"|\w+)|discard\s+all)\s*;?\s*$/i;

/** 'all' for DEALLOCATE ALL / DISCARD ALL, a statement name, or undefined when the text is neither. */
export function parseDeallocate(sql: string): { all: true } | { name: string } | undefined {
  const m = DEALLOCATE_STMT.exec(sql);
  if (!m) return undefined;
  if (m[1] === undefined || m[1].toLowerCase() === 'all') return { all: true };
  return { name: m[1].startsWith('"') ? m[1].slice(1, -1).replaceAll('""', '"') : m[1].toLowerCase() };
}

// SAVEPOINT / RELEASE / ROLLBACK TO: what a transaction-control statement
// does to the savepoint stack, so ROLLBACK TO can restore session state.

export interface SavepointCommand {
  verb: 'savepoint' | 'release' | 'rollback';
  /** The savepoint's name as the server folds it. */
  name: string;
}

/** Cheap test: only texts that start like these are parsed further. */
export const TX_CONTROL = /^\s*(savepoint|release|rollback)/i;

const SAVEPOINT_STMT =
  /^\s*(savepoint|release|rollback)\s+(?:(?:work|transaction)\s+)?(?:to\s+)?(?:savepoint\s+)?("(?:[^"]|"")+"|[\p{L}_][\p{L}\p{N}_$]*)\s*;?\s*$/iu;

export function parseSavepoint(sql: string): SavepointCommand | undefined {
  const m = SAVEPOINT_STMT.exec(sql);
  if (!m) return undefined;
  const name = m[2].startsWith('"') ? m[2].slice(1, -1).replaceAll('""', '"') : m[2].toLowerCase();
  return { verb: m[1].toLowerCase() as SavepointCommand['verb'], name };
}

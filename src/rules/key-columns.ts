// The key that backfill and verify walk. The new table's key columns come
// from the mapping; each must be computed from one old column (`id: id`,
// `user_id: id`, `id: id::bigint`), so that walking the old table in the order
// of those old columns visits the new keys in the same order, and both tables
// can be cut into the same key ranges using their own indexes.
import type { KeyColumn } from '../pg/keys.ts';
import type { CompiledMapping } from './mapping.ts';

export class KeyError extends Error {
  override name = 'KeyError';
}

/** `id`, `"Id"`, `sy_old.id`, optionally followed by a cast `::type`. */
const COLUMN_REF =
  /^\s*\(?\s*(?:(?:"(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*)\s*\.\s*)?("(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*)\s*\)?\s*(?:::\s*[A-Za-z_][A-Za-z0-9_ ."()[\],]*)?\s*$/;

function unquote(ident: string): string {
  return ident.startsWith('"') ? ident.slice(1, -1).replaceAll('""', '"') : ident.toLowerCase();
}

/** Resolves each new key column to the old column it is copied from. */
export function keyColumns(m: CompiledMapping): KeyColumn[] {
  // A column migration keeps the table's own key: old column = new column.
  if (m.sameTable) {
    return m.key.map((k) => {
      const type = m.newColumns.find((c) => c.name === k)?.type;
      if (type === undefined) throw new KeyError(`mapping ${m.name}: key column ${k} is not a column of new`);
      return { newColumn: k, newType: type, oldColumn: k, oldType: type };
    });
  }
  const upByCol = new Map(m.up.map((u) => [u.column, u.expr]));
  const oldTypes = new Map(m.oldColumns.map((c) => [c.name, c.type]));
  const newTypes = new Map(m.newColumns.map((c) => [c.name, c.type]));
  return m.key.map((k) => {
    const expr = upByCol.get(k);
    if (expr === undefined) throw new KeyError(`mapping ${m.name}: key column ${k} has no up expression`);
    const match = COLUMN_REF.exec(expr);
    const oldColumn = match ? unquote(match[1]) : undefined;
    if (oldColumn === undefined || !oldTypes.has(oldColumn)) {
      throw new KeyError(
        `mapping ${m.name}: key column ${k} must be copied from one old column (e.g. "${k}: id"), got "${expr}"; backfill and verify walk the old table in that column's order`,
      );
    }
    const newType = newTypes.get(k);
    if (newType === undefined)
      throw new KeyError(`mapping ${m.name}: key column ${k} is not a column of new`);
    return { newColumn: k, newType, oldColumn, oldType: oldTypes.get(oldColumn)! };
  });
}

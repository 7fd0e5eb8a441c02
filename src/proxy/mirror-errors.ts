// Who caused an error on a mirrored write: the mirror, or the application.
// The mirror runs inside the application's own statement, so every error on
// it reaches the client the same way; only the ErrorResponse's fields tell
// them apart. Counting the application's own errors (a duplicate key on the
// old table) as mirror failures would fire the alert that tells an operator
// to turn mirroring off, for nothing. Parsed on the error path only.
//
// The rule: a mirror failure is an error whose fields point at the mirror.
// - schema (s) is the helper schema `switchyard_mirror`, or the context (W)
//   names it (an error inside a helper function);
// - table (t) is the table the mirror writes (the mapping's new table; the
//   old one for a write on new under dualWrite: both) (schema matched when the error names
//   one): a constraint, index or NOT NULL of that table refused the row;
// - the context (W) names the new table as a relation (a lock wait, a
//   deadlock, an index insert on it).
// Everything else is the application's, counted by SQLSTATE class. That
// includes a data exception with no table field (a failed cast, a division by
// zero, a value too long): Postgres reports it the same whether the client's
// value or an `up` expression over the stored row raised it, so the proxy
// cannot tell and does not guess; such an `up` failure shows as class 22 of
// switchyard_mirrored_statement_errors_total (see docs/metrics.md).
import { metrics } from '../metrics.ts';
import type { SessionRules } from './rules-port.ts';

export interface ErrorFields {
  code: string;
  schema?: string;
  table?: string;
  constraint?: string;
  where?: string;
}

export interface MirrorTarget {
  schema: string;
  name: string;
}

export const HELPER_SCHEMA = 'switchyard_mirror';

/** The fields of an ErrorResponse that attribution reads. */
export function errorFields(msg: Buffer): ErrorFields {
  const f: ErrorFields = { code: '' };
  let pos = 5;
  while (pos < msg.length) {
    const type = msg[pos++];
    if (type === 0) break;
    const zero = msg.indexOf(0, pos);
    if (zero < 0) break;
    const v = msg.toString('utf8', pos, zero);
    if (type === 0x43)
      f.code = v; // C
    else if (type === 0x73)
      f.schema = v; // s
    else if (type === 0x74)
      f.table = v; // t
    else if (type === 0x6e)
      f.constraint = v; // n
    else if (type === 0x57) f.where = v; // W
    pos = zero + 1;
  }
  return f;
}

/** True when the error's fields show that the mirror part of the statement failed. */
export function mirrorCaused(f: ErrorFields, target: MirrorTarget | undefined): boolean {
  if (f.schema === HELPER_SCHEMA) return true;
  if (f.where?.includes(HELPER_SCHEMA)) return true;
  if (!target) return false;
  if (f.table === target.name && (f.schema === undefined || f.schema === target.schema)) return true;
  if (f.where?.includes(`relation "${target.name}"`)) return true;
  return false;
}

/** The SQLSTATE class: its first two characters ("23" for 23505). */
export function sqlstateClass(code: string): string {
  return /^[0-9A-Z]{5}$/.test(code) ? code.slice(0, 2) : 'unknown';
}

// Which new table each mapping mirrors into, per compiled rules object: the
// compile step registers it, the session looks it up on the error path.
// A write on new mirrored into old (dualWrite: both) has the old table as its target.
interface MirrorTargets {
  forward: MirrorTarget;
  reverse: MirrorTarget;
}
const targets = new WeakMap<SessionRules, ReadonlyMap<string, MirrorTargets>>();

export function registerMirrorTargets(
  rules: SessionRules,
  byMapping: ReadonlyMap<string, MirrorTargets>,
): void {
  targets.set(rules, byMapping);
}

/** Counts an ErrorResponse to a mirrored statement as a mirror failure or as the application's. */
export function countMirroredStatementError(
  msg: Buffer,
  rules: SessionRules,
  mapping: string,
  reverse = false,
): void {
  const f = errorFields(msg);
  const t = targets.get(rules)?.get(mapping);
  if (mirrorCaused(f, reverse ? t?.reverse : t?.forward)) metrics.mirrorFailures.inc({ mapping });
  else metrics.mirroredStatementErrors.inc({ mapping, class: sqlstateClass(f.code) });
}

// Mirrored writes: the client's INSERT/UPDATE/DELETE on an old table becomes
// one statement around a data-modifying CTE. The write returns its stored row
// image as one extra column; a sibling CTE upserts up(image) into the new
// table, and deletes by key go through a helper function the outer query
// joins. Everything is spliced into the client's own text.
import { quoteIdent, quoteLiteral } from '../pg/ident.ts';
import type { ParsedStatement } from '../sql/parse.ts';
import type { TableRef } from '../sql/refs.ts';
import { sideEffectIn } from '../sql/side-effects.ts';
import { type Edit, spliceBytes } from '../sql/splice.ts';
import { findTopKeyword, isKeyword, relationSpan, type StatementTokens } from '../sql/tokens.ts';
import type { CompiledMapping } from './mapping.ts';
import { callDeleteByOldRowsSql, callDeleteMovedKeysSql, qualified, upsertSql } from './rowsql.ts';

export const ROW_COLUMN = '__sy_row';
const W = quoteIdent('__sy_w');
const PRE = quoteIdent('__sy_pre');
const ROW = quoteIdent(ROW_COLUMN);
const D = quoteIdent('__sy_d');

export type WriteTag = 'INSERT' | 'UPDATE' | 'DELETE';

export interface MirrorInput {
  stmt: ParsedStatement;
  mapping: CompiledMapping;
  /** Old columns the key's up expressions read: assigning one may move the row to another key. */
  keySources: ReadonlySet<string>;
  target: TableRef;
  st: StatementTokens;
  bytes: Buffer;
  /** Read-switch edits elsewhere in the statement (copied text must carry them too). */
  readEdits: readonly Edit[];
  serverVersion: number;
  /** pg_catalog is searched first for functions (it is, unless the search_path lists it later). */
  catalogFirst?: boolean;
  /**
   * The statement's result must be exactly the client's RETURNING columns (a
   * write inside a function body, where nothing strips the row image).
   */
  exactColumns?: boolean;
}

export type MirrorResult =
  | { ok: true; edits: Edit[]; tag: WriteTag; returning: boolean }
  | { ok: false; reason: string; code?: 'volatile_predicate' };

const TAGS: Record<string, WriteTag> = { InsertStmt: 'INSERT', UpdateStmt: 'UPDATE', DeleteStmt: 'DELETE' };

function assigned(targetList: unknown): string[] {
  return ((targetList as { ResTarget?: { name?: string } }[] | undefined) ?? [])
    .map((t) => t.ResTarget?.name)
    .filter((n): n is string => n !== undefined);
}

export function buildMirror(input: MirrorInput): MirrorResult {
  const { stmt, mapping: m, target, st, bytes, readEdits, serverVersion } = input;
  const tag = TAGS[stmt.kind];
  if (!tag) return { ok: false, reason: `${stmt.kind} is not mirrored` };
  const n = stmt.node;
  const { toks, depth } = st;
  if (toks.length === 0) return { ok: false, reason: 'empty statement' };

  // The DML keyword: first token, or the first one after the statement's own WITH clause.
  let dml = 0;
  if (n.withClause) {
    dml = -1;
    for (let i = 1; i < toks.length; i++) {
      if (depth[i] === 0 && isKeyword(toks[i], tag.toLowerCase()) && toks[i - 1].text === ')') {
        dml = i;
        break;
      }
    }
  }
  if (dml < 0 || !isKeyword(toks[dml], tag.toLowerCase())) {
    return { ok: false, reason: 'could not locate the write in the statement text' };
  }
  const effEnd = toks[toks.length - 1].end;
  const ref = quoteIdent(target.alias ?? target.name);
  const rowType = qualified(m.old);
  const returning = (n.returningClause?.exprs?.length ?? 0) > 0;

  let keyChange = false;
  if (tag === 'UPDATE') keyChange = assigned(n.targetList).some((c) => input.keySources.has(c));
  if (tag === 'INSERT' && n.onConflictClause?.action === 'ONCONFLICT_UPDATE') {
    keyChange = assigned(n.onConflictClause.targetList).some((c) => input.keySources.has(c));
  }
  const newStyle = keyChange && serverVersion >= 18;
  if (keyChange && !newStyle && tag === 'INSERT') {
    return { ok: false, reason: 'ON CONFLICT DO UPDATE of key columns needs PostgreSQL 18' };
  }
  if (newStyle && (n.returningClause?.options?.length ?? 0) > 0) {
    return { ok: false, reason: 'RETURNING WITH (OLD AS ...) renames the pre-image a key move needs' };
  }
  if (newStyle && ['old', 'new'].includes((target.alias ?? target.name).toLowerCase())) {
    return { ok: false, reason: 'a target named old or new hides the RETURNING old/new row' };
  }

  // The database decides whether the write reached the mapped table: the
  // target's row type is the mapped table's only when the name resolved to it
  // (partitions and children present their rows as the parent's type). Any
  // other relation the session reached by that name (a temporary table, a
  // schema first on a search_path or role the proxy did not follow) gets a
  // NULL image, which no mirror part reads; its rows still count and return.
  const isMapped = `pg_catalog.pg_typeof(${ref}.*) = ${quoteLiteral(rowType)}::pg_catalog.regtype`;
  const image = `ROW(${ref}.*)::${rowType}`;
  const rowExpr = `CASE WHEN ${isMapped} THEN ${newStyle ? `ARRAY[ROW(old.*)::${rowType}, ${image}]` : image} END`;
  // IS DISTINCT FROM NULL tests the value itself; IS NOT NULL on a row would test every field.
  const keep = (col: string) => `WHERE ${col} IS DISTINCT FROM NULL`;
  const post = newStyle
    ? `SELECT (w.${ROW}[2]).* FROM ${W} AS w ${keep(`w.${ROW}`)}`
    : `SELECT (w.${ROW}).* FROM ${W} AS w ${keep(`w.${ROW}`)}`;

  const edits: Edit[] = [];
  const ctes: string[] = [];
  let preCte = '';
  let deleteCall = '';
  if (keyChange) {
    let pre: string;
    if (newStyle) {
      pre = `SELECT (w.${ROW}[1]).* FROM ${W} AS w ${keep(`w.${ROW}`)}`;
    } else {
      // Before PG 18 an UPDATE cannot return its pre-image. A locking pre-read
      // with the same target, FROM and WHERE runs first (forced by the WHERE
      // below); it locks exactly the rows the UPDATE then changes, so its
      // images are the pre-images. No join back is needed: moved keys are
      // up(pre) minus up(post).
      // The pre-read repeats the client's WHERE and FROM: whatever they call runs twice.
      const effect = sideEffectIn([n.whereClause, n.fromClause], {
        catalogFirst: input.catalogFirst ?? true,
      });
      if (effect !== undefined) {
        return {
          ok: false,
          code: 'volatile_predicate',
          reason: `a key-moving UPDATE whose WHERE or FROM has ${effect} before PostgreSQL 18 (its pre-read would run it twice)`,
        };
      }
      const setIdx = findTopKeyword(st, 'set', dml + 1);
      if (setIdx < 0) return { ok: false, reason: 'could not locate SET' };
      const fromIdx = findTopKeyword(st, 'from', setIdx + 1, (i) => !isKeyword(toks[i - 1], 'distinct'));
      const whereIdx = findTopKeyword(st, 'where', setIdx + 1);
      const retIdx = findTopKeyword(st, 'returning', setIdx + 1);
      const span = relationSpan(st, target.location, target.only);
      if (!span) return { ok: false, reason: 'could not locate the target name' };
      const whereEnd = retIdx >= 0 ? toks[retIdx].start : effEnd;
      const targetText = spliceBytes(bytes, readEdits, span.start, toks[setIdx].start).trim();
      const fromText =
        fromIdx >= 0
          ? spliceBytes(bytes, readEdits, toks[fromIdx].end, whereIdx >= 0 ? toks[whereIdx].start : whereEnd)
          : '';
      const whereText = whereIdx >= 0 ? spliceBytes(bytes, readEdits, toks[whereIdx].start, whereEnd) : '';
      preCte =
        `${PRE} AS MATERIALIZED (SELECT CASE WHEN ${isMapped} THEN ${image} END AS r FROM ${targetText}` +
        `${fromText ? `, ${fromText}` : ' '}${whereText} FOR UPDATE OF ${ref}), `;
      const gate = `(SELECT count(*) FROM ${PRE}) >= 0`;
      if (whereIdx >= 0) {
        edits.push({ start: toks[whereIdx].end, end: toks[whereIdx].end, text: ` ${gate} AND (` });
        edits.push({ start: whereEnd, end: whereEnd, text: ')' });
      } else {
        edits.push({ start: whereEnd, end: whereEnd, text: ` WHERE ${gate} ` });
      }
      pre = `SELECT (p.r).* FROM ${PRE} AS p ${keep('p.r')}`;
    }
    deleteCall = callDeleteMovedKeysSql(m, pre, post);
  }
  if (tag === 'DELETE') deleteCall = callDeleteByOldRowsSql(m, post);
  else ctes.push(`${quoteIdent('__sy_m')} AS (${upsertSql(m, post)})`);
  // Deleting in new must see new rows committed by transactions this write
  // waited for, which the statement's snapshot cannot: the delete runs in a
  // VOLATILE function (fresh snapshot, see rowsql.ts). A SELECT in WITH runs
  // only if referenced, so the outer query joins its one row. It reads all of
  // the write's rows first, so it runs after the write; an upsert sibling runs
  // at the end of the statement, on keys disjoint from the deleted ones.
  if (deleteCall) ctes.unshift(`${D} AS MATERIALIZED (${deleteCall})`);

  // Exact columns: the CTE's own column names select the client's columns by position.
  let exact: string[] | undefined;
  if (returning && input.exactColumns) {
    const count = returnedColumnCount(n, target, m.oldColumns.length);
    if (typeof count === 'string') return { ok: false, reason: count };
    exact = Array.from({ length: count }, (_, i) => quoteIdent(`__sy_c${i + 1}`));
  }
  const names = exact ? `(${[...exact, ROW].join(', ')})` : '';
  const head = `${n.withClause ? ', ' : 'WITH '}${preCte}${W}${names} AS (`;
  const ret = returning ? `, ${rowExpr} AS ${ROW}` : ` RETURNING ${rowExpr} AS ${ROW}`;
  const from = deleteCall ? `${W}, ${D}` : W;
  const outer = exact
    ? `SELECT ${exact.map((c) => `${W}.${c}`).join(', ')} FROM ${from}`
    : returning
      ? `SELECT ${deleteCall ? `${W}.*` : '*'} FROM ${from}`
      : `SELECT count(*) FROM ${from}`;
  edits.unshift({ start: toks[dml].start, end: toks[dml].start, text: head });
  edits.push({ start: effEnd, end: effEnd, text: `${ret}), ${ctes.join(', ')} ${outer}` });
  return { ok: true, edits, tag, returning };
}

/**
 * How many columns a RETURNING list yields, or why that is not known from the
 * text: `*` and `alias.*` are the target's columns (`old.*`/`new.*` too).
 */
function returnedColumnCount(
  n: ParsedStatement['node'],
  target: TableRef,
  oldColumns: number,
): number | string {
  let count = 0;
  const refname = target.alias ?? target.name;
  for (const item of n.returningClause?.exprs ?? []) {
    const f: { String?: { sval?: string }; A_Star?: unknown }[] | undefined =
      item.ResTarget?.val?.ColumnRef?.fields;
    if (!f || f[f.length - 1]?.A_Star === undefined) {
      count++;
      continue;
    }
    const owner = f.length === 2 ? f[0].String?.sval : undefined;
    if (f.length === 1 && (n.fromClause?.length ?? 0) === 0 && (n.usingClause?.length ?? 0) === 0) {
      count += oldColumns;
    } else if (owner !== undefined && [refname, 'old', 'new'].includes(owner)) {
      count += oldColumns;
    } else {
      return 'RETURNING * over other tables in a function body';
    }
  }
  return count;
}

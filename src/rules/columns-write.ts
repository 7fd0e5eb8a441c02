// Writes on a table whose mapping is a column migration inside it (old and
// new the same table): the statement itself gains the other side's columns,
// computed from the row as it will be stored, so old and new columns never
// drift and no trigger is needed. Nothing else of the client's text changes:
// the tag, the count and RETURNING are the statement's own.
//
// UPDATE (and ON CONFLICT DO UPDATE): the client's SET items move into one
// multi-column assignment from a sub-select, which evaluates each assigned
// expression once and computes the derived columns from those values:
//   SET a = x, b = y
//   SET (a, b, n) = (SELECT sy_old.a, sy_old.b, (up_n) FROM
//                     (SELECT (x)::T AS a, (y)::T AS b, t.c AS c) AS sy_old)
// INSERT: the rows are read from the client's VALUES (each item cast to its
// column's type, so parameters keep the types Postgres infers directly) or
// SELECT, with the defaults of the columns the expressions need evaluated
// once per row, and inserted with the derived columns:
//   INSERT INTO t (a, b) VALUES (...)
//   INSERT INTO t (a, b, id, n) SELECT sy_old.a, sy_old.b, sy_old.id, (up_n) FROM
//     (SELECT "__sy_v".*, nextval(...) AS id FROM (VALUES (...)) AS "__sy_v"(a, b)) AS sy_old
import { quoteIdent } from '../pg/ident.ts';
import type { ParsedStatement } from '../sql/parse.ts';
import type { TableRef } from '../sql/refs.ts';
import { type Edit, spliceBytes } from '../sql/splice.ts';
import { findTopKeyword, isKeyword, type StatementTokens } from '../sql/tokens.ts';
import type { ColumnExpr, CompiledMapping, SameTableFacts } from './mapping.ts';
import { columnsRead } from './mapping-runtime.ts';
import { OLD_ROW_ALIAS } from './rowsql.ts';

export type ColumnWriteResult = { ok: true; edits: Edit[] } | { ok: false; reason: string };

export interface ColumnWriteInput {
  stmt: ParsedStatement;
  mapping: CompiledMapping;
  target: TableRef;
  st: StatementTokens;
  bytes: Buffer;
  /** dualWrite: both: writes by the new columns' names fill the old columns by down. */
  both: boolean;
  /** Read-switch edits elsewhere in the statement: text this rewrite moves carries them. */
  readEdits: readonly Edit[];
}

const SY = OLD_ROW_ALIAS;
const V = quoteIdent('__sy_v');

/** A type to cast an assigned value to: the column's, less a length limit (exceeding it stays an error). */
export function assignType(type: string): string {
  return type.replace(/^(character varying|character|bit varying|bit)\(\d+\)/, '$1');
}

interface Derived {
  column: string;
  expr: string;
  reads: Set<string>;
}

/** The columns a write must add: new ones by up when it wrote old ones, old ones by down (both) when it wrote new ones. */
function derive(m: CompiledMapping, written: ReadonlySet<string>, both: boolean, insert: boolean): Derived[] {
  const olds = new Set((m.down ?? []).map((d) => d.column));
  const news = new Set(m.up.map((u) => u.column));
  const wroteNew = [...written].some((c) => news.has(c));
  const wroteOld = [...written].some((c) => olds.has(c));
  const pick = (list: ColumnExpr[]) =>
    list
      .filter((x) => !written.has(x.column))
      .map((x) => ({ column: x.column, expr: x.expr, reads: columnsRead([x.expr]) }))
      // An UPDATE leaves a column alone unless it assigned something the column is made from.
      .filter((x) => insert || [...x.reads].some((c) => written.has(c)));
  const out: Derived[] = [];
  // An INSERT by the old names (or by neither) fills the new columns; by the new names, the old ones.
  if (insert ? !wroteNew : wroteOld) out.push(...pick(m.up));
  if (both && wroteNew) out.push(...pick(m.down ?? []));
  return out;
}

interface SetItem {
  column: string;
  /** Byte range of the assigned expression. */
  start: number;
  end: number;
}

/** The items of a SET list between token indexes [from, to); undefined when one is not `col = expr`. */
function setItems(
  st: StatementTokens,
  from: number,
  to: number,
  targets: { ResTarget?: { name?: string; indirection?: unknown[]; val?: Record<string, unknown> } }[],
): SetItem[] | string {
  const base = st.depth[from];
  const items: SetItem[] = [];
  let i = from;
  let n = 0;
  while (i < to) {
    let j = i;
    while (j < to && !(st.depth[j] === base && st.toks[j].text === ',')) j++;
    const rt = targets[n++]?.ResTarget;
    if (!rt?.name || rt.indirection || rt.val?.MultiAssignRef)
      return 'a SET item that is not "column = expression"';
    if (rt.val?.SetToDefault) return 'SET column = DEFAULT';
    if (st.toks[i + 1]?.text !== '=' || i + 2 > j - 1) return 'a SET item that is not "column = expression"';
    items.push({ column: rt.name, start: st.toks[i + 2].start, end: st.toks[j - 1].end });
    i = j + 1;
  }
  if (n !== targets.length) return 'a SET list the proxy could not follow';
  return items;
}

/**
 * The replacement of a SET list (tokens [from, to)): every assigned value once,
 * the derived columns computed from them and the row's other columns.
 */
function rewriteSet(
  input: ColumnWriteInput,
  from: number,
  to: number,
  targets: unknown[] | undefined,
): { edit?: Edit; reason?: string } {
  const { mapping: m, target, st, bytes } = input;
  const items = setItems(st, from, to, (targets ?? []) as never[]);
  if (typeof items === 'string') return { reason: items };
  const written = new Set(items.map((x) => x.column));
  const derived = derive(m, written, input.both, false);
  if (derived.length === 0) return {};
  const types = new Map(m.oldColumns.map((c) => [c.name, c.type]));
  const ref = quoteIdent(target.alias ?? target.name);
  const needed = new Set(derived.flatMap((d) => [...d.reads]).filter((c) => types.has(c) && !written.has(c)));
  const inner = [
    ...items.map(
      (x) =>
        `(${bytes.toString('utf8', x.start, x.end)})::${assignType(types.get(x.column)!)} AS ${quoteIdent(x.column)}`,
    ),
    ...[...needed].map((c) => `${ref}.${quoteIdent(c)} AS ${quoteIdent(c)}`),
  ];
  const cols = [...items.map((x) => x.column), ...derived.map((d) => d.column)].map(quoteIdent);
  const values = [...items.map((x) => `${SY}.${quoteIdent(x.column)}`), ...derived.map((d) => `(${d.expr})`)];
  return {
    edit: {
      start: st.toks[from].start,
      end: st.toks[to - 1].end,
      text: `(${cols.join(', ')}) = (SELECT ${values.join(', ')} FROM (SELECT ${inner.join(', ')}) AS ${SY})`,
    },
  };
}

/**
 * Index of the first top-level token at or after `from` that starts one of
 * the clauses `words`, else the end. `on` counts only as ON CONFLICT (a join's
 * ON is not a clause of the write), `from` not after IS DISTINCT.
 */
function clauseEnd(st: StatementTokens, from: number, words: string[]): number {
  const base = st.depth[from];
  const { toks } = st;
  const starts = (i: number, w: string) =>
    isKeyword(toks[i], w) &&
    (w !== 'on' || isKeyword(toks[i + 1], 'conflict')) &&
    (w !== 'from' || !isKeyword(toks[i - 1], 'distinct'));
  for (let i = from; i < toks.length; i++) {
    if (st.depth[i] < base) return i;
    if (st.depth[i] === base && words.some((w) => starts(i, w))) return i;
  }
  return toks.length;
}

function buildUpdate(input: ColumnWriteInput, dml: number): ColumnWriteResult {
  const { st } = input;
  const setIdx = findTopKeyword(st, 'set', dml + 1);
  if (setIdx < 0) return { ok: false, reason: 'could not locate SET' };
  const end = clauseEnd(st, setIdx + 1, ['from', 'where', 'returning']);
  const r = rewriteSet(input, setIdx + 1, end, input.stmt.node.targetList);
  if (r.reason) return { ok: false, reason: r.reason };
  return { ok: true, edits: r.edit ? [r.edit] : [] };
}

function buildInsert(input: ColumnWriteInput, dml: number, facts: SameTableFacts): ColumnWriteResult {
  const { mapping: m, st, bytes, stmt } = input;
  const n = stmt.node;
  const { toks, depth } = st;
  const base = depth[dml];
  const edits: Edit[] = [];
  const sel = n.selectStmt?.SelectStmt;
  const values: unknown[][] | undefined = sel?.valuesLists?.map(
    (l: { List: { items: unknown[] } }) => l.List.items,
  );
  const simpleValues = values !== undefined && !sel.withClause && !sel.sortClause && !sel.limitCount;

  // The columns the client gives, in its order (all of the table's, in order, when it lists none).
  const listed: string[] = (n.cols ?? []).map((c: { ResTarget: { name: string } }) => c.ResTarget.name);
  if ((n.cols ?? []).some((c: { ResTarget: { indirection?: unknown } }) => c.ResTarget.indirection)) {
    return { ok: false, reason: 'an INSERT into a field or element of a column' };
  }
  if (listed.length === 0 && sel) {
    if (!simpleValues) return { ok: false, reason: 'INSERT ... SELECT without a column list' };
    listed.push(...m.oldColumns.slice(0, values[0].length).map((c) => c.name));
  }
  const written = new Set(listed);
  const derived = derive(m, written, input.both, true);
  const onConflict = n.onConflictClause?.action === 'ONCONFLICT_UPDATE';

  // ON CONFLICT DO UPDATE SET: like an UPDATE of the existing row.
  if (onConflict) {
    const conflictAt = findTopKeyword(st, 'conflict', dml + 1);
    const setIdx = conflictAt < 0 ? -1 : findTopKeyword(st, 'set', conflictAt + 1);
    if (setIdx < 0) return { ok: false, reason: 'could not locate ON CONFLICT ... SET' };
    const end = clauseEnd(st, setIdx + 1, ['where', 'returning']);
    const r = rewriteSet(input, setIdx + 1, end, n.onConflictClause.targetList);
    if (r.reason) return { ok: false, reason: r.reason };
    if (r.edit) edits.push(r.edit);
  }
  if (derived.length === 0) return { ok: true, edits };

  const types = new Map(m.oldColumns.map((c) => [c.name, c.type]));
  const needed = [...new Set(derived.flatMap((d) => [...d.reads]))].filter(
    (c) => types.has(c) && !written.has(c),
  );
  const blocked = [...listed, ...needed].filter((c) => facts.fixed.includes(c));
  if (blocked.length > 0) {
    return {
      ok: false,
      reason: `an INSERT that would give identity or generated column ${blocked[0]} a value`,
    };
  }
  // Typed, so a VALUES column of DEFAULTs alone, or NULL, has the column's type.
  const defaultOf = (c: string) => `(${facts.defaults[c] ?? 'NULL'})::${assignType(types.get(c) ?? 'text')}`;

  // Where the source starts and ends: VALUES / SELECT / DEFAULT VALUES, up to ON CONFLICT or RETURNING.
  let srcStart = -1;
  for (let i = dml + 1; i < toks.length; i++) {
    if (depth[i] !== base) continue;
    if (isKeyword(toks[i], 'values') || isKeyword(toks[i], 'select') || isKeyword(toks[i], 'default')) {
      srcStart = i;
      break;
    }
    // A parenthesised SELECT source: `INSERT INTO t (a) (SELECT ...)`.
    if (toks[i].text === '(' && i > 0 && toks[i - 1].text === ')' && listed.length > 0) {
      srcStart = i;
      break;
    }
    if (isKeyword(toks[i], 'with') && i > dml + 2) {
      srcStart = i;
      break;
    }
  }
  if (srcStart < 0) return { ok: false, reason: 'could not locate the rows of the INSERT' };
  const srcEnd = clauseEnd(st, srcStart, ['on', 'returning']);
  const srcText = (from: number, to: number) =>
    spliceBytes(bytes, input.readEdits, toks[from].start, toks[to - 1].end);

  let rows: string;
  if (!sel) {
    // DEFAULT VALUES: one row of defaults.
    rows = `(SELECT ${needed.map((c) => `${defaultOf(c)} AS ${quoteIdent(c)}`).join(', ')}) AS ${SY}`;
  } else {
    let source: string;
    if (simpleValues) {
      // Each item cast to its column's type (DEFAULT becomes the default itself), as the
      // INSERT would coerce it: parameters get the types Postgres infers directly.
      const items: string[][] = [];
      const cast = (col: string, from: number, to: number) =>
        to === from + 1 && isKeyword(toks[from], 'default')
          ? defaultOf(col)
          : `(${srcText(from, to)})::${assignType(types.get(col) ?? 'text')}`;
      let i = srcStart + 1;
      while (i < srcEnd) {
        if (toks[i].text !== '(' || depth[i] !== base)
          return { ok: false, reason: 'a VALUES list the proxy could not follow' };
        // A row's ')' is at the depth of its '('; its items are split by the commas one level in.
        let close = i + 1;
        while (close < srcEnd && !(depth[close] === base && toks[close].text === ')')) close++;
        const row: string[] = [];
        let k = i + 1;
        for (let j = i + 1; j <= close; j++) {
          if (j < close && !(depth[j] === base + 1 && toks[j].text === ',')) continue;
          if (j === k || row.length >= listed.length)
            return { ok: false, reason: 'a VALUES row the proxy could not follow' };
          row.push(cast(listed[row.length], k, j));
          k = j + 1;
        }
        if (row.length !== listed.length)
          return { ok: false, reason: 'a VALUES row with another number of columns' };
        items.push(row);
        i = close + 1;
        if (i < srcEnd && toks[i].text === ',') i++;
      }
      source = `(VALUES ${items.map((r) => `(${r.join(', ')})`).join(', ')}) AS ${V}(${listed.map(quoteIdent).join(', ')})`;
      const middle = [`${V}.*`, ...needed.map((c) => `${defaultOf(c)} AS ${quoteIdent(c)}`)];
      rows = `(SELECT ${middle.join(', ')} FROM ${source}) AS ${SY}`;
    } else {
      // A SELECT: its columns cast to the target's types as the INSERT would assign them.
      source = `(${srcText(srcStart, srcEnd)}) AS ${V}(${listed.map(quoteIdent).join(', ')})`;
      const middle = [
        ...listed.map(
          (c) => `${V}.${quoteIdent(c)}::${assignType(types.get(c) ?? 'text')} AS ${quoteIdent(c)}`,
        ),
        ...needed.map((c) => `${defaultOf(c)} AS ${quoteIdent(c)}`),
      ];
      rows = `(SELECT ${middle.join(', ')} FROM ${source}) AS ${SY}`;
    }
  }
  const outCols = [...listed, ...needed];
  const select = `SELECT ${[...outCols.map((c) => `${SY}.${quoteIdent(c)}`), ...derived.map((d) => `(${d.expr})`)].join(', ')} FROM ${rows}`;
  edits.push({ start: toks[srcStart].start, end: toks[srcEnd - 1].end, text: select });

  // The column list gains the needed and derived columns (or is written out whole).
  const added = [...needed, ...derived.map((d) => d.column)].map(quoteIdent);
  if ((n.cols ?? []).length > 0) {
    let close = -1;
    for (let i = dml + 1; i < srcStart; i++) if (toks[i].text === ')' && depth[i] === base) close = i;
    if (close < 0) return { ok: false, reason: 'could not locate the column list' };
    edits.push({ start: toks[close].start, end: toks[close].start, text: `, ${added.join(', ')}` });
  } else {
    const at = isKeyword(toks[srcStart - 1], 'value') ? srcStart - 3 : srcStart;
    const cols = [...listed.map(quoteIdent), ...added];
    edits.push({ start: toks[at].start, end: toks[at].start, text: `(${cols.join(', ')}) ` });
  }
  // Edits are applied by position; keep them in order.
  edits.sort((a, b) => a.start - b.start);
  return { ok: true, edits };
}

/** The edits that keep the other side's columns in step with this write, or why it cannot be done. */
export function buildColumnWrite(input: ColumnWriteInput): ColumnWriteResult {
  const { stmt, st } = input;
  const facts = input.mapping.sameTable ?? { defaults: {}, fixed: [] };
  const kind = stmt.kind;
  if (kind === 'DeleteStmt') return { ok: true, edits: [] };
  const word = kind === 'UpdateStmt' ? 'update' : kind === 'InsertStmt' ? 'insert' : undefined;
  if (!word) return { ok: false, reason: `${kind} is not kept in step` };
  let dml = 0;
  if (stmt.node.withClause) {
    dml = -1;
    for (let i = 1; i < st.toks.length; i++) {
      if (st.depth[i] === 0 && isKeyword(st.toks[i], word) && st.toks[i - 1].text === ')') {
        dml = i;
        break;
      }
    }
  }
  if (dml < 0 || !isKeyword(st.toks[dml], word))
    return { ok: false, reason: 'could not locate the write in the statement text' };
  return kind === 'UpdateStmt' ? buildUpdate(input, dml) : buildInsert(input, dml, facts);
}

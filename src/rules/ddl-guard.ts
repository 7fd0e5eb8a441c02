// DDL guardrails: the article's checklist ("lock timeout set, never infinite";
// CREATE INDEX CONCURRENTLY; constraints NOT VALID, validated after) and the
// squawk linter's best-known rules, applied to the DDL the proxy sees. A rule
// the text decides (CREATE INDEX without CONCURRENTLY) is decided here; a rule
// only the catalog can decide (does SET NOT NULL have a validated CHECK to
// lean on? does this type change rewrite the table? is this default
// volatile?) is sent along as a condition that a DO block in front of the
// statement evaluates in the database, which also sets lock_timeout when the
// session has none. The database decides; nothing here models the catalog.
import { quoteIdent, quoteLiteral } from '../pg/ident.ts';
import type { Node, ParsedStatement } from '../sql/parse.ts';

export type DdlRule =
  | 'lockTimeout'
  | 'createIndex'
  | 'constraintNotValid'
  | 'setNotNull'
  | 'typeRewrite'
  | 'volatileDefault'
  | 'mappingBreak';

export type DdlMode = 'warn' | 'enforce' | 'off';

export interface DdlFinding {
  rule: DdlRule;
  message: string;
  /** The safe alternative. */
  hint: string;
  /** An SQL condition the database evaluates: the finding holds only where it is true. Absent: it holds. */
  when?: string;
  /** The mapping a mappingBreak finding is about. */
  mapping?: string;
}

/**
 * Statements some rule looks at. Others (CREATE TABLE, VACUUM, REINDEX, ...)
 * meet no rule and take no lock a lock_timeout would bound here.
 */
const DDL_KINDS = new Set(['IndexStmt', 'AlterTableStmt', 'DropStmt', 'RenameStmt']);

export function isDdl(stmt: ParsedStatement): boolean {
  return DDL_KINDS.has(stmt.kind);
}

/** Texts that may hold such DDL: the prefilter parses them even when they name no mapped table. */
export const DDL_HINT = /\b(?:create|alter|drop)\b/i;

/**
 * Whether a DO block may run in front of the statement in one Query (an
 * implicit transaction block): not CREATE or DROP INDEX CONCURRENTLY.
 */
export function runsInTransactionBlock(stmt: ParsedStatement): boolean {
  return !stmt.node.concurrent;
}

function rangeVarName(rv: Node): string {
  return rv.schemaname ? `${quoteIdent(rv.schemaname)}.${quoteIdent(rv.relname)}` : quoteIdent(rv.relname);
}

/** Function names a default expression calls (last part), and whether it uses a serial type. */
function functionsIn(v: Node, out: Set<string>): Set<string> {
  if (v === null || typeof v !== 'object') return out;
  if (Array.isArray(v)) {
    for (const x of v) functionsIn(x, out);
    return out;
  }
  if (v.FuncCall) {
    const f: Node[] = v.FuncCall.funcname ?? [];
    const name = f[f.length - 1]?.String?.sval;
    if (name) out.add(name);
  }
  for (const k in v) functionsIn(v[k], out);
  return out;
}

const SERIAL = new Set(['serial', 'serial4', 'bigserial', 'serial8', 'smallserial', 'serial2']);

/** Findings of the squawk-style rules for one statement (mapping breaks are found elsewhere). */
export function lintDdl(stmt: ParsedStatement): DdlFinding[] {
  const n = stmt.node;
  const out: DdlFinding[] = [];
  if (stmt.kind === 'IndexStmt' && !n.concurrent) {
    out.push({
      rule: 'createIndex',
      message:
        'switchyard: CREATE INDEX without CONCURRENTLY blocks writes to the table until the index is built',
      hint: 'CREATE INDEX CONCURRENTLY (outside a transaction block)',
    });
  }
  if (stmt.kind !== 'AlterTableStmt') return out;
  const table = rangeVarName(n.relation);
  for (const c of (n.cmds ?? []) as Node[]) {
    const cmd = c.AlterTableCmd;
    if (!cmd) continue;
    const con = cmd.def?.Constraint;
    if (cmd.subtype === 'AT_AddConstraint' && con && !con.skip_validation) {
      if (con.contype === 'CONSTR_CHECK' || con.contype === 'CONSTR_FOREIGN') {
        const what = con.contype === 'CONSTR_CHECK' ? 'CHECK' : 'FOREIGN KEY';
        out.push({
          rule: 'constraintNotValid',
          message: `switchyard: ADD CONSTRAINT ... ${what} without NOT VALID scans the whole table under a lock that blocks writes`,
          hint: `ADD CONSTRAINT ... ${what} ... NOT VALID, then ALTER TABLE ... VALIDATE CONSTRAINT in a later statement`,
        });
      }
    }
    if (cmd.subtype === 'AT_SetNotNull' && cmd.name) {
      // Postgres 12+ skips the scan when a validated CHECK (col IS NOT NULL) exists.
      const check = `'CHECK ((' || pg_catalog.quote_ident(${quoteLiteral(cmd.name)}) || ' IS NOT NULL))'`;
      out.push({
        rule: 'setNotNull',
        message: `switchyard: SET NOT NULL on ${cmd.name} scans the whole table under a lock that blocks reads and writes`,
        hint: `ADD CONSTRAINT ... CHECK (${cmd.name} IS NOT NULL) NOT VALID; VALIDATE CONSTRAINT; then SET NOT NULL, which uses it`,
        when: `NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint c WHERE c.conrelid = ${quoteLiteral(table)}::pg_catalog.regclass AND c.contype = 'c' AND c.convalidated AND pg_catalog.pg_get_constraintdef(c.oid) = ${check})`,
      });
    }
    if (cmd.subtype === 'AT_AlterColumnType' && cmd.name) {
      const def = cmd.def?.ColumnDef;
      const type = typeText(def?.typeName);
      const using = def?.raw_default !== undefined;
      out.push({
        rule: 'typeRewrite',
        message: `switchyard: ALTER COLUMN ${cmd.name} TYPE ${type ?? ''} rewrites the table under a lock that blocks reads and writes`,
        hint: 'add a new column, dual-write it (a switchyard column mapping), backfill, switch reads, then drop the old one',
        ...(using || type === undefined ? {} : { when: rewriteCondition(table, cmd.name, type) }),
      });
    }
    if (cmd.subtype === 'AT_AddColumn') {
      const col = cmd.def?.ColumnDef;
      const typeName = (col?.typeName?.names ?? []).map((x: Node) => x.String?.sval).at(-1);
      const defaults = ((col?.constraints ?? []) as Node[])
        .map((x) => x.Constraint)
        .filter((x) => x?.contype === 'CONSTR_DEFAULT');
      const fns = functionsIn(defaults, new Set());
      if (SERIAL.has(typeName)) fns.add('nextval');
      if (fns.size > 0) {
        const names = `ARRAY[${[...fns].map(quoteLiteral).join(', ')}]::pg_catalog.text[]`;
        out.push({
          rule: 'volatileDefault',
          message: `switchyard: ADD COLUMN ${col?.colname ?? ''} with a volatile default rewrites the whole table under a lock that blocks reads and writes`,
          hint: 'ADD COLUMN without a default (or with a constant one), then fill it in batches',
          when: `EXISTS (SELECT 1 FROM pg_catalog.pg_proc p WHERE p.proname = ANY (${names}) AND p.provolatile = 'v')`,
        });
      }
    }
  }
  return out;
}

/** The type as written (`varchar(20)`, `numeric(12,2)`, `text`), for format and regtype. */
function typeText(t: Node): string | undefined {
  if (!t?.names) return undefined;
  const names = (t.names as Node[]).map((x) => x.String?.sval).filter((x): x is string => !!x);
  const base =
    names[0] === 'pg_catalog' ? names.slice(1).join('.') : names.map((x) => quoteIdent(x)).join('.');
  const mods = ((t.typmods ?? []) as Node[]).map((m) => m.A_Const?.ival?.ival ?? 0);
  const arr = (t.arrayBounds ?? []).length > 0 ? '[]' : '';
  return `${base}${mods.length > 0 ? `(${mods.join(',')})` : ''}${arr}`;
}

/**
 * True in the database when changing the column to `type` rewrites the table:
 * not the same type with a wider or no length/precision limit, and no
 * binary-coercible cast to a type without a limit (varchar(n) -> text).
 */
function rewriteCondition(table: string, column: string, type: string): string {
  const t = quoteLiteral(table);
  const c = quoteLiteral(column);
  const ty = quoteLiteral(type);
  const col = `(SELECT a.atttypid, a.atttypmod FROM pg_catalog.pg_attribute a WHERE a.attrelid = ${t}::pg_catalog.regclass AND a.attname = ${c})`;
  const target = `(SELECT pg_catalog.format_type(${ty}::pg_catalog.regtype, NULL) AS base, ${ty} AS written)`;
  return (
    `NOT EXISTS (SELECT 1 FROM ${col} AS o, ${target} AS n WHERE ` +
    // The same type: no limit, or a wider one (varchar(10) -> varchar(20), numeric(10,2) -> numeric(12,2)).
    `(o.atttypid = ${ty}::pg_catalog.regtype AND (n.written !~ '\\(' OR o.atttypmod = -1 OR pg_catalog.format_type(o.atttypid, o.atttypmod) = n.written OR ` +
    `(o.atttypid IN ('pg_catalog.varchar'::pg_catalog.regtype, 'pg_catalog.bpchar'::pg_catalog.regtype) AND o.atttypmod - 4 <= pg_catalog.substring(n.written, '\\((\\d+)\\)')::int) OR ` +
    `(o.atttypid = 'pg_catalog.numeric'::pg_catalog.regtype AND ((o.atttypmod - 4) & 65535) = COALESCE(pg_catalog.substring(n.written, ',\\s*(\\d+)\\)')::int, 0) ` +
    `AND ((o.atttypmod - 4) >> 16) <= pg_catalog.substring(n.written, '\\((\\d+)')::int))) ` +
    // A binary-coercible cast to a type written without a limit (varchar -> text).
    `OR (n.written !~ '\\(' AND EXISTS (SELECT 1 FROM pg_catalog.pg_cast k WHERE k.castsource = o.atttypid AND k.casttarget = ${ty}::pg_catalog.regtype AND k.castmethod = 'b')))`
  );
}

export interface GuardBlockInput {
  findings: (DdlFinding & { mode: 'warn' | 'enforce' })[];
  /** Set lock_timeout for the statement (warn) or refuse it (enforce) when the session has none. */
  lockTimeout?: { mode: 'warn' | 'enforce'; ms: number };
}

/** The DO block sent in front of the statement: refusals first, then notices and the lock timeout. */
export function guardBlock(g: GuardBlockInput): string | undefined {
  const lines: string[] = [];
  const raise = (f: { message: string; hint: string }, enforce: boolean) =>
    enforce
      ? `RAISE EXCEPTION USING ERRCODE = '0A000', MESSAGE = ${quoteLiteral(f.message)}, HINT = ${quoteLiteral(f.hint)};`
      : `RAISE NOTICE USING MESSAGE = ${quoteLiteral(f.message)}, HINT = ${quoteLiteral(f.hint)};`;
  const guarded = (f: DdlFinding, enforce: boolean) =>
    f.when ? `IF ${f.when} THEN ${raise(f, enforce)} END IF;` : raise(f, enforce);
  for (const f of g.findings.filter((x) => x.mode === 'enforce')) lines.push(guarded(f, true));
  if (g.lockTimeout) {
    const lt = {
      message:
        g.lockTimeout.mode === 'enforce'
          ? 'switchyard: DDL from a session without lock_timeout is refused: a lock wait would block every query behind it'
          : `switchyard: lock_timeout was not set; this DDL statement runs with lock_timeout = ${g.lockTimeout.ms}ms`,
      hint: `SET lock_timeout = '${g.lockTimeout.ms}ms' in the migration session, and retry on a timeout`,
    };
    const body =
      g.lockTimeout.mode === 'enforce'
        ? raise(lt, true)
        : `PERFORM pg_catalog.set_config('lock_timeout', '${g.lockTimeout.ms}ms', true); ${raise(lt, false)}`;
    lines.push(`IF pg_catalog.current_setting('lock_timeout') = '0' THEN ${body} END IF;`);
  }
  for (const f of g.findings.filter((x) => x.mode === 'warn')) lines.push(guarded(f, false));
  if (lines.length === 0) return undefined;
  const text = lines.join(' ');
  let tag = '$sy$';
  for (let i = 0; text.includes(tag); i++) tag = `$sy${i}$`;
  return `DO ${tag}BEGIN ${text} END${tag}; `;
}

/** A mapped table a DDL statement names: which mapping, and whether as its old or its new table. */
export interface MappedTable {
  mapping: string;
  side: 'old' | 'new';
  /** Columns of that table the mapping's expressions or key use. */
  used: ReadonlySet<string>;
}

/**
 * DDL that would break a mapping that mirrors or reads its tables: dropping or
 * renaming the old or new table, or dropping, renaming or retyping a column an
 * up/down expression or the key uses.
 */
export function mappingBreaks(
  stmt: ParsedStatement,
  resolve: (schema: string | undefined, name: string) => MappedTable | undefined,
): DdlFinding[] {
  const n = stmt.node;
  const out: DdlFinding[] = [];
  const found = (hit: MappedTable, what: string) =>
    out.push({
      rule: 'mappingBreak',
      mapping: hit.mapping,
      message: `switchyard: ${what} would break mapping ${hit.mapping}, which uses the ${hit.side} table`,
      hint: `stop the mapping first (remove it from the config, or dualWrite: false and reads: old), then run the DDL`,
    });
  const rv = (r: Node) => resolve(r?.schemaname, r?.relname);
  if (stmt.kind === 'DropStmt' && (n.removeType === 'OBJECT_TABLE' || n.removeType === 'OBJECT_VIEW')) {
    for (const o of (n.objects ?? []) as Node[]) {
      const parts = ((o.List?.items ?? []) as Node[]).map((x) => x.String?.sval as string);
      const hit = resolve(parts.length > 1 ? parts[parts.length - 2] : undefined, parts[parts.length - 1]);
      if (hit) found(hit, `DROP TABLE ${parts.join('.')}`);
    }
  }
  if (stmt.kind === 'RenameStmt' && n.relation) {
    const hit = rv(n.relation);
    if (hit && n.renameType === 'OBJECT_TABLE') found(hit, `renaming ${n.relation.relname}`);
    if (hit && n.renameType === 'OBJECT_COLUMN' && hit.used.has(n.subname)) {
      found(hit, `renaming column ${n.subname} of ${n.relation.relname}`);
    }
  }
  if (stmt.kind === 'AlterTableStmt' && n.relation) {
    const hit = rv(n.relation);
    for (const c of (n.cmds ?? []) as Node[]) {
      const cmd = c.AlterTableCmd;
      if (!hit || !cmd?.name || !hit.used.has(cmd.name)) continue;
      if (cmd.subtype === 'AT_DropColumn') found(hit, `dropping column ${cmd.name} of ${n.relation.relname}`);
      if (cmd.subtype === 'AT_AlterColumnType')
        found(hit, `changing the type of column ${cmd.name} of ${n.relation.relname}`);
    }
  }
  return out;
}

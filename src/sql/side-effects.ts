// Whether evaluating a piece of a statement twice could be told from
// evaluating it once: a call of any function not known to be free of side
// effects and deterministic within a statement. Conservative by design: an
// unknown or user-defined function counts, whatever it does.
import type { Node } from './parse.ts';

/**
 * Built-in functions that neither change anything nor give another answer
 * when called again in the same statement (immutable or stable in
 * pg_catalog). Anything else (random(), clock_timestamp(), nextval(), any
 * user function) is taken to have side effects.
 */
const SAFE = new Set([
  'abs',
  'age',
  'array_length',
  'array_lower',
  'array_position',
  'array_positions',
  'array_to_string',
  'array_upper',
  'avg',
  'bool_and',
  'bool_or',
  'btrim',
  'cardinality',
  'ceil',
  'ceiling',
  'char_length',
  'character_length',
  'coalesce',
  'concat',
  'concat_ws',
  'count',
  'current_setting',
  'date',
  'date_part',
  'date_trunc',
  'extract',
  'floor',
  'format',
  'greatest',
  'initcap',
  'isfinite',
  'json_extract_path',
  'json_extract_path_text',
  'jsonb_array_length',
  'jsonb_extract_path',
  'jsonb_extract_path_text',
  'jsonb_typeof',
  'json_typeof',
  'least',
  'left',
  'length',
  'lower',
  'lpad',
  'ltrim',
  'make_date',
  'make_interval',
  'make_time',
  'make_timestamp',
  'make_timestamptz',
  'max',
  'md5',
  'min',
  'mod',
  'now',
  'nullif',
  'octet_length',
  'position',
  'regexp_like',
  'regexp_match',
  'regexp_replace',
  'repeat',
  'replace',
  'reverse',
  'right',
  'round',
  'rpad',
  'rtrim',
  'sign',
  'split_part',
  'starts_with',
  'statement_timestamp',
  'string_to_array',
  'strpos',
  'substr',
  'substring',
  'sum',
  'timezone',
  'to_char',
  'to_date',
  'to_number',
  'to_timestamp',
  'transaction_timestamp',
  'trim',
  'trunc',
  'upper',
]);

function funcName(f: Node): string[] {
  return ((f.funcname ?? []) as Node[]).map((p) => p?.String?.sval ?? '');
}

/**
 * The first call in `nodes` that may have side effects, as `name()`, or
 * undefined. `catalogFirst`: unqualified names resolve to pg_catalog first
 * (false when the session's search_path lists pg_catalog after another schema,
 * where a same-named function could take its place).
 */
export function sideEffectIn(nodes: Node, opts: { catalogFirst: boolean }): string | undefined {
  let found: string | undefined;
  const visit = (v: Node): void => {
    if (found !== undefined || v === null || typeof v !== 'object') return;
    if (Array.isArray(v)) {
      for (const x of v) visit(x);
      return;
    }
    const f = v.FuncCall;
    if (f) {
      const parts = funcName(f);
      const name = parts[parts.length - 1];
      const schemaOk =
        parts.length === 1 ? opts.catalogFirst : parts.length === 2 && parts[0] === 'pg_catalog';
      if (!schemaOk || !SAFE.has(name)) {
        found = `a call of ${parts.join('.')}()`;
        return;
      }
    }
    for (const k in v) visit(v[k]);
  };
  visit(nodes);
  return found;
}

// Values a column of a given type can hold that expressions tend to get
// wrong: NULL, empty and blank strings, separators inside names, extremes of
// numbers and time. The round-trip check feeds them through up and down.

/** SQL literals (already quoted) for a column of this format_type(); NULL comes separately. */
export function edgeLiterals(type: string): string[] {
  const t = type
    .toLowerCase()
    .replace(/\(.*\)/, '')
    .trim();
  if (t.endsWith('[]')) return ["'{}'"];
  switch (t) {
    case 'text':
    case 'character varying':
    case 'character':
    case 'varchar':
    case 'char':
    case 'name':
    case 'citext':
      return [
        "''",
        "' '",
        "'Mary Ann Smith'",
        "' leading'",
        "'trailing '",
        "'a,b;c|d'",
        "'O''Hara-Zoë 日本'",
        "E'tab\\there\\nline'",
      ];
    case 'smallint':
      return ['0', '-1', '32767', '-32768'];
    case 'integer':
      return ['0', '-1', '2147483647', '-2147483648'];
    case 'bigint':
      return ['0', '-1', '9223372036854775807', '-9223372036854775808'];
    case 'numeric':
      return ['0', '-0.5', '123456789.123456789', '1e20'];
    case 'real':
    case 'double precision':
      return ['0', '-0.5', "'NaN'", "'Infinity'", "'-Infinity'", '1e-30'];
    case 'boolean':
      return ['true', 'false'];
    case 'date':
      return [
        "'1970-01-01'",
        "'2024-02-29'",
        "'infinity'",
        "'-infinity'",
        "'4713-01-01 BC'",
        "'294276-12-31'",
      ];
    case 'timestamp without time zone':
    case 'timestamp with time zone':
      return [
        "'epoch'",
        "'2024-02-29 12:34:56.789012'",
        "'infinity'",
        "'-infinity'",
        "'4713-01-01 00:00:00 BC'",
        "'294276-12-31 23:59:59.999999'",
      ];
    case 'time without time zone':
      return ["'00:00'", "'23:59:59.999999'", "'24:00'"];
    case 'interval':
      return ["'0'", "'-1 day'", "'1 year 2 mons 3 days 04:05:06.789'"];
    case 'uuid':
      return ["'00000000-0000-0000-0000-000000000000'", "'ffffffff-ffff-ffff-ffff-ffffffffffff'"];
    case 'json':
    case 'jsonb':
      return ["'null'", "'{}'", "'[]'", '\'{"a": [1, "b c"], "d": null}\''];
    case 'bytea':
      return ["''", "'\\x00ff'"];
    default:
      return [];
  }
}

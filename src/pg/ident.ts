// Identifier quoting and qualified-name parsing with Postgres's own rules:
// unquoted names fold to lower case, quoted names keep case and double their quotes.

export interface QualifiedName {
  /** undefined: unqualified, resolved through search_path. */
  schema?: string;
  name: string;
}

/** Always quotes: every identifier switchyard writes into SQL goes through here. */
export function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

export function quoteQualified(q: QualifiedName): string {
  return q.schema === undefined ? quoteIdent(q.name) : `${quoteIdent(q.schema)}.${quoteIdent(q.name)}`;
}

export function quoteLiteral(value: string): string {
  return `'${value.replaceAll("'", "''")}'`;
}

/** Parses `name`, `schema.name`, `"Mixed Case"."Name"` as Postgres would. */
export function parseQualifiedName(text: string): QualifiedName {
  const parts: string[] = [];
  let i = 0;
  const s = text.trim();
  while (i < s.length) {
    if (s[i] === '"') {
      let j = i + 1;
      let out = '';
      for (;;) {
        if (j >= s.length) throw new Error(`unterminated quoted identifier in ${text}`);
        if (s[j] === '"') {
          if (s[j + 1] === '"') {
            out += '"';
            j += 2;
            continue;
          }
          break;
        }
        out += s[j];
        j++;
      }
      parts.push(out);
      i = j + 1;
    } else {
      let j = i;
      while (j < s.length && s[j] !== '.') j++;
      parts.push(s.slice(i, j).toLowerCase());
      i = j;
    }
    if (i < s.length) {
      if (s[i] !== '.') throw new Error(`unexpected character in ${text}`);
      i++;
    }
  }
  if (parts.length === 1) return { name: parts[0] };
  if (parts.length === 2) return { schema: parts[0], name: parts[1] };
  throw new Error(`expected table or schema.table, got ${text}`);
}

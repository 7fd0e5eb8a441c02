// The real Postgres grammar (libpg-query, WebAssembly). Every position it
// reports is a UTF-8 byte offset into the text, so callers work on a Buffer
// of the SQL, never on JavaScript string indices.
import { loadModule, parseSync, scanSync } from 'libpg-query';

let loaded: Promise<void> | undefined;
let ready = false;

/** Loads the parser once; the sync functions below need it. */
export function loadParser(): Promise<void> {
  loaded ??= loadModule().then(() => {
    ready = true;
  });
  return loaded;
}

export function parserReady(): boolean {
  return ready;
}

/** A parse-tree node: `{ TypeName: { ...fields } }` wrappers and bare field objects alike. */
// biome-ignore lint/suspicious/noExplicitAny: the parse tree is untyped JSON from the parser
export type Node = any;

export interface ParsedStatement {
  /** The single key of the statement node, e.g. "InsertStmt". */
  kind: string;
  /** The statement's fields. */
  node: Node;
  /** Byte range of the statement text (without the separating semicolon). */
  start: number;
  end: number;
}

export interface Token {
  start: number;
  end: number;
  text: string;
  tokenName: string;
  keywordName: string;
}

export interface ParsedSql {
  sql: string;
  bytes: Buffer;
  statements: ParsedStatement[];
}

export class SqlParseError extends Error {
  override name = 'SqlParseError';
}

function ensureReady(): void {
  if (!ready) throw new Error('SQL parser not loaded: await loadParser() first');
}

export function parseSql(sql: string): ParsedSql {
  ensureReady();
  const bytes = Buffer.from(sql, 'utf8');
  let tree: Node;
  try {
    tree = parseSync(sql);
  } catch (e) {
    throw new SqlParseError((e as Error).message);
  }
  const statements: ParsedStatement[] = (tree.stmts ?? []).map((s: Node) => {
    const start = s.stmt_location ?? 0;
    const end = s.stmt_len ? start + s.stmt_len : bytes.length;
    const kind = Object.keys(s.stmt)[0];
    return { kind, node: s.stmt[kind], start, end };
  });
  return { sql, bytes, statements };
}

/** Every token of the text (comments included), with byte positions, from the parser's own scanner. */
export function scanTokens(sql: string): Token[] {
  ensureReady();
  const r = scanSync(sql) as { tokens: Token[] };
  return r.tokens;
}

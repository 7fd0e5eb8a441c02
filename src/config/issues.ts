// Validation problems in the words of the config file: a mapping by its name
// (not mappings.0), the key as written, what was expected and what was found,
// never the validator's own phrasing ("Invalid input: expected object,
// received undefined").
import type { z } from 'zod';

type Issue = z.core.$ZodIssue;
type Path = readonly PropertyKey[];

const PORT = 'a TCP port number (0-65535)';
const HOST = 'a host name or IP address';
const COUNT = 'a positive whole number';
const TABLE = 'a table name, optionally schema-qualified (schema.table)';

/** What each key holds, by path with mapping indexes as '*'. */
const EXPECTED: Record<string, string> = {
  listen: 'a mapping with host and port',
  'listen.host': HOST,
  'listen.port': PORT,
  'listen.tls': 'a mapping with cert and key (PEM files)',
  'listen.tls.cert': 'a PEM certificate file',
  'listen.tls.key': 'a PEM private key file',
  upstream: 'a mapping with host (and port) or url of the upstream Postgres',
  'upstream.host': HOST,
  'upstream.port': PORT,
  'upstream.url': 'a postgres:// URL',
  'upstream.sslmode': 'disable, require or verify-full',
  'upstream.ca': 'a CA certificate file',
  'upstream.connectTimeoutMs': 'a positive whole number of milliseconds',
  admin: 'a mapping with host, port and tokenEnv',
  'admin.host': HOST,
  'admin.port': PORT,
  'admin.tokenEnv': 'the name of an environment variable',
  killSwitch: 'true or false',
  onUnmirrorable: 'passthrough or reject',
  limits: 'a mapping of limits',
  'limits.maxClientConnections': COUNT,
  'limits.startupTimeoutMs': 'a positive whole number of milliseconds',
  'limits.maxMessageBytes': 'a positive whole number of bytes',
  shutdown: 'a mapping with drainTimeoutMs',
  'shutdown.drainTimeoutMs': 'a whole number of milliseconds, 0 or more',
  log: 'a mapping with level',
  'log.level': 'trace, debug, info, warn, error or fatal',
  fleet: 'a mapping with enabled, pollMs, heartbeatMs and staleAfterMs',
  'fleet.enabled': 'true or false',
  'fleet.pollMs': 'a positive whole number of milliseconds',
  'fleet.heartbeatMs': 'a positive whole number of milliseconds',
  'fleet.staleAfterMs': 'a positive whole number of milliseconds',
  ddl: 'a mapping with lockTimeoutMs and rules',
  'ddl.lockTimeoutMs': 'a whole number of milliseconds, above 0',
  'ddl.rules': 'a mapping of DDL rules to warn, enforce or off',
  'ddl.rules.*': 'warn, enforce or off',
  mappings: 'a list of mappings',
  'mappings.*': 'a mapping with name, old, new, key and up',
  'mappings.*.name': 'a mapping name (letters, digits, _ . -)',
  'mappings.*.old': `the old ${TABLE}`,
  'mappings.*.new': `the new ${TABLE}`,
  'mappings.*.key': "a list of the new table's key columns, such as [id]",
  'mappings.*.key.*': 'a column name',
  'mappings.*.dualWrite': 'true, false or both',
  'mappings.*.oldKey': "a list of the old table's key columns, such as [id]",
  'mappings.*.oldKey.*': 'a column name',
  'mappings.*.reads': 'old, new, or { new: N } with N a percent of client sessions',
  'mappings.*.reads.new': 'a whole number from 0 to 100 (percent of client sessions)',
  'mappings.*.shadowReads': 'a mapping with sample (0 to 1) and maxConcurrent',
  'mappings.*.shadowReads.sample': 'a share of reads from 0 to 1, such as 0.01',
  'mappings.*.shadowReads.maxConcurrent': 'a whole number above 0',
  'mappings.*.up': 'a mapping of each new column to an SQL expression over the old row, such as { id: id }',
  'mappings.*.up.*': 'an SQL expression, as a string',
  'mappings.*.down': 'a mapping of each old column to an SQL expression over the new row, such as { id: id }',
  'mappings.*.down.*': 'an SQL expression, as a string',
};

const BY_TYPE: Record<string, string> = {
  array: 'a list',
  record: 'a mapping (key: value)',
  object: 'a mapping (key: value)',
  string: 'a string',
  number: 'a number',
  int: 'a whole number',
  boolean: 'true or false',
};

function valueAt(raw: unknown, path: Path): unknown {
  let v = raw;
  for (const p of path) {
    if (v === null || typeof v !== 'object') return undefined;
    v = (v as Record<PropertyKey, unknown>)[p];
  }
  return v;
}

/** A value as a reader of the YAML sees it. */
function describe(v: unknown): string {
  if (v === null) return 'an empty value';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'string') return `the string ${JSON.stringify(v)}`;
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  if (typeof v === 'object') return 'a mapping';
  return typeof v;
}

/** "mapping users-v2" for a mapping with a name, "mappings[2]" (1-based) for one without. */
function mappingLabel(raw: unknown, index: number): string {
  const name = valueAt(raw, ['mappings', index, 'name']);
  return typeof name === 'string' && name !== '' ? `mapping ${name}` : `mapping #${index + 1} (no name)`;
}

function pattern(path: Path): string {
  return path
    .map((p, i) => (typeof p === 'number' && path[i - 1] === 'mappings' ? '*' : String(p)))
    .join('.');
}

function expected(path: Path, issue?: { expected?: string }): string {
  const exact = EXPECTED[pattern(path)];
  if (exact) return exact;
  // An expression under up/down, a key column: the pattern with its last key as '*'.
  const wild = EXPECTED[pattern([...path.slice(0, -1), '*'])];
  if (wild) return wild;
  return BY_TYPE[issue?.expected ?? ''] ?? 'a valid value';
}

/** Where an issue is, and the key it is about: "mapping users-v2" + "key". */
function place(raw: unknown, path: Path): { where: string; key: string } {
  if (path[0] === 'mappings' && typeof path[1] === 'number') {
    return { where: mappingLabel(raw, path[1]), key: path.slice(2).map(String).join('.') };
  }
  return { where: '', key: path.map(String).join('.') };
}

function line(where: string, key: string, problem: string): string {
  const head = [where, key].filter((s) => s !== '').join(': ');
  return head === '' ? problem : `${head}: ${problem}`;
}

function problem(issue: Issue, raw: unknown): string {
  const { where, key } = place(raw, issue.path);
  const got = valueAt(raw, issue.path);
  const want = expected(issue.path, issue as { expected?: string });
  switch (issue.code) {
    case 'unrecognized_keys': {
      const keys = issue.keys.join(', ');
      return line(where, key, `unknown key${issue.keys.length > 1 ? 's' : ''} ${keys}`);
    }
    case 'invalid_type': {
      if (got === undefined) {
        const parent = place(raw, issue.path.slice(0, -1));
        const name = String(issue.path[issue.path.length - 1]);
        return line(parent.where, parent.key, `missing required key ${name}: expected ${want}`);
      }
      return line(where, key, `expected ${want}, got ${describe(got)}`);
    }
    case 'invalid_value':
    case 'invalid_union':
      return line(where, key, `expected ${want}, got ${describe(got)}`);
    case 'too_small':
    case 'too_big': {
      if (issue.origin === 'string' && issue.code === 'too_small')
        return line(where, key, `must not be empty`);
      if (issue.origin === 'array' && issue.code === 'too_small') {
        return line(where, key, `expected ${want}, got an empty list`);
      }
      return line(where, key, `expected ${want}, got ${describe(got)}`);
    }
    case 'invalid_format':
      return line(where, key, `${issue.message}, got ${describe(got)}`);
    default:
      // Our own refinements: their messages are already written for the file's reader.
      return line(where, key, issue.message);
  }
}

/** Every problem, one line, in the config's own words. */
export function formatIssues(error: z.ZodError, raw: unknown): string {
  return error.issues.map((i) => problem(i, raw)).join('; ');
}

// Reading a config file: YAML -> ${ENV} interpolation -> schema validation.
// Every failure is a ConfigError whose message names the key and the problem.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Lexer, parse as parseYaml, YAMLParseError } from 'yaml';
import { formatIssues } from './issues.ts';
import { type Config, configSchema } from './schema.ts';

export class ConfigError extends Error {
  override name = 'ConfigError';
}

export interface LoadedConfig {
  config: Config;
  /** sha256 of the file bytes, for /status and reload change detection. */
  hash: string;
  path?: string;
}

/** Lexer tokens that mark structure and occupy no characters of the source. */
const SYNTHETIC_TOKENS = new Set(['\x02', '\x18', '\x1f']);

/**
 * Source ranges of YAML comments, so a commented-out line that mentions
 * ${NAME} needs no such variable. Empty if the token stream ever stops matching
 * the text: then every reference counts, as if there were no comments.
 */
function commentRanges(text: string): Array<[number, number]> {
  const ranges: Array<[number, number]> = [];
  let pos = 0;
  for (const tok of new Lexer().lex(text)) {
    if (SYNTHETIC_TOKENS.has(tok)) continue;
    if (!text.startsWith(tok, pos)) return [];
    if (tok.startsWith('#')) ranges.push([pos, pos + tok.length]);
    pos += tok.length;
  }
  return ranges;
}

/**
 * Replaces ${NAME} with the environment's value; an unset variable is an error.
 * Text substitution before parsing, so `port: ${PGPORT}` is a number; a value
 * that may hold YAML syntax (`: `, ` #`) belongs in quotes: host: "${PGHOST}".
 * References inside comments are left as they are.
 */
export function interpolateEnv(text: string, env: NodeJS.ProcessEnv = process.env): string {
  if (!text.includes('${')) return text;
  const comments = commentRanges(text);
  const inComment = (at: number) => comments.some(([from, to]) => at >= from && at < to);
  const missing: string[] = [];
  const out = text.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (ref: string, name: string, at: number) => {
    if (inComment(at)) return ref;
    const v = env[name];
    if (v === undefined) {
      if (!missing.includes(name)) missing.push(name);
      return '';
    }
    return v;
  });
  if (missing.length > 0) {
    throw new ConfigError(
      `environment variable${missing.length > 1 ? 's' : ''} not set: ${missing.join(', ')}`,
    );
  }
  return out;
}

export function parseConfigText(text: string, env: NodeJS.ProcessEnv = process.env): Config {
  let raw: unknown;
  try {
    raw = parseYaml(interpolateEnv(text, env));
  } catch (e) {
    if (e instanceof ConfigError) throw e;
    if (e instanceof YAMLParseError) throw new ConfigError(`YAML: ${e.message.split('\n')[0]}`);
    throw e;
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new ConfigError('config must be a YAML mapping');
  }
  const parsed = configSchema.safeParse(raw);
  if (!parsed.success) throw new ConfigError(formatIssues(parsed.error, raw));
  return parsed.data;
}

/** The file's bytes, or a ConfigError saying why it cannot be read. */
export function readConfigBytes(path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (e) {
    throw new ConfigError(
      `cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
    );
  }
}

export function configHash(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** Parses bytes already read from `path` (the watcher reads once, to hash and to parse). */
export function loadConfigBytes(
  bytes: Buffer,
  path: string,
  env: NodeJS.ProcessEnv = process.env,
): LoadedConfig {
  const config = parseConfigText(bytes.toString('utf8'), env);
  return { config, hash: configHash(bytes), path };
}

export function loadConfigFile(path: string, env: NodeJS.ProcessEnv = process.env): LoadedConfig {
  return loadConfigBytes(readConfigBytes(path), path, env);
}

/** host/port of the upstream, whichever form the config used. */
export function upstreamAddress(config: Config): { host: string; port: number } {
  const u = config.upstream;
  if (u.url) {
    const url = new URL(u.url);
    return { host: url.hostname, port: url.port ? Number(url.port) : 5432 };
  }
  return { host: u.host!, port: u.port ?? 5432 };
}

// biome-ignore-all lint/suspicious/noTemplateCurlyInString: ${NAME} references are the subject of these tests
// The config loader: YAML -> ${ENV} -> schema, with errors that name the key.
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  ConfigError,
  interpolateEnv,
  loadConfigFile,
  parseConfigText,
  upstreamAddress,
} from '../../src/config/load.ts';

const MAPPING = `
  - name: users-full-name
    old: public.users
    new: public.users_v2
    key: [id]
    up: { id: id, full_name: "first_name || ' ' || last_name" }
    down: { id: id, first_name: "split_part(full_name, ' ', 1)" }
`;

function parse(text: string, env: NodeJS.ProcessEnv = {}) {
  return parseConfigText(text, env);
}

function errorOf(text: string, env: NodeJS.ProcessEnv = {}): string {
  try {
    parse(text, env);
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return (e as Error).message;
  }
  throw new Error('expected a ConfigError');
}

describe('defaults', () => {
  it('a minimal file gets every default', () => {
    const c = parse('upstream: { host: db, port: 5433 }');
    expect(c.listen).toEqual({ host: '0.0.0.0', port: 6432 });
    expect(c.admin).toEqual({ host: '127.0.0.1', port: 9187, tokenEnv: 'SWITCHYARD_ADMIN_TOKEN' });
    expect(c.killSwitch).toBe(false);
    expect(c.onUnmirrorable).toBe('passthrough');
    expect(c.shutdown.drainTimeoutMs).toBe(30000);
    expect(c.mappings).toEqual([]);
    expect(upstreamAddress(c)).toEqual({ host: 'db', port: 5433 });
  });

  it('a mapping defaults to dualWrite on and reads old', () => {
    const c = parse(`upstream: { url: "postgres://db.internal:6543" }\nmappings:${MAPPING}`);
    expect(c.mappings[0]).toMatchObject({ dualWrite: true, reads: 'old', key: ['id'] });
    expect(upstreamAddress(c)).toEqual({ host: 'db.internal', port: 6543 });
  });
});

describe('unknown keys', () => {
  it('at the top level, naming the key', () => {
    expect(errorOf('upstream: { host: db }\nkilSwitch: true')).toBe('unknown key kilSwitch');
  });

  it('nested, with the path to it', () => {
    expect(errorOf('upstream: { host: db, sslmod: require }')).toBe('upstream: unknown key sslmod');
    expect(
      errorOf(`upstream: { host: db }\nmappings:${MAPPING.replace('key: [id]', 'key: [id]\n    read: new')}`),
    ).toBe('mapping users-full-name: unknown key read');
  });
});

describe('${ENV} interpolation', () => {
  it('replaces references anywhere, numbers included', () => {
    const c = parse('upstream: { host: "${DB_HOST}", port: ${DB_PORT} }\nadmin: { tokenEnv: ${TOKEN_VAR} }', {
      DB_HOST: 'orders-db.svc',
      DB_PORT: '5544',
      TOKEN_VAR: 'MY_TOKEN',
    });
    expect(c.upstream).toMatchObject({ host: 'orders-db.svc', port: 5544 });
    expect(c.admin.tokenEnv).toBe('MY_TOKEN');
  });

  it('leaves text without references alone, including a bare $', () => {
    expect(interpolateEnv('a $HOME b $ {X}', {})).toBe('a $HOME b $ {X}');
  });

  it('an unset variable is an error naming every missing one', () => {
    expect(errorOf('upstream: { host: "${DB_HOST}", port: ${DB_PORT} }', { DB_PORT: '1' })).toBe(
      'environment variable not set: DB_HOST',
    );
    expect(errorOf('upstream: { host: "${A}", url: "${B}" }')).toBe('environment variables not set: A, B');
  });

  it('a reference in a comment needs no variable', () => {
    const c = parse('# upstream: { url: "${OLD_DATABASE_URL}" }\nupstream: { host: db } # or ${PGHOST}', {});
    expect(c.upstream.host).toBe('db');
    expect(interpolateEnv('a: ${X} # ${Y}\n# ${X}', { X: '1' })).toBe('a: 1 # ${Y}\n# ${X}');
  });

  it('a quoted reference keeps a value holding YAML syntax one string', () => {
    const c = parse('upstream: { host: "${H}" }', { H: 'db #primary, x: 1' });
    expect(c.upstream.host).toBe('db #primary, x: 1');
  });

  it('a reference inside a block scalar or a quoted string is not a comment', () => {
    expect(errorOf('upstream: { host: db }\nlog: { level: "a # ${NOPE}" }')).toBe(
      'environment variable not set: NOPE',
    );
  });

  it('references compose inside a value; a quoted number stays a string', () => {
    const c = parse('upstream: { url: "postgres://${H}:${P}" }', { H: 'db', P: '5433' });
    expect(c.upstream.url).toBe('postgres://db:5433');
    expect(errorOf('upstream: { host: db, port: "${P}" }', { P: '5433' })).toMatch(/^upstream\.port: /);
  });

  it('an empty variable is set (and then fails validation on its own terms)', () => {
    expect(errorOf('upstream: { host: "${H}" }', { H: '' })).toMatch(/^upstream\.host: /);
  });
});

describe('garbage', () => {
  it('invalid YAML is a one-line YAML error', () => {
    const msg = errorOf('upstream: { host: db\nlisten: [');
    expect(msg).toMatch(/^YAML: /);
    expect(msg).not.toContain('\n');
  });

  it('a document that is not a mapping', () => {
    expect(errorOf('- a\n- b')).toBe('config must be a YAML mapping');
    expect(errorOf('just text')).toBe('config must be a YAML mapping');
    expect(errorOf('')).toBe('config must be a YAML mapping');
  });

  it('wrong types name the key', () => {
    expect(errorOf('upstream: { host: db, port: "5432" }')).toMatch(/^upstream\.port: /);
    expect(errorOf('upstream: { host: db }\nkillSwitch: yes please')).toMatch(/^killSwitch: /);
    expect(errorOf('upstream: { host: db }\nonUnmirrorable: ignore')).toMatch(/^onUnmirrorable: /);
  });

  it('upstream needs host or url', () => {
    expect(errorOf('upstream: { port: 5432 }')).toBe('upstream: needs host (and port) or url');
    expect(errorOf('listen: { port: 1 }')).toMatch(/^missing required key upstream: /);
  });
});

describe('mapping rules', () => {
  it('reads: new without down is refused at down', () => {
    const text = `upstream: { host: db }\nmappings:${MAPPING.replace(/\n\s+down:.*\n/, '\n').replace('key: [id]', 'key: [id]\n    reads: new')}`;
    expect(text).not.toContain('down');
    expect(errorOf(text)).toBe(
      'mapping users-full-name: missing required key down: reads: new serves reads from the new table, so every old column needs an SQL expression over the new row',
    );
  });

  it('reads: old without down is fine', () => {
    const text = `upstream: { host: db }\nmappings:${MAPPING.replace(/\n\s+down:.*\n/, '\n')}`;
    expect(parse(text).mappings[0].down).toBeUndefined();
  });

  it('duplicate mapping names are refused at the second one', () => {
    const second = MAPPING.replace('old: public.users', 'old: public.people');
    expect(errorOf(`upstream: { host: db }\nmappings:${MAPPING}${second}`)).toBe(
      'mapping users-full-name: name: another mapping has the same name',
    );
  });

  it('a key column without an up expression is refused', () => {
    expect(errorOf(`upstream: { host: db }\nmappings:${MAPPING.replace('key: [id]', 'key: [uid]')}`)).toBe(
      'mapping users-full-name: key: column uid has no up expression',
    );
  });

  it('table names must be table or schema.table', () => {
    expect(
      errorOf(`upstream: { host: db }\nmappings:${MAPPING.replace('old: public.users', 'old: a.b.c')}`),
    ).toBe('mapping users-full-name: old: must be table or schema.table, got the string "a.b.c"');
    const quoted = parse(
      `upstream: { host: db }\nmappings:${MAPPING.replace('old: public.users', `old: '"My Schema"."Users"'`)}`,
    );
    expect(quoted.mappings[0].old).toBe('"My Schema"."Users"');
  });

  it('several problems are all reported', () => {
    const msg = errorOf('upstream: { host: db, port: 70000 }\nlog: { level: loud }');
    expect(msg).toContain('upstream.port');
    expect(msg).toContain('log.level');
  });
});

describe('errors in the words of the config file', () => {
  const withMapping = (edit: (m: string) => string) => `upstream: { host: db }\nmappings:${edit(MAPPING)}`;

  it('an unknown key inside a mapping names the mapping, not its index', () => {
    expect(errorOf(withMapping((m) => m.replace('key: [id]', 'key: [id]\n    colour: blue')))).toBe(
      'mapping users-full-name: unknown key colour',
    );
  });

  it('a missing required key says which and what it holds', () => {
    expect(errorOf(withMapping((m) => m.replace(/\n\s+key: \[id\]/, '')))).toBe(
      "mapping users-full-name: missing required key key: expected a list of the new table's key columns, such as [id]",
    );
    expect(errorOf('listen: { port: 1 }')).toBe(
      'missing required key upstream: expected a mapping with host (and port) or url of the upstream Postgres',
    );
  });

  it('a wrong type says what was expected and what was found', () => {
    expect(errorOf(withMapping((m) => m.replace('key: [id]', 'key: id')))).toBe(
      'mapping users-full-name: key: expected a list of the new table\'s key columns, such as [id], got the string "id"',
    );
    expect(errorOf('upstream: { host: db, port: "5432" }')).toBe(
      'upstream.port: expected a TCP port number (0-65535), got the string "5432"',
    );
    expect(errorOf('upstream: { host: db }\nlimits: { maxClientConnections: -5 }')).toBe(
      'limits.maxClientConnections: expected a positive whole number, got -5',
    );
    expect(errorOf(withMapping((m) => m.replace('key: [id]', 'key: [id]\n    reads: newer')))).toBe(
      'mapping users-full-name: reads: expected old, new, or { new: N } with N a percent of client sessions, got the string "newer"',
    );
  });

  it('a mapping without a name is named by its position', () => {
    expect(errorOf(withMapping((m) => m.replace('- name: users-full-name\n    old', '- old')))).toBe(
      'mapping #1 (no name): missing required key name: expected a mapping name (letters, digits, _ . -)',
    );
  });

  it('never keeps the validator phrasing', () => {
    for (const text of [
      'listen: { port: 1 }',
      'upstream: { host: db }\nkillSwitch: maybe',
      'upstream: { host: db }\nmappings: { a: 1 }',
      withMapping((m) => m.replace('key: [id]', 'key: []')),
      withMapping((m) => m.replace(/up: .*/, 'up: [id]')),
    ]) {
      expect(errorOf(text)).not.toMatch(/Invalid input|Invalid option|received|Too small|mappings\.\d/);
    }
  });
});

describe('loadConfigFile', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'sy-config-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('returns the config, the sha256 of the bytes and the path', () => {
    const file = path.join(dir, 'a.yaml');
    writeFileSync(file, 'upstream: { host: db }\n');
    const loaded = loadConfigFile(file, {});
    expect(loaded.path).toBe(file);
    expect(loaded.hash).toBe(createHash('sha256').update('upstream: { host: db }\n').digest('hex'));
    expect(loaded.config.upstream.host).toBe('db');
    writeFileSync(file, 'upstream: { host: db }  \n');
    expect(loadConfigFile(file, {}).hash).not.toBe(loaded.hash);
  });

  it('a missing file names the path and the reason', () => {
    const file = path.join(dir, 'nope.yaml');
    expect(() => loadConfigFile(file, {})).toThrow(`cannot read ${file}: ENOENT`);
  });
});

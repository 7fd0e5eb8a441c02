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
    expect(errorOf('upstream: { host: db }\nkilSwitch: true')).toBe('(root): unknown key kilSwitch');
  });

  it('nested, with the path to it', () => {
    expect(errorOf('upstream: { host: db, sslmod: require }')).toBe('upstream: unknown key sslmod');
    expect(
      errorOf(`upstream: { host: db }\nmappings:${MAPPING.replace('key: [id]', 'key: [id]\n    read: new')}`),
    ).toBe('mappings.0: unknown key read');
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
    expect(errorOf('listen: { port: 1 }')).toMatch(/^upstream: /);
  });
});

describe('mapping rules', () => {
  it('reads: new without down is refused at down', () => {
    const text = `upstream: { host: db }\nmappings:${MAPPING.replace(/\n\s+down:.*\n/, '\n').replace('key: [id]', 'key: [id]\n    reads: new')}`;
    expect(text).not.toContain('down');
    expect(errorOf(text)).toBe('mappings.0.down: is required when reads is new');
  });

  it('reads: old without down is fine', () => {
    const text = `upstream: { host: db }\nmappings:${MAPPING.replace(/\n\s+down:.*\n/, '\n')}`;
    expect(parse(text).mappings[0].down).toBeUndefined();
  });

  it('duplicate mapping names are refused at the second one', () => {
    const second = MAPPING.replace('old: public.users', 'old: public.people');
    expect(errorOf(`upstream: { host: db }\nmappings:${MAPPING}${second}`)).toBe(
      'mappings.1.name: duplicate mapping name users-full-name',
    );
  });

  it('a key column without an up expression is refused', () => {
    expect(errorOf(`upstream: { host: db }\nmappings:${MAPPING.replace('key: [id]', 'key: [uid]')}`)).toBe(
      'mappings.0.key: key column uid has no up expression',
    );
  });

  it('table names must be table or schema.table', () => {
    expect(
      errorOf(`upstream: { host: db }\nmappings:${MAPPING.replace('old: public.users', 'old: a.b.c')}`),
    ).toBe('mappings.0.old: must be table or schema.table');
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

// config/switchyard.schema.json is generated from the zod schema; it must be
// current, and every config shipped in the repository must pass both it and
// the loader the proxy uses.
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv } from 'ajv';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments, parse as parseYaml } from 'yaml';
import { renderJsonSchema, SCHEMA_PATH } from '../../scripts/gen-schema.ts';
import { ConfigError, interpolateEnv, parseConfigText } from '../../src/config/load.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const schema = JSON.parse(readFileSync(SCHEMA_PATH, 'utf8')) as object;
const validate = new Ajv({ allErrors: true, strict: true, strictRequired: false }).compile(schema);

/** Stand-in values for every ${NAME} a shipped config references. */
function fakeEnv(text: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const m of text.matchAll(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g)) {
    env[m[1]] = /PORT/.test(m[1]) ? '5432' : `${m[1].toLowerCase()}.example`;
  }
  return env;
}

interface Shipped {
  name: string;
  text: string;
}

function shippedConfigs(): Shipped[] {
  const out: Shipped[] = [];
  const configDir = path.join(ROOT, 'config');
  for (const f of readdirSync(configDir)
    .filter((f) => /\.ya?ml$/.test(f))
    .sort()) {
    out.push({ name: `config/${f}`, text: readFileSync(path.join(configDir, f), 'utf8') });
  }
  const k8s = path.join(ROOT, 'deploy/kubernetes');
  for (const f of readdirSync(k8s)
    .filter((f) => /\.ya?ml$/.test(f))
    .sort()) {
    for (const doc of parseAllDocuments(readFileSync(path.join(k8s, f), 'utf8'))) {
      const obj = doc.toJS() as {
        kind?: string;
        metadata?: { name?: string };
        data?: Record<string, string>;
      };
      if (obj?.kind !== 'ConfigMap') continue;
      for (const [key, text] of Object.entries(obj.data ?? {})) {
        if (key.endsWith('.yaml'))
          out.push({ name: `deploy/kubernetes/${f} ${obj.metadata?.name}/${key}`, text });
      }
    }
  }
  return out;
}

function schemaErrors(value: unknown): string[] {
  return validate(value) ? [] : (validate.errors ?? []).map((e) => `${e.instancePath || '/'} ${e.message}`);
}

describe('config/switchyard.schema.json', () => {
  it('is up to date with src/config/schema.ts (npm run gen:schema)', () => {
    expect(readFileSync(SCHEMA_PATH, 'utf8')).toBe(renderJsonSchema());
  });

  it('makes keys with defaults optional: a file with only upstream is valid', () => {
    expect(schemaErrors({ upstream: { host: 'db' } })).toEqual([]);
  });
});

describe('shipped configs', () => {
  const shipped = shippedConfigs();

  it('include the example and the Kubernetes ConfigMap', () => {
    const names = shipped.map((s) => s.name);
    expect(names).toContain('config/example.yaml');
    expect(names.some((n) => n.startsWith('deploy/kubernetes/configmap.yaml'))).toBe(true);
  });

  it('standalone configs point editors at the schema', () => {
    for (const s of shipped.filter((s) => s.name.startsWith('config/'))) {
      expect(s.text.split('\n')[0], s.name).toBe('# yaml-language-server: $schema=./switchyard.schema.json');
    }
  });

  it.each(shippedConfigs().map((s) => [s.name, s] as const))(
    '%s validates with the JSON schema and the loader',
    (_, s) => {
      const env = fakeEnv(s.text);
      expect(schemaErrors(parseYaml(interpolateEnv(s.text, env)))).toEqual([]);
      expect(() => parseConfigText(s.text, env)).not.toThrow();
    },
  );
});

describe('the JSON schema and the loader agree on invalid configs', () => {
  const mapping = {
    name: 'm',
    old: 'public.users',
    new: 'public.users_v2',
    key: ['id'],
    up: { id: 'id' },
  };
  const cases: Array<[string, unknown]> = [
    ['unknown top-level key', { upstream: { host: 'db' }, kilSwitch: true }],
    ['unknown nested key', { upstream: { host: 'db', sslmod: 'require' } }],
    ['upstream without host or url', { upstream: { port: 5432 } }],
    ['missing upstream', { listen: { port: 6432 } }],
    ['port out of range', { upstream: { host: 'db', port: 70000 } }],
    ['reads new without down', { upstream: { host: 'db' }, mappings: [{ ...mapping, reads: 'new' }] }],
    ['bad reads value', { upstream: { host: 'db' }, mappings: [{ ...mapping, reads: 'both' }] }],
    ['three-part table name', { upstream: { host: 'db' }, mappings: [{ ...mapping, old: 'a.b.c' }] }],
    ['empty up', { upstream: { host: 'db' }, mappings: [{ ...mapping, up: {} }] }],
    ['mapping without key', { upstream: { host: 'db' }, mappings: [{ ...mapping, key: [] }] }],
    ['bad sslmode', { upstream: { host: 'db', sslmode: 'prefer' } }],
  ];
  it.each(cases)('%s', (_, value) => {
    expect(schemaErrors(value)).not.toEqual([]);
    expect(() => parseConfigText(JSON.stringify(value), {})).toThrow(ConfigError);
  });

  it('reads new with down passes both', () => {
    const value = {
      upstream: { url: 'postgres://db:5432' },
      mappings: [{ ...mapping, reads: 'new', down: { id: 'id' } }],
    };
    expect(schemaErrors(value)).toEqual([]);
    expect(() => parseConfigText(JSON.stringify(value), {})).not.toThrow();
  });
});

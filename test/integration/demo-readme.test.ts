// The README is the newcomer's first contact: keep it true to the code. Its
// quick start is the two commands, its config reference covers every key of
// the validator with the validator's defaults, every metric it names exists,
// and every file it links to is in the repository.
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { configSchema } from '../../src/config/schema.ts';
import { registry } from '../../src/metrics.ts';
import { HELPER_SCHEMA } from '../../src/rules/rowsql.ts';

const ROOT = path.resolve(import.meta.dirname, '../..');
const README = readFileSync(path.join(ROOT, 'README.md'), 'utf8');

interface Key {
  path: string;
  leaf: boolean;
  default?: unknown;
}

// biome-ignore lint/suspicious/noExplicitAny: walking zod's internal definition tree
function configKeys(schema: any, prefix = '', out: Key[] = []): Key[] {
  let t = schema;
  let dflt: unknown;
  for (;;) {
    const def = t._zod.def;
    if (def.type === 'default') {
      dflt ??= typeof def.defaultValue === 'function' ? def.defaultValue() : def.defaultValue;
      t = def.innerType;
    } else if (def.type === 'optional' || def.type === 'nullable') t = def.innerType;
    else break;
  }
  const def = t._zod.def;
  if (prefix) out.push({ path: prefix, leaf: def.type !== 'object', default: dflt });
  if (def.type === 'object') {
    for (const [k, v] of Object.entries(def.shape)) configKeys(v, prefix ? `${prefix}.${k}` : k, out);
  } else if (def.type === 'array' && def.element._zod.def.type === 'object') {
    configKeys(def.element, `${prefix}[]`, out).find((k) => k.path === `${prefix}[]`)!.leaf = false;
  }
  return out;
}

function section(title: string): string {
  const start = README.indexOf(`\n## ${title}\n`);
  expect(start, `README has a "## ${title}" section`).toBeGreaterThanOrEqual(0);
  const end = README.indexOf('\n## ', start + 1);
  return README.slice(start, end < 0 ? undefined : end);
}

describe('README', () => {
  it('quick start is exactly the two commands', () => {
    const blocks = [...section('Quick start').matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1].trim());
    expect(blocks).toEqual(['npm ci && npm run demo', 'npm ci && npm test']);
    const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
    expect(pkg.scripts.demo).toBe('node bin/switchyard.js demo');
  });

  it('documents every config key with the default the validator applies', () => {
    const rows = section('Configuration reference')
      .split('\n')
      .filter((l) => l.startsWith('| `'))
      .map((l) => l.split('|').map((c) => c.trim()));
    const leaves = configKeys(configSchema).filter((k) => k.leaf);
    expect(leaves.length).toBeGreaterThan(25);
    for (const k of leaves) {
      const row = rows.find((r) => r[1].split(', ').includes(`\`${k.path}\``));
      expect(row, `config reference row for ${k.path}`).toBeDefined();
      if (k.default !== undefined && typeof k.default !== 'object') {
        expect(row![2], `default of ${k.path}`).toContain(`\`${String(k.default)}\``);
      }
    }
  });

  it('names only metrics that exist', async () => {
    const known = new Set((await registry.getMetricsAsJSON()).map((m) => m.name));
    // The mirror's helper schema shares the prefix; it is a schema, not a metric.
    const named = [...new Set([...README.matchAll(/\bswitchyard_[a-z_]+/g)].map((m) => m[0]))].filter(
      (n) => n !== HELPER_SCHEMA,
    );
    expect(named.length).toBeGreaterThan(5);
    for (const n of named) expect(known, n).toContain(n.replace(/_(bucket|sum|count)$/, ''));
  });

  it('links only to files that exist', () => {
    const links = [...README.matchAll(/\]\(([^)#\s]+)(?:#[^)]*)?\)/g)]
      .map((m) => m[1])
      .filter((l) => !/^[a-z]+:/.test(l));
    expect(links.length).toBeGreaterThan(5);
    for (const l of links) expect(existsSync(path.join(ROOT, l)), l).toBe(true);
  });
});

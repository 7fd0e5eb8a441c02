// The folder layout is the architecture: imports between src/ folders run one
// way (top to bottom below), nothing above the transport opens sockets, and no
// module grows past what one reader can hold.
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

/** Each folder may import the folders listed for it (and the leaf modules at src/). */
const ALLOWED: Record<string, string[]> = {
  cli: [
    'app',
    'demo',
    'admin',
    'backfill',
    'verify',
    'fleet',
    'proxy',
    'rules',
    'sql',
    'pg',
    'config',
    'wire',
  ],
  demo: ['app', 'admin', 'backfill', 'verify', 'rules', 'sql', 'pg', 'config'],
  app: ['admin', 'fleet', 'proxy', 'verify', 'transport', 'rules', 'pg', 'config'],
  admin: ['config'],
  backfill: ['rules', 'sql', 'pg', 'config'],
  verify: ['rules', 'sql', 'pg', 'config'],
  fleet: ['pg', 'config'],
  proxy: ['rules', 'sql', 'transport', 'wire', 'config'],
  rules: ['sql', 'pg', 'config'],
  sql: ['pg', 'config'],
  transport: ['config'],
  wire: [],
  pg: ['config'],
  config: [],
};
const MAX_LINES = 500;

const SRC = path.resolve('src');

function sources(dir = SRC): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) return sources(p);
    return e.name.endsWith('.ts') ? [p] : [];
  });
}

function imports(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  return [...text.matchAll(/^(?:import|export)[^'"]*from\s+'([^']+)'/gm)].map((m) => m[1]);
}

describe('architecture', () => {
  it('folders import only the folders below them', () => {
    const wrong: string[] = [];
    for (const file of sources()) {
      const rel = path.relative(SRC, file);
      const folder = rel.includes(path.sep) ? rel.split(path.sep)[0] : undefined;
      if (folder === undefined) continue;
      expect(ALLOWED[folder], `src/${folder} is not in the layout`).toBeDefined();
      for (const spec of imports(file)) {
        if (!spec.startsWith('.')) continue;
        const target = path.relative(SRC, path.resolve(path.dirname(file), spec));
        const to = target.includes(path.sep) ? target.split(path.sep)[0] : undefined;
        if (to === undefined || to === folder) continue;
        if (!ALLOWED[folder].includes(to)) wrong.push(`${rel} imports ${target}`);
      }
    }
    expect(wrong).toEqual([]);
  });

  it('the leaf modules at src/ import no folder', () => {
    for (const file of sources().filter((f) => path.dirname(f) === SRC)) {
      expect(imports(file).filter((s) => s.startsWith('./') && s.split('/').length > 2)).toEqual([]);
    }
  });

  it('only the transport touches node:net and node:tls on the statement path', () => {
    const offenders = sources()
      .filter((f) => ['proxy', 'wire', 'rules', 'sql'].includes(path.relative(SRC, f).split(path.sep)[0]))
      .filter((f) => imports(f).some((s) => s === 'node:net' || s === 'node:tls'));
    expect(offenders.map((f) => path.relative(SRC, f))).toEqual([]);
  });

  it(`no module under src/ is over ${MAX_LINES} lines`, () => {
    const long = sources()
      .map((f) => [path.relative(SRC, f), readFileSync(f, 'utf8').split('\n').length - 1] as const)
      .filter(([, n]) => n > MAX_LINES);
    expect(long).toEqual([]);
  });
});

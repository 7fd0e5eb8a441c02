// Config faults against the real CLI process: every broken reload is refused
// whole, the running config keeps serving, the refusal is counted in
// switchyard_config_reloads_total{result="error"}, and a good config afterwards
// is accepted. Both reload paths: the directory watch (plain file and a
// Kubernetes ConfigMap symlink swap) and SIGHUP.
import { createHash } from 'node:crypto';
import {
  mkdirSync,
  mkdtempSync,
  readFileSync,
  renameSync,
  rmSync,
  symlinkSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { freshDatabase, type TestDatabase } from '../support/db.ts';
import { type ProxyProcess, startProxyProcess } from '../support/proxy.ts';

let db: TestDatabase;
let proxy: ProxyProcess | undefined;
const clients: pg.Client[] = [];

beforeAll(async () => {
  db = await freshDatabase('cfg');
});

afterEach(async () => {
  for (const c of clients.splice(0)) await c.end().catch(() => {});
  await proxy?.stop();
  proxy = undefined;
});

afterAll(async () => {
  await db?.drop();
});

/** Each broken file, as text, given the good config as an object. */
const BROKEN: { name: string; text: (good: Record<string, unknown>) => string }[] = [
  { name: 'garbage YAML', text: () => 'listen: [unclosed\n  host: : :\n\t- ]]' },
  { name: 'YAML that is not a mapping', text: () => '- just\n- a list\n' },
  { name: 'empty file', text: () => '' },
  {
    name: 'mapping with reads: new and no down',
    text: (g) =>
      stringify({
        ...g,
        mappings: [
          {
            name: 'users-v2',
            old: 'public.users',
            new: 'public.users_v2',
            key: ['id'],
            reads: 'new',
            up: { id: 'id' },
          },
        ],
      }),
  },
  {
    name: 'mapping whose key has no up expression',
    text: (g) =>
      stringify({
        ...g,
        mappings: [{ name: 'users-v2', old: 'users', new: 'users_v2', key: ['id'], up: { email: 'email' } }],
      }),
  },
  { name: 'unknown top-level key', text: (g) => stringify({ ...g, lissten: { port: 1 } }) },
  {
    name: 'unknown key inside a mapping',
    text: (g) =>
      stringify({
        ...g,
        mappings: [{ name: 'm', old: 'a', new: 'b', key: ['id'], up: { id: 'id' }, colour: 'blue' }],
      }),
  },
  { name: 'wrong type', text: (g) => stringify({ ...g, limits: { maxClientConnections: -5 } }) },
  {
    name: 'unset environment variable',
    text: (g) => `${stringify(g)}\nkillSwitch: \${SWITCHYARD_TEST_UNSET_VAR}\n`,
  },
];

interface Metrics {
  errors: number;
  ok: number;
  version: number;
}

async function metrics(p: ProxyProcess): Promise<Metrics> {
  const text = await (await fetch(`http://127.0.0.1:${p.adminPort}/metrics`)).text();
  const value = (prefix: string) => {
    const line = text.split('\n').find((l) => l.startsWith(prefix));
    return line ? Number(line.slice(prefix.length).trim()) : 0;
  };
  return {
    errors: value('switchyard_config_reloads_total{result="error"}'),
    ok: value('switchyard_config_reloads_total{result="ok"}'),
    version: value('switchyard_config_version '),
  };
}

async function until<T>(what: string, get: () => Promise<T>, ok: (v: T) => boolean, ms = 8000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await get();
    if (ok(v)) return v;
    if (Date.now() > deadline)
      throw new Error(`timed out waiting for ${what}; last value ${JSON.stringify(v)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Replaces a file the way editors and config tools do: write aside, rename over. */
function atomicWrite(file: string, text: string): void {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'sy-w-'));
  writeFileSync(path.join(dir, 'new'), text);
  renameSync(path.join(dir, 'new'), file);
  rmSync(dir, { recursive: true, force: true });
}

async function client(p: ProxyProcess): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: p.url() });
  c.on('error', () => {});
  await c.connect();
  clients.push(c);
  return c;
}

/** The running config still serves: an existing session and a brand-new one both query. */
async function stillServes(p: ProxyProcess, existing: pg.Client): Promise<void> {
  expect((await existing.query('SELECT 1 AS one')).rows[0].one).toBe(1);
  const fresh = new pg.Client({ connectionString: p.url() });
  await fresh.connect();
  try {
    expect((await fresh.query('SELECT current_database() AS d')).rows[0].d).toBe(db.name);
  } finally {
    await fresh.end();
  }
}

/**
 * Runs every broken file through `install` + `trigger`, checking each is refused
 * and counted while the old config serves, then installs a good one.
 */
async function refuseThenAccept(
  p: ProxyProcess,
  install: (text: string) => void,
  trigger: () => void,
  remove: () => void,
): Promise<void> {
  const good = parse(readFileSync(p.configPath, 'utf8')) as Record<string, unknown>;
  const session = await client(p);
  const start = await metrics(p);
  let errors = start.errors;
  for (const broken of [...BROKEN, { name: 'missing file', text: () => '' }]) {
    if (broken.name === 'missing file') remove();
    else install(broken.text(good));
    trigger();
    const m = await until(
      `reload of "${broken.name}" to be refused`,
      () => metrics(p),
      (v) => v.errors > errors,
    );
    errors = m.errors;
    expect(m.version, broken.name).toBe(start.version);
    expect(m.ok, broken.name).toBe(start.ok);
    await stillServes(p, session);
  }
  expect(p.output()).toContain('config reload refused; the running config stays');
  // A good config is accepted afterwards, and it is the one in force.
  const goodText = stringify({ ...good, limits: { maxClientConnections: 777 } });
  install(goodText);
  trigger();
  const after = await until(
    'the good config to load',
    () => metrics(p),
    (v) => v.ok > start.ok,
  );
  expect(after.version).toBe(start.version + 1);
  expect(after.errors).toBe(errors);
  await stillServes(p, session);
  const status = (await (await fetch(`http://127.0.0.1:${p.adminPort}/status`)).json()) as {
    config: { version: number; hash: string };
  };
  expect(status.config).toMatchObject({
    version: after.version,
    hash: createHash('sha256').update(goodText).digest('hex'),
  });
}

describe('config faults', () => {
  it('file watch: refuses each broken file, keeps serving, counts it, then accepts a good one', async () => {
    proxy = await startProxyProcess(db);
    const p = proxy;
    await refuseThenAccept(
      p,
      (text) => atomicWrite(p.configPath, text),
      () => {},
      () => unlinkSync(p.configPath),
    );
  });

  it('SIGHUP: refuses each broken file, keeps serving, counts it, then accepts a good one', async () => {
    proxy = await startProxyProcess(db);
    const p = proxy;
    // The config path becomes a symlink to a file in a directory nobody watches,
    // so a reload can only come from the signal.
    const elsewhere = mkdtempSync(path.join(os.tmpdir(), 'sy-hup-'));
    const real = path.join(elsewhere, 'switchyard.yaml');
    writeFileSync(real, readFileSync(p.configPath));
    const link = `${p.configPath}.link`;
    symlinkSync(real, link);
    renameSync(link, p.configPath);
    await new Promise((r) => setTimeout(r, 500));
    const settled = await metrics(p);
    expect(settled.errors).toBe(0);
    await refuseThenAccept(
      p,
      (text) => {
        atomicWrite(real, text);
      },
      () => {
        p.child.kill('SIGHUP');
      },
      () => unlinkSync(real),
    );
    rmSync(elsewhere, { recursive: true, force: true });
  });

  it('Kubernetes ConfigMap: a ..data symlink swap is seen; broken content refused, good content accepted', async () => {
    proxy = await startProxyProcess(db);
    const p = proxy;
    const dir = path.dirname(p.configPath);
    const name = path.basename(p.configPath);
    let generation = 0;
    let current: string | undefined;
    // What the kubelet does: a fresh timestamped directory, a temporary
    // symlink to it, renamed over ..data, and the old directory removed.
    const swap = (text: string) => {
      const stamp = `..2026_11_24_07_00_00.${String(++generation).padStart(9, '0')}`;
      mkdirSync(path.join(dir, stamp));
      writeFileSync(path.join(dir, stamp, name), text);
      symlinkSync(stamp, path.join(dir, '..data_tmp'));
      renameSync(path.join(dir, '..data_tmp'), path.join(dir, '..data'));
      if (current) rmSync(path.join(dir, current), { recursive: true, force: true });
      current = stamp;
    };
    swap(readFileSync(p.configPath, 'utf8'));
    symlinkSync(path.join('..data', name), path.join(dir, `${name}.tmp`));
    renameSync(path.join(dir, `${name}.tmp`), p.configPath);
    await new Promise((r) => setTimeout(r, 500));
    expect((await metrics(p)).errors).toBe(0);
    await refuseThenAccept(
      p,
      swap,
      () => {},
      // A ConfigMap whose key was removed: ..data points at a directory without the file.
      () => {
        const stamp = `..2026_11_24_07_00_00.${String(++generation).padStart(9, '0')}`;
        mkdirSync(path.join(dir, stamp));
        symlinkSync(stamp, path.join(dir, '..data_tmp'));
        renameSync(path.join(dir, '..data_tmp'), path.join(dir, '..data'));
        if (current) rmSync(path.join(dir, current), { recursive: true, force: true });
        current = stamp;
      },
    );
  });
});

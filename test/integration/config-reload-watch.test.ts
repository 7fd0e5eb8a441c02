// The directory watch reloads on the config's content, not on the directory's
// traffic: with a broken config in place, other files written beside it (the
// proxy's own log, say) must not trigger refused reload after refused reload,
// each with its catalog connection. The real CLI process and a real Postgres.
import {
  appendFileSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  renameSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { freshDatabase, type TestDatabase } from '../support/db.ts';
import { type ProxyProcess, startProxyProcess } from '../support/proxy.ts';

let db: TestDatabase;
let proxy: ProxyProcess | undefined;

const MAPPING = { name: 'users-v2', old: 'public.users', new: 'public.users_v2', key: ['id'] };

beforeAll(async () => {
  db = await freshDatabase('cfgwatch');
  await db.query(`CREATE TABLE users (id int PRIMARY KEY, email text);
                  CREATE TABLE users_v2 (id int PRIMARY KEY, email text)`);
});

afterEach(async () => {
  await proxy?.stop();
  proxy = undefined;
});

afterAll(async () => {
  await db?.drop();
});

async function reloads(p: ProxyProcess): Promise<{ errors: number; ok: number }> {
  const text = await (await fetch(`http://127.0.0.1:${p.adminPort}/metrics`)).text();
  const value = (prefix: string) => {
    const line = text.split('\n').find((l) => l.startsWith(prefix));
    return line ? Number(line.slice(prefix.length).trim()) : 0;
  };
  return {
    errors: value('switchyard_config_reloads_total{result="error"}'),
    ok: value('switchyard_config_reloads_total{result="ok"}'),
  };
}

async function until<T>(what: string, get: () => Promise<T>, ok: (v: T) => boolean, ms = 15_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await get();
    if (ok(v)) return v;
    if (Date.now() > deadline)
      throw new Error(`timed out waiting for ${what}; last value ${JSON.stringify(v)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function atomicWrite(file: string, text: string): void {
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'sy-w-'));
  writeFileSync(path.join(tmp, 'new'), text);
  renameSync(path.join(tmp, 'new'), file);
  rmSync(tmp, { recursive: true, force: true });
}

/**
 * Writes beside the config the way a log does: appends and a new file now and
 * then, in bursts spaced wider than any debounce, so each burst is its own event.
 */
async function chatter(dir: string, bursts: number): Promise<void> {
  for (let i = 0; i < bursts; i++) {
    for (let j = 0; j < 5; j++) appendFileSync(path.join(dir, 'switchyard.log'), `line ${i}.${j}\n`);
    if (i % 5 === 0) writeFileSync(path.join(dir, `other-${i}.txt`), String(i));
    await new Promise((r) => setTimeout(r, 250));
  }
}

function refusals(p: ProxyProcess): number {
  return p.output().split('config reload refused').length - 1;
}

describe('config watch reloads on content only', () => {
  it('a broken config is refused once however much else is written in its directory; a fix reloads', async () => {
    proxy = await startProxyProcess(db, { mappings: [{ ...MAPPING, up: { id: 'id', email: 'email' } }] });
    const p = proxy;
    const dir = path.dirname(p.configPath);
    const good = parse(readFileSync(p.configPath, 'utf8')) as Record<string, unknown>;
    const start = await reloads(p);
    // Passes the schema, fails the catalog check: every attempt opens a connection.
    atomicWrite(
      p.configPath,
      stringify({ ...good, mappings: [{ ...MAPPING, up: { id: 'id', emale: 'email' } }] }),
    );
    await until(
      'the broken config to be refused',
      () => reloads(p),
      (m) => m.errors === start.errors + 1,
    );

    await chatter(dir, 20);
    await new Promise((r) => setTimeout(r, 1000));
    expect((await reloads(p)).errors - start.errors).toBe(1);
    expect(refusals(p)).toBe(1);

    // The same broken bytes written again are the same content: still one refusal.
    atomicWrite(
      p.configPath,
      stringify({ ...good, mappings: [{ ...MAPPING, up: { id: 'id', emale: 'email' } }] }),
    );
    await chatter(dir, 5);
    await new Promise((r) => setTimeout(r, 1000));
    expect((await reloads(p)).errors - start.errors).toBe(1);

    atomicWrite(p.configPath, stringify({ ...good, limits: { maxClientConnections: 321 } }));
    const fixed = await until(
      'the fixed config to load',
      () => reloads(p),
      (m) => m.ok === start.ok + 1,
    );
    expect(fixed.errors - start.errors).toBe(1);
  });

  it('a ConfigMap ..data swap still reloads, and a broken swap is counted once amid other writes', async () => {
    proxy = await startProxyProcess(db, { mappings: [{ ...MAPPING, up: { id: 'id', email: 'email' } }] });
    const p = proxy;
    const dir = path.dirname(p.configPath);
    const name = path.basename(p.configPath);
    const good = parse(readFileSync(p.configPath, 'utf8')) as Record<string, unknown>;
    let generation = 0;
    let current: string | undefined;
    const swap = (text: string) => {
      const stamp = `..2026_12_01_07_00_00.${String(++generation).padStart(9, '0')}`;
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
    const start = await reloads(p);
    expect(start.errors).toBe(0);

    swap(stringify({ ...good, limits: { maxClientConnections: 555 } }));
    const swapped = await until(
      'the swapped config to load',
      () => reloads(p),
      (m) => m.ok === start.ok + 1,
    );

    swap(stringify({ ...good, lissten: { port: 1 } }));
    await until(
      'the broken swap to be refused',
      () => reloads(p),
      (m) => m.errors === start.errors + 1,
    );
    await chatter(dir, 15);
    await new Promise((r) => setTimeout(r, 1000));
    expect((await reloads(p)).errors - start.errors).toBe(1);

    swap(stringify({ ...good, limits: { maxClientConnections: 556 } }));
    await until(
      'the next good swap to load',
      () => reloads(p),
      (m) => m.ok === swapped.ok + 1,
    );
  });
});

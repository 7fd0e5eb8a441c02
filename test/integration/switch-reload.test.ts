// Hot reload through the real CLI: a file change and SIGHUP flip reads; an
// invalid file is refused whole and the running config keeps serving; the
// reload counter, the version gauge and a log line naming the changed switches.
import { mkdtempSync, realpathSync, renameSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { freshDatabase, type TestDatabase } from '../support/db.ts';
import { mappingConfig } from '../support/lifecycle.ts';
import type { MappingDefinition } from '../support/mapping-cases.ts';
import { baseConfig, type ProxyProcess, startProxyProcess } from '../support/proxy.ts';

let db: TestDatabase;
let proc: ProxyProcess;

const widgets: MappingDefinition = {
  name: 'widgets-v2',
  old: 'widgets',
  new: 'widgets_v2',
  key: ['id'],
  up: { id: 'id', name: 'name' },
  down: { id: 'id', name: 'name' },
};

beforeAll(async () => {
  db = await freshDatabase('rl');
  // The two copies of row 1 differ on purpose: the value read tells which table served it.
  await db.query(`
    CREATE TABLE widgets (id int PRIMARY KEY, name text NOT NULL);
    CREATE TABLE widgets_v2 (id int PRIMARY KEY, name text NOT NULL);
    INSERT INTO widgets VALUES (1, 'old');
    INSERT INTO widgets_v2 VALUES (1, 'new');`);
  proc = await startProxyProcess(db, mappingConfig([widgets]));
});

afterAll(async () => {
  await proc?.stop();
  await db?.drop();
});

async function served(): Promise<string> {
  const c = new pg.Client({ connectionString: proc.url() });
  await c.connect();
  try {
    return (await c.query('SELECT name FROM widgets WHERE id = 1')).rows[0].name;
  } finally {
    await c.end();
  }
}

async function eventually<T>(
  f: () => Promise<T>,
  ok: (v: T) => boolean,
  what: string,
  ms = 10_000,
): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (ok(v)) return v;
    if (Date.now() > deadline)
      throw new Error(`${what}: still ${JSON.stringify(v)}\n${proc.output().slice(-3000)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function metricsText(): Promise<string> {
  const r = await fetch(`http://127.0.0.1:${proc.adminPort}/metrics`);
  return r.text();
}

function sample(text: string, series: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line ? Number(line.split(' ')[1]) : 0;
}

/** Waits for a log line: the child writes it after the new config is in force, so a client may see the switch first. */
const logged = (re: RegExp) =>
  eventually(
    async () => proc.output(),
    (o) => re.test(o),
    `log line ${re}`,
  );

const reloads = async (result: 'ok' | 'error') =>
  sample(await metricsText(), `switchyard_config_reloads_total{result="${result}"}`);
const version = async () => sample(await metricsText(), 'switchyard_config_version');

/** The file content writeConfig would produce, for writing it elsewhere. */
function configText(extra: Record<string, unknown>): string {
  const c = baseConfig(db, extra);
  c.listen = { host: '127.0.0.1', port: proc.port };
  c.admin = { host: '127.0.0.1', port: proc.adminPort };
  return stringify(c);
}

describe('hot reload of the running CLI', () => {
  it('a file change flips reads to new, logs the changed switch, counts the reload and bumps the version', async () => {
    expect(await served()).toBe('old');
    const v0 = await version();
    const ok0 = await reloads('ok');
    proc.writeConfig(mappingConfig([widgets], { reads: 'new' }));
    await eventually(served, (v) => v === 'new', 'reads after the file change');
    expect(await version()).toBe(v0 + 1);
    expect(await reloads('ok')).toBe(ok0 + 1);
    await logged(/config reloaded: .*mapping widgets-v2 reads old -> new/);
  });

  it('an up expression naming a missing column is refused whole; the old config keeps serving', async () => {
    const v0 = await version();
    const err0 = await reloads('error');
    const broken = { ...widgets, up: { id: 'id', name: 'no_such_column' } };
    proc.writeConfig(mappingConfig([broken], { reads: 'old' }));
    await eventually(
      () => reloads('error'),
      (n) => n === err0 + 1,
      'reload error count',
    );
    await logged(/config reload refused/);
    await logged(/no_such_column/);
    expect(await served()).toBe('new');
    expect(await version()).toBe(v0);
  });

  it('a file that is not valid YAML is refused too', async () => {
    const err0 = await reloads('error');
    writeFileSync(proc.configPath, 'mappings: [\n  {');
    await eventually(
      () => reloads('error'),
      (n) => n === err0 + 1,
      'reload error count',
    );
    expect(await served()).toBe('new');
  });

  it('a ConfigMap-style symlink swap is seen; an edit behind the symlink waits for SIGHUP', async () => {
    // Kubernetes mounts the file as a symlink into a data directory and swaps the link.
    const data = mkdtempSync(path.join(os.tmpdir(), 'sy-cm-'));
    const target = path.join(data, 'v1.yaml');
    writeFileSync(target, configText(mappingConfig([widgets], { reads: 'old' })));
    const link = `${proc.configPath}.tmp-link`;
    symlinkSync(target, link);
    renameSync(link, proc.configPath);
    await eventually(served, (v) => v === 'old', 'reads after the symlink swap');
    await logged(/mapping widgets-v2 reads new -> old/);

    // The directory being watched does not change when the target file does: only SIGHUP reloads it.
    const v0 = await version();
    writeFileSync(target, configText(mappingConfig([widgets], { reads: 'new' })));
    await new Promise((r) => setTimeout(r, 800));
    expect(await served()).toBe('old');
    proc.child.kill('SIGHUP');
    await eventually(served, (v) => v === 'new', 'reads after SIGHUP');
    expect(await version()).toBe(v0 + 1);
    await logged(/SIGHUP/);
  });

  it('the kill switch flips by reload and is listed in the log line', async () => {
    const data = path.dirname(realpathSync(proc.configPath));
    const next = path.join(data, 'v2.yaml');
    writeFileSync(next, configText(mappingConfig([widgets], { reads: 'new', killSwitch: true })));
    const link = `${proc.configPath}.tmp-link`;
    symlinkSync(next, link);
    renameSync(link, proc.configPath);
    await eventually(
      async () => sample(await metricsText(), 'switchyard_kill_switch'),
      (v) => v === 1,
      'kill switch',
    );
    await logged(/killSwitch false -> true/);
    const c = new pg.Client({ connectionString: proc.url() });
    await c.connect();
    try {
      await c.query("INSERT INTO widgets VALUES (2, 'unmirrored')");
    } finally {
      await c.end();
    }
    expect((await db.query('SELECT 1 FROM widgets_v2 WHERE id = 2')).rowCount).toBe(0);
  });
});

// The admin HTTP endpoint against a real server on a free port. /readyz probes
// the run's real Postgres (and a closed port for the unreachable case).
import { createServer } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type AdminDeps, type AdminServer, probeTcp, startAdmin } from '../../src/admin/server.ts';
import type { AdminStatus } from '../../src/admin/status.ts';
import { parseConfigText } from '../../src/config/load.ts';
import { ConfigStore } from '../../src/config/store.ts';
import { silentLogger } from '../../src/log.ts';
import { metrics, registry } from '../../src/metrics.ts';
import { VERSION } from '../../src/version.ts';
import { serverInfo } from '../support/db.ts';

const CONFIG = `
upstream: { host: 127.0.0.1, port: 5432 }
killSwitch: false
mappings:
  - name: users-full-name
    old: public.users
    new: public.users_v2
    key: [id]
    up: { id: id, full_name: "first_name || ' ' || last_name" }
  - name: orders-cents
    old: orders
    new: orders_v2
    key: [id]
    dualWrite: false
    reads: new
    up: { id: id, amount_cents: "(amount * 100)::bigint" }
    down: { id: id, amount: "amount_cents / 100.0" }
`;

function loaded(text: string, hash = 'a'.repeat(64)) {
  return { config: parseConfigText(text, {}), hash, path: '/etc/switchyard/switchyard.yaml' };
}

async function closedPort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const { port } = srv.address() as { port: number };
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

let store: ConfigStore;
let draining = false;
let upstream: () => Promise<boolean>;
const servers: AdminServer[] = [];

function deps(): AdminDeps {
  return {
    store,
    connections: () => 7,
    draining: () => draining,
    upstreamReachable: () => upstream(),
    startedAt: new Date(Date.now() - 65_000),
  };
}

async function start(extra: { requireToken?: boolean; tokenEnv?: string } = {}): Promise<string> {
  const s = await startAdmin(
    { host: '127.0.0.1', port: 0, tokenEnv: extra.tokenEnv ?? 'SY_TEST_ADMIN_TOKEN', ...extra },
    deps(),
    silentLogger,
  );
  servers.push(s);
  return `http://127.0.0.1:${s.port}`;
}

async function gaugeValue(name: string): Promise<number> {
  const m = (await registry.getMetricsAsJSON()).find((x) => x.name === name);
  return m?.values[0]?.value ?? Number.NaN;
}

beforeAll(async () => {
  store = await ConfigStore.create(loaded(CONFIG), async () => ({}));
});

afterEach(() => {
  draining = false;
  store.setKillSwitchOverride(null);
});

afterAll(async () => {
  await Promise.all(servers.map((s) => s.close()));
});

describe('read-only endpoints', () => {
  let base: string;
  beforeAll(async () => {
    const pg = new URL(serverInfo().url);
    upstream = () => probeTcp(pg.hostname, Number(pg.port || 5432), 500);
    base = await start();
  });

  it('/healthz answers 200', async () => {
    const res = await fetch(`${base}/healthz`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: 'ok' });
  });

  it('/metrics serves the Prometheus registry', async () => {
    metrics.statements.inc({ route: 'passthrough', mapping: '' });
    const res = await fetch(`${base}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toContain('text/plain');
    const text = await res.text();
    expect(text).toContain('# TYPE switchyard_statement_duration_seconds histogram');
    expect(text).toMatch(/switchyard_statements_total\{route="passthrough",mapping=""\} [1-9]/);
    expect(text).toMatch(/^switchyard_config_version \d+$/m);
  });

  it('/status reports version, config, mappings with effective mirroring, connections, uptime', async () => {
    const res = await fetch(`${base}/status`);
    expect(res.status).toBe(200);
    const s = (await res.json()) as AdminStatus;
    expect(s.version).toBe(VERSION);
    expect(s.config).toMatchObject({
      version: store.current.version,
      hash: 'a'.repeat(64),
      path: '/etc/switchyard/switchyard.yaml',
    });
    expect(new Date(s.config.loadedAt).getTime()).toBe(store.current.loadedAt.getTime());
    expect(s.killSwitch).toEqual({ config: false, override: null, effective: false });
    expect(s.mappings).toEqual([
      {
        name: 'users-full-name',
        old: 'public.users',
        new: 'public.users_v2',
        dualWrite: true,
        reads: 'old',
        mirroring: true,
      },
      {
        name: 'orders-cents',
        old: 'orders',
        new: 'orders_v2',
        dualWrite: false,
        reads: 'new',
        mirroring: false,
      },
    ]);
    expect(s.connections).toBe(7);
    expect(s.draining).toBe(false);
    expect(s.uptimeSeconds).toBeGreaterThanOrEqual(65);
    expect(s.uptimeSeconds).toBeLessThan(120);
  });

  it('/readyz is 200 when the upstream (the real Postgres) is reachable', async () => {
    const res = await fetch(`${base}/readyz`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ ready: true });
    expect(await gaugeValue('switchyard_ready')).toBe(1);
  });

  it('/readyz is 503 naming the reason when the upstream port is closed', async () => {
    const port = await closedPort();
    const before = upstream;
    upstream = () => probeTcp('127.0.0.1', port, 500);
    try {
      const res = await fetch(`${base}/readyz`);
      expect(res.status).toBe(503);
      const body = (await res.json()) as { ready: boolean; reason: string };
      expect(body.ready).toBe(false);
      expect(body.reason).toBe('upstream unreachable');
      expect(await gaugeValue('switchyard_ready')).toBe(0);
    } finally {
      upstream = before;
    }
  });

  it('/readyz is 503 while draining, even with the upstream up', async () => {
    draining = true;
    const res = await fetch(`${base}/readyz`);
    expect(res.status).toBe(503);
    expect(((await res.json()) as { reason: string }).reason).toMatch(/draining/);
    const s = (await (await fetch(`${base}/status`)).json()) as AdminStatus;
    expect(s.draining).toBe(true);
    draining = false;
    expect((await fetch(`${base}/readyz`)).status).toBe(200);
  });

  it('/readyz does not hang on an upstream check that never answers', async () => {
    const before = upstream;
    upstream = () => new Promise<boolean>(() => {});
    try {
      const res = await fetch(`${base}/readyz`);
      expect(res.status).toBe(503);
    } finally {
      upstream = before;
    }
  });

  it('unknown paths are 404, wrong methods 405 with Allow', async () => {
    const nf = await fetch(`${base}/nope`);
    expect(nf.status).toBe(404);
    expect(((await nf.json()) as { error: string }).error).toContain('/nope');
    const get = await fetch(`${base}/kill-switch`);
    expect(get.status).toBe(405);
    expect(get.headers.get('allow')).toBe('POST');
    const post = await fetch(`${base}/status`, { method: 'POST' });
    expect(post.status).toBe(405);
    expect(post.headers.get('allow')).toBe('GET, HEAD');
  });
});

describe('POST /kill-switch', () => {
  let base: string;
  beforeAll(async () => {
    upstream = async () => true;
    base = await start();
  });

  async function status(): Promise<AdminStatus> {
    return (await (await fetch(`${base}/status`)).json()) as AdminStatus;
  }

  it('on stops mirroring on every mapping, shows in /status and the gauges, and bumps the config version', async () => {
    const v0 = store.current.version;
    const res = await fetch(`${base}/kill-switch`, { method: 'POST', body: 'on' });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({
      killSwitch: { config: false, override: true, effective: true },
      configVersion: v0 + 1,
    });
    expect(store.killSwitch).toBe(true);
    const s = await status();
    expect(s.killSwitch).toEqual({ config: false, override: true, effective: true });
    expect(s.mappings.map((m) => m.mirroring)).toEqual([false, false]);
    expect(await gaugeValue('switchyard_kill_switch')).toBe(1);
    expect(await gaugeValue('switchyard_kill_switch_override')).toBe(1);
  });

  it('the override survives a config reload until cleared', async () => {
    await fetch(`${base}/kill-switch?state=on`, { method: 'POST' });
    await store.apply(
      loaded(CONFIG.replace('killSwitch: false', 'killSwitch: false\nonUnmirrorable: reject')),
    );
    let s = await status();
    expect(s.onUnmirrorable).toBe('reject');
    expect(s.killSwitch).toEqual({ config: false, override: true, effective: true });

    const res = await fetch(`${base}/kill-switch`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ state: 'clear' }),
    });
    expect(res.status).toBe(200);
    s = await status();
    expect(s.killSwitch).toEqual({ config: false, override: null, effective: false });
    expect(s.mappings[0].mirroring).toBe(true);
    expect(await gaugeValue('switchyard_kill_switch_override')).toBe(-1);
  });

  it('off overrides a config that has the kill switch on', async () => {
    await store.apply(loaded(CONFIG.replace('killSwitch: false', 'killSwitch: true')));
    expect((await status()).killSwitch).toEqual({ config: true, override: null, effective: true });
    await fetch(`${base}/kill-switch?off`, { method: 'POST' });
    expect((await status()).killSwitch).toEqual({ config: true, override: false, effective: false });
    await fetch(`${base}/kill-switch`, { method: 'POST', body: 'state=clear' });
    expect((await status()).killSwitch).toEqual({ config: true, override: null, effective: true });
    await store.apply(loaded(CONFIG));
  });

  it('refuses unknown, missing and conflicting states with 400 and changes nothing', async () => {
    const v = store.current.version;
    for (const init of [
      { body: 'maybe' },
      { body: '' },
      { body: '{"state": 1}' },
      { body: '{not json' },
    ] as RequestInit[]) {
      const res = await fetch(`${base}/kill-switch`, { method: 'POST', ...init });
      expect(res.status).toBe(400);
      expect(((await res.json()) as { error: string }).error.length).toBeGreaterThan(5);
    }
    const conflict = await fetch(`${base}/kill-switch?state=on`, { method: 'POST', body: 'off' });
    expect(conflict.status).toBe(400);
    expect(store.current.version).toBe(v);
    expect(store.killSwitchOverride).toBe(null);
  });

  it('refuses an oversized body with 413', async () => {
    const res = await fetch(`${base}/kill-switch`, { method: 'POST', body: 'x'.repeat(10_000) });
    expect(res.status).toBe(413);
    expect(store.killSwitchOverride).toBe(null);
  });
});

describe('bearer token for mutating endpoints', () => {
  const ENV = 'SY_TEST_ADMIN_TOKEN_AUTH';
  afterEach(() => {
    delete process.env[ENV];
  });

  it('without the token variable set, mutations are refused with 403 naming the variable', async () => {
    const base = await start({ requireToken: true, tokenEnv: ENV });
    const res = await fetch(`${base}/kill-switch`, {
      method: 'POST',
      body: 'on',
      headers: { authorization: 'Bearer anything' },
    });
    expect(res.status).toBe(403);
    expect(((await res.json()) as { error: string }).error).toContain(ENV);
    expect(store.killSwitchOverride).toBe(null);
    // Reads stay open: probes and scrapes carry no token.
    expect((await fetch(`${base}/status`)).status).toBe(200);
    expect((await fetch(`${base}/metrics`)).status).toBe(200);
  });

  it('with the variable set, a missing or wrong token is 401 and the right one works', async () => {
    process.env[ENV] = 's3cret-token';
    const base = await start({ requireToken: true, tokenEnv: ENV });
    const none = await fetch(`${base}/kill-switch`, { method: 'POST', body: 'on' });
    expect(none.status).toBe(401);
    expect(none.headers.get('www-authenticate')).toContain('Bearer');
    const wrong = await fetch(`${base}/kill-switch`, {
      method: 'POST',
      body: 'on',
      headers: { authorization: 'Bearer s3cret-tokeN' },
    });
    expect(wrong.status).toBe(401);
    expect(store.killSwitchOverride).toBe(null);
    const right = await fetch(`${base}/kill-switch`, {
      method: 'POST',
      body: 'on',
      headers: { authorization: 'Bearer s3cret-token' },
    });
    expect(right.status).toBe(200);
    expect(store.killSwitchOverride).toBe(true);
  });

  it('a loopback admin port needs no token by default', async () => {
    const base = await start({ tokenEnv: ENV });
    const res = await fetch(`${base}/kill-switch`, { method: 'POST', body: 'on' });
    expect(res.status).toBe(200);
  });
});

describe('probeTcp', () => {
  it('is true for the real Postgres and false for a closed port', async () => {
    const pg = new URL(serverInfo().url);
    expect(await probeTcp(pg.hostname, Number(pg.port || 5432), 1000)).toBe(true);
    expect(await probeTcp('127.0.0.1', await closedPort(), 1000)).toBe(false);
  });
});

describe('switchyard_ready without probes', () => {
  it('is set at start-up with no /readyz request, and 0 after close', async () => {
    metrics.ready.set(0);
    const s = await startAdmin(
      { host: '127.0.0.1', port: 0, tokenEnv: 'SY_TEST_ADMIN_TOKEN' },
      { ...deps(), upstreamReachable: async () => true },
      silentLogger,
    );
    const deadline = Date.now() + 3000;
    while ((await gaugeValue('switchyard_ready')) !== 1 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 10));
    }
    expect(await gaugeValue('switchyard_ready')).toBe(1);
    await s.close();
    expect(await gaugeValue('switchyard_ready')).toBe(0);
  });
});

describe('close', () => {
  it('closes promptly with a keep-alive client connected and frees the port', async () => {
    const s = await startAdmin(
      { host: '127.0.0.1', port: 0, tokenEnv: 'SY_TEST_ADMIN_TOKEN' },
      deps(),
      silentLogger,
    );
    await fetch(`http://127.0.0.1:${s.port}/healthz`);
    await s.close();
    expect(await probeTcp('127.0.0.1', s.port, 500)).toBe(false);
  });
});

// A loopback admin port needs no token, so what a browser page could send must
// be refused: a cross-site POST (foreign Origin) and a DNS-rebinding page (a
// Host that is not the admin's own address). Real HTTP requests, including curl.
import { execFile } from 'node:child_process';
import { request } from 'node:http';
import { Writable } from 'node:stream';
import { promisify } from 'node:util';
import pino from 'pino';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { type AdminServer, startAdmin } from '../../src/admin/server.ts';
import { parseConfigText } from '../../src/config/load.ts';
import { ConfigStore } from '../../src/config/store.ts';

const CONFIG = `
upstream: { host: 127.0.0.1, port: 5432 }
mappings:
  - name: users-full-name
    old: public.users
    new: public.users_v2
    key: [id]
    up: { id: id, full_name: "first_name || ' ' || last_name" }
`;

const lines: Record<string, unknown>[] = [];
const logger = pino(
  { level: 'info' },
  new Writable({
    write(chunk, _enc, cb) {
      for (const l of String(chunk).split('\n')) if (l) lines.push(JSON.parse(l));
      cb();
    },
  }),
);

let store: ConfigStore;
let admin: AdminServer;
let port: number;

beforeAll(async () => {
  store = await ConfigStore.create(
    { config: parseConfigText(CONFIG, {}), hash: 'a'.repeat(64), path: '/etc/switchyard.yaml' },
    async () => ({}),
  );
  admin = await startAdmin(
    { host: '127.0.0.1', port: 0, tokenEnv: 'SY_TEST_UNSET_ADMIN_TOKEN' },
    {
      store,
      connections: () => 0,
      draining: () => false,
      upstreamReachable: async () => true,
      startedAt: new Date(),
    },
    logger,
  );
  port = admin.port;
});

afterAll(async () => {
  await admin?.close();
});

beforeEach(() => {
  store.setKillSwitchOverride(null);
  lines.length = 0;
});

/** A raw HTTP request with exactly the headers given (fetch will not send a chosen Host). */
function send(
  method: string,
  path: string,
  headers: Record<string, string>,
  body = '',
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        method,
        path,
        headers: { 'content-length': String(body.length), ...headers },
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c) => {
          text += c;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

async function logged(msg: string): Promise<Record<string, unknown>> {
  const deadline = Date.now() + 5000;
  for (;;) {
    const hit = lines.find((l) => l.msg === msg || String(l.msg).startsWith(msg));
    if (hit) return hit;
    if (Date.now() > deadline) throw new Error(`no log line ${msg}: ${JSON.stringify(lines)}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('mutations from a browser page are refused', () => {
  it('a cross-site text/plain POST (foreign Origin) is 403, changes nothing, and is logged with its source', async () => {
    const res = await send(
      'POST',
      '/kill-switch',
      { host: `127.0.0.1:${port}`, origin: 'http://evil.example', 'content-type': 'text/plain' },
      'on',
    );
    expect(res.status).toBe(403);
    expect(JSON.parse(res.body).error).toMatch(/^Origin "http:\/\/evil.example" is not this admin's own/);
    expect(store.killSwitch).toBe(false);
    expect(store.killSwitchOverride).toBe(null);
    const line = await logged('admin mutation refused');
    expect(line).toMatchObject({
      level: 40,
      method: 'POST',
      path: '/kill-switch',
      origin: 'http://evil.example',
      host: `127.0.0.1:${port}`,
      status: 403,
    });
    expect(line.client).toMatch(/127\.0\.0\.1/);
  });

  it('refuses the opaque Origin null and a local page on another port', async () => {
    for (const origin of ['null', `http://127.0.0.1:${port + 1}`, 'http://localhost:3000']) {
      const res = await send('POST', '/kill-switch', { host: `127.0.0.1:${port}`, origin }, 'on');
      expect(res.status, origin).toBe(403);
    }
    expect(store.killSwitchOverride).toBe(null);
  });

  it('a DNS-rebinding request (foreign Host, no Origin needed) is 403 and changes nothing', async () => {
    for (const host of [
      `evil.example:${port}`,
      'evil.example',
      `127.0.0.1:${port + 1}`,
      `127.0.0.1.evil.example:${port}`,
    ]) {
      const res = await send('POST', '/kill-switch', { host }, 'on');
      expect(res.status, host).toBe(403);
      expect(JSON.parse(res.body).error).toMatch(/is not this admin's own address/);
    }
    expect(store.killSwitchOverride).toBe(null);
    expect(await logged('admin mutation refused')).toMatchObject({
      host: `evil.example:${port}`,
      origin: null,
    });
  });

  it('refuses any non-GET/HEAD method from a foreign source before routing', async () => {
    const res = await send('PUT', '/status', { host: `evil.example:${port}` });
    expect(res.status).toBe(403);
  });

  it('reads are not affected: GET with a foreign Origin still answers', async () => {
    const res = await send('GET', '/healthz', { host: `127.0.0.1:${port}`, origin: 'http://evil.example' });
    expect(res.status).toBe(200);
  });
});

describe('mutations from the host itself keep working', () => {
  it('curl -X POST .../kill-switch -d on from a shell works and is logged with its source', async () => {
    const { stdout } = await promisify(execFile)('curl', [
      '-sS',
      '-X',
      'POST',
      `http://127.0.0.1:${port}/kill-switch`,
      '-d',
      'on',
    ]);
    expect(JSON.parse(stdout).killSwitch.effective).toBe(true);
    expect(store.killSwitch).toBe(true);
    const line = await logged('kill switch override on');
    expect(line).toMatchObject({
      method: 'POST',
      path: '/kill-switch',
      origin: null,
      host: `127.0.0.1:${port}`,
    });
    expect(line.client).toMatch(/127\.0\.0\.1/);
  });

  it('the loopback spellings localhost and [::1] of the admin port, and the own Origin, are accepted', async () => {
    for (const [host, origin] of [
      [`localhost:${port}`, undefined],
      [`[::1]:${port}`, undefined],
      [`127.0.0.1:${port}`, `http://127.0.0.1:${port}`],
      [`localhost:${port}`, `http://localhost:${port}`],
    ] as const) {
      store.setKillSwitchOverride(null);
      const res = await send('POST', '/kill-switch', { host, ...(origin ? { origin } : {}) }, 'on');
      expect(res.status, `${host} ${origin}`).toBe(200);
      expect(store.killSwitchOverride).toBe(true);
    }
  });
});

// `switchyard status` as an operator runs it: the real bin against a real admin server.
import { execFile } from 'node:child_process';
import { createServer as createHttpServer } from 'node:http';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type AdminServer, startAdmin } from '../../src/admin/server.ts';
import type { AdminStatus } from '../../src/admin/status.ts';
import { parseConfigText } from '../../src/config/load.ts';
import { ConfigStore } from '../../src/config/store.ts';
import { silentLogger } from '../../src/log.ts';

const BIN = fileURLToPath(new URL('../../bin/switchyard.js', import.meta.url));

function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, 'status', ...args], { timeout: 30_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

let admin: AdminServer;
let base: string;

beforeAll(async () => {
  const config = parseConfigText(
    `
upstream: { url: "postgres://127.0.0.1:5432" }
mappings:
  - name: users-full-name
    old: public.users
    new: public.users_v2
    key: [id]
    reads: new
    up: { id: id, full_name: "first_name || ' ' || last_name" }
    down: { id: id, first_name: "split_part(full_name, ' ', 1)" }
`,
    {},
  );
  const store = await ConfigStore.create({ config, hash: 'b'.repeat(64) }, async () => ({}));
  admin = await startAdmin(
    { host: '127.0.0.1', port: 0, tokenEnv: 'SY_TEST_ADMIN_TOKEN' },
    {
      store,
      connections: () => 3,
      draining: () => false,
      upstreamReachable: async () => true,
      startedAt: new Date(),
    },
    silentLogger,
  );
  base = `http://127.0.0.1:${admin.port}`;
});

afterAll(async () => {
  await admin.close();
});

describe('switchyard status', () => {
  it('prints a table for a person', async () => {
    const r = await cli(['--admin', base]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^switchyard \d+\.\d+\.\d+ {2}up \d+s {2}connections 3 {2}ready$/m);
    expect(r.stdout).toContain('sha256 bbbbbbbbbbbb');
    expect(r.stdout).toMatch(/^MAPPING +OLD +NEW +DUAL-WRITE +MIRRORING +READS$/m);
    expect(r.stdout).toMatch(/^users-full-name +public\.users +public\.users_v2 +on +yes +new$/m);
  });

  it('prints the /status JSON with --json', async () => {
    const r = await cli(['--admin', `${base}/`, '--json']);
    expect(r.code).toBe(0);
    const s = JSON.parse(r.stdout) as AdminStatus;
    expect(s.connections).toBe(3);
    expect(s.mappings[0]).toMatchObject({ name: 'users-full-name', reads: 'new', mirroring: true });
  });

  it('an unreachable admin is a one-line error and exit 2', async () => {
    const srv = createServer();
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const { port } = srv.address() as { port: number };
    await new Promise<void>((r) => srv.close(() => r()));
    const r = await cli(['--admin', `http://127.0.0.1:${port}`]);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe(
      `switchyard status: cannot reach admin at http://127.0.0.1:${port}: ECONNREFUSED\n`,
    );
  });

  it('asks for each connection to close once answered', async () => {
    // A keep-alive connection left in a pool keeps the process running after it has printed.
    const status = await (await fetch(`${base}/status`)).text();
    const seen: { url?: string; connection?: string }[] = [];
    const srv = createHttpServer((req, res) => {
      seen.push({ url: req.url, connection: req.headers.connection });
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(req.url === '/readyz' ? JSON.stringify({ ready: true, reasons: [] }) : status);
    });
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    try {
      const { port } = srv.address() as { port: number };
      const r = await cli(['--admin', `http://127.0.0.1:${port}`]);
      expect(r.code).toBe(0);
      expect(seen.map((s) => s.url).sort()).toEqual(['/readyz', '/status']);
      expect(seen.map((s) => s.connection)).toEqual(['close', 'close']);
    } finally {
      await new Promise<void>((r) => srv.close(() => r()));
    }
  });

  it('an unknown flag is a usage error, exit 2', async () => {
    const r = await cli(['--bogus']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('--bogus');
  });
});

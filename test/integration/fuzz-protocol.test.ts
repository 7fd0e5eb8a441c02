// Protocol fuzzing against the real CLI process: thousands of broken, mutated,
// truncated and out-of-phase client byte streams, each on its own raw socket,
// while well-behaved clients keep querying through the same proxy.
//
// Seeded and bounded: SWITCHYARD_FUZZ_SEED (default 20261124) and
// SWITCHYARD_FUZZ_SCALE (default 1, multiplies the case counts) reproduce a run.
import net from 'node:net';
import fc from 'fast-check';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeCerts } from '../support/certs.ts';
import { freshDatabase, type TestDatabase } from '../support/db.ts';
import {
  badLengthMessage,
  cancelRequest,
  type FuzzCase,
  gssencRequest,
  msg,
  mutated,
  pool,
  runCase,
  sslRequest,
  startupPacket,
  truncatedExchange,
  unknownTypeMessage,
  validExchange,
} from '../support/fuzz.ts';
import { type ProxyProcess, startProxy, startProxyProcess } from '../support/proxy.ts';

const SEED = Number(process.env.SWITCHYARD_FUZZ_SEED ?? 20261124);
const SCALE = Number(process.env.SWITCHYARD_FUZZ_SCALE ?? 1);
const STEADY_CLIENTS = 4;
const IN_FLIGHT = 12;
// Bounds on events (an error, a close), generous for a loaded machine: they tell
// a hang from a slow answer, they do not measure speed (each case's time is reported).
const REACT_MS = 10_000;
const CLOSE_MS = 15_000;

let db: TestDatabase;
let proxy: ProxyProcess;
let stopping = false;

beforeAll(async () => {
  db = await freshDatabase('fuzz');
  await db.query('CREATE TABLE fuzz_scratch (id serial PRIMARY KEY, note text)');
  // A mutated query can turn a small number into a huge one: bound every statement.
  await db.query(`ALTER DATABASE "${db.name}" SET statement_timeout = '3s'`);
  await db.query('CREATE TABLE steady (id bigserial PRIMARY KEY, client int NOT NULL, n int NOT NULL)');
  proxy = await startProxyProcess(db);
  proxy.child.on('exit', (code, signal) => {
    if (stopping) return;
    process.stderr.write(
      `switchyard proxy exited during the fuzz (code ${code}, signal ${signal}):\n${proxy.output().slice(-6000)}\n`,
    );
  });
});

afterAll(async () => {
  stopping = true;
  await proxy?.stop();
  await db?.drop();
});

async function scrape(name: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${proxy.adminPort}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line ? Number(line.split(' ')[1]) : 0;
}

async function backendsInDatabase(): Promise<number> {
  const r = await db.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM pg_stat_activity
      WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'`,
  );
  return r.rows[0].n;
}

async function until(pred: () => Promise<boolean>, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await pred()) return true;
    await new Promise((r) => setTimeout(r, 100));
  }
  return pred();
}

/** Well-behaved clients that query through the proxy until told to stop. */
function steadyClients(n: number) {
  let stop = false;
  const errors: string[] = [];
  let completed = 0;
  const inserted: number[] = new Array(n).fill(0);
  const loops = Array.from({ length: n }, async (_, id) => {
    let client: pg.Client | undefined;
    for (let i = 0; !stop; i++) {
      try {
        if (!client) {
          client = new pg.Client({
            connectionString: proxy.url(),
            application_name: 'steady',
            query_timeout: 10_000,
          });
          client.on('error', (e) => errors.push(`client ${id}: ${e.message}`));
          await client.connect();
        }
        switch (i % 4) {
          case 0:
            await client.query('SELECT 1');
            break;
          case 1:
            await client.query('INSERT INTO steady (client, n) VALUES ($1, $2)', [id, i]);
            inserted[id]++;
            break;
          case 2: {
            const r = await client.query('SELECT count(*)::int AS c FROM steady WHERE client = $1', [id]);
            if (r.rows[0].c < 1) errors.push(`client ${id}: lost its own insert`);
            break;
          }
          default:
            await client.query('BEGIN');
            await client.query('UPDATE steady SET n = n + 1 WHERE client = $1', [id]);
            await client.query('COMMIT');
        }
        completed++;
      } catch (e) {
        errors.push(`client ${id}: ${(e as Error).message}`);
        // Start over on a new connection, and give the event loop a turn.
        await client?.end().catch(() => {});
        client = undefined;
        await new Promise((r) => setTimeout(r, 200));
      }
    }
    await client?.end().catch(() => {});
  });
  return {
    errors,
    inserted,
    get completed() {
      return completed;
    },
    async stop() {
      stop = true;
      await Promise.all(loops);
    },
  };
}

/** The cases, generated from the seed: `count` of each kind (times SCALE). */
function generateCases(startup: Buffer): FuzzCase[] {
  const s = (n: number) => Math.max(1, Math.round(n * SCALE));
  const chunk = fc.option(fc.integer({ min: 1, max: 7 }), { nil: undefined, freq: 3 });
  const kinds: [string, number, fc.Arbitrary<FuzzCase>][] = [
    [
      'garbage instead of startup',
      s(200),
      fc.uint8Array({ minLength: 1, maxLength: 96 }).map((b) => ({
        kind: 'garbage instead of startup',
        handshake: false,
        payload: Buffer.from(b),
        mustReact: false,
      })),
    ],
    [
      'startup length negative/too small/huge',
      s(100),
      fc
        .tuple(
          fc.oneof(fc.integer({ min: -0x80000000, max: 7 }), fc.integer({ min: 10_005, max: 0x7fffffff })),
          fc.uint8Array({ maxLength: 24 }),
        )
        .map(([len, tail]) => {
          const b = Buffer.alloc(4);
          b.writeInt32BE(len);
          return {
            kind: 'startup length negative/too small/huge',
            handshake: false,
            payload: Buffer.concat([b, Buffer.from(tail)]),
            mustReact: true,
          };
        }),
    ],
    [
      'typed messages instead of startup',
      s(100),
      fc.tuple(validExchange, chunk).map(([ms, c]) => ({
        kind: 'typed messages instead of startup',
        handshake: false,
        payload: Buffer.concat(ms),
        chunk: c,
        mustReact: true,
      })),
    ],
    [
      'unsupported protocol version',
      s(40),
      fc.constantFrom(0, 1 << 16, 2 << 16, 4 << 16, 0x7fffffff, 1234, 80877105).map((code) => ({
        kind: 'unsupported protocol version',
        handshake: false,
        payload: startupPacket({ user: 'postgres', database: db.name }, code),
        mustReact: true,
      })),
    ],
    [
      'mutated startup packet',
      s(250),
      fc.tuple(mutated(startup), chunk).map(([b, c]) => ({
        kind: 'mutated startup packet',
        handshake: false,
        payload: b,
        chunk: c,
        mustReact: false,
      })),
    ],
    [
      'SSL/GSS request then garbage or startup',
      s(80),
      fc
        .tuple(
          fc.constantFrom(sslRequest(), gssencRequest(), Buffer.concat([sslRequest(), gssencRequest()])),
          fc.oneof(
            fc.constant(startup),
            mutated(startup),
            fc.uint8Array({ maxLength: 40 }).map((b) => Buffer.from(b)),
          ),
        )
        .map(([pre, b]) => ({
          kind: 'SSL/GSS request then garbage or startup',
          handshake: false,
          preamble: pre,
          payload: b,
          mustReact: false,
        })),
    ],
    [
      'cancel request with random key',
      s(40),
      fc.tuple(fc.integer(), fc.integer()).map(([pid, key]) => ({
        kind: 'cancel request with random key',
        handshake: false,
        payload: cancelRequest(pid, key),
        mustReact: true,
      })),
    ],
    [
      'startup pipelined with messages',
      s(60),
      fc.tuple(validExchange, chunk).map(([ms, c]) => ({
        kind: 'startup pipelined with messages',
        handshake: false,
        payload: Buffer.concat([startup, ...ms]),
        chunk: c,
        mustReact: false,
      })),
    ],
    [
      'messages sent while the upstream connects',
      s(60),
      fc
        .tuple(fc.array(validExchange, { minLength: 1, maxLength: 2 }), fc.integer({ min: 0, max: 6 }))
        .map(([ex, pause]) => ({
          kind: 'messages sent while the upstream connects',
          handshake: false,
          preamble: startup,
          pauseMs: pause,
          payload: Buffer.concat(ex.flat()),
          mustReact: false,
        })),
    ],
    [
      'valid session traffic',
      s(100),
      fc.tuple(fc.array(validExchange, { minLength: 1, maxLength: 3 }), chunk).map(([ex, c]) => ({
        kind: 'valid session traffic',
        handshake: true,
        payload: Buffer.concat(ex.flat()),
        chunk: c,
        mustReact: false,
      })),
    ],
    [
      'mutated session messages',
      s(600),
      fc.tuple(fc.array(validExchange, { minLength: 1, maxLength: 3 }), chunk).chain(([ex, c]) =>
        mutated(Buffer.concat(ex.flat())).map((b) => ({
          kind: 'mutated session messages',
          handshake: true,
          payload: b,
          chunk: c,
          mustReact: false,
        })),
      ),
    ],
    [
      'message length negative/too small/huge',
      s(120),
      fc.tuple(fc.option(validExchange, { nil: undefined }), badLengthMessage, chunk).map(([ex, bad, c]) => ({
        kind: 'message length negative/too small/huge',
        handshake: true,
        payload: Buffer.concat([...(ex ?? []).filter((m) => m[0] !== 0x58), bad]),
        chunk: c,
        mustReact: true,
      })),
    ],
    [
      'unknown message type',
      s(120),
      fc.tuple(unknownTypeMessage, chunk).map(([b, c]) => ({
        kind: 'unknown message type',
        handshake: true,
        payload: b,
        chunk: c,
        mustReact: true,
      })),
    ],
    [
      'truncated message',
      s(150),
      truncatedExchange.map((b) => ({
        kind: 'truncated message',
        handshake: true,
        payload: b,
        mustReact: false,
      })),
    ],
  ];
  const cases: FuzzCase[] = [];
  kinds.forEach(([, count, arb], i) => {
    cases.push(...fc.sample(arb, { seed: SEED + i, numRuns: count }));
  });
  // Interleave kinds so every phase of the run sees every sort of input.
  const rnd = fc.sample(fc.integer(), { seed: SEED, numRuns: cases.length });
  return cases
    .map((c, i) => ({ c, k: rnd[i] }))
    .sort((a, b) => a.k - b.k)
    .map((x) => x.c);
}

describe('pipelined startup', () => {
  // Postgres reads whatever follows the startup packet from its socket buffer,
  // so a client may send its first query without waiting for ReadyForQuery,
  // in the same segment or while the proxy is still connecting upstream.
  it.each([0, 1, 2, 4, 8])('relays a query sent %i ms after the startup packet', async (pauseMs) => {
    const startup = startupPacket({ user: 'postgres', database: db.name });
    const r = await runCase(
      proxy.port,
      {
        kind: 'pipelined',
        handshake: false,
        preamble: startup,
        pauseMs,
        payload: Buffer.concat([msg.query('SELECT 42 AS answer'), msg.terminate()]),
        // Terminate makes the server close: wait for that rather than hanging up first.
        mustReact: true,
      },
      startup,
      { reactMs: REACT_MS, closeMs: CLOSE_MS },
    );
    expect(r.errors).toEqual([]);
    expect(r.framing).toEqual([]);
    expect(r.dataRows).toEqual(['42']);
    expect(r.closed).toBe(true);
  });
});

describe('plaintext after an accepted SSLRequest', () => {
  // CVE-2021-23214 in Postgres: bytes that follow an SSLRequest in the clear,
  // before the handshake, could be injected by anyone on the path and would be
  // taken as part of the encrypted session. They are refused, as Postgres does.
  it('refuses a startup packet and a query sent in the clear right after SSLRequest', async () => {
    const certs = makeCerts();
    const tlsProxy = await startProxy(db, {
      listen: { host: '127.0.0.1', port: 0, tls: { cert: certs.cert, key: certs.key } },
    });
    try {
      const sock = net.connect({ host: '127.0.0.1', port: tlsProxy.port });
      const got: Buffer[] = [];
      sock.on('data', (d) => got.push(d));
      sock.on('error', () => {});
      await new Promise((r) => sock.once('connect', r));
      const marker = `injected_${Date.now()}`;
      sock.write(
        Buffer.concat([
          sslRequest(),
          startupPacket({ user: 'postgres', database: db.name }),
          msg.query(`CREATE TABLE ${marker} ()`),
        ]),
      );
      // Postgres closes after its error: wait for that, however long a loaded machine takes.
      const closed = await new Promise<boolean>((resolve) => {
        const t = setTimeout(() => resolve(false), CLOSE_MS);
        sock.once('close', () => {
          clearTimeout(t);
          resolve(true);
        });
      });
      sock.destroy();
      expect(closed, 'the proxy did not close after refusing the injected bytes').toBe(true);
      const reply = Buffer.concat(got);
      expect(reply.toString('latin1')).toContain('unencrypted data after SSL request');
      expect(reply.includes(Buffer.from([0x52, 0, 0, 0, 8, 0, 0, 0, 0]))).toBe(false); // no AuthenticationOk
      await new Promise((r) => setTimeout(r, 300));
      const t = await db.query('SELECT to_regclass($1) AS t', [marker]);
      expect(t.rows[0].t).toBeNull();
    } finally {
      await tlsProxy.close();
    }
  });
});

describe('protocol fuzzing through the proxy', () => {
  it('answers an error or closes the one connection, never crashes, leaks nothing, and other clients keep working', async () => {
    const startup = startupPacket({ user: 'postgres', database: db.name, application_name: 'fuzz' });
    const cases = generateCases(startup);
    const steady = steadyClients(STEADY_CLIENTS);
    await until(async () => steady.completed > 0, 5000);
    const t0 = Date.now();
    let peakBackends = 0;
    const sampler = setInterval(() => {
      backendsInDatabase().then(
        (n) => {
          peakBackends = Math.max(peakBackends, n);
        },
        () => {},
      );
    }, 500);
    let done = 0;
    const results = await pool(cases, IN_FLIGHT, async (c) => {
      const r = await runCase(proxy.port, c, startup, { reactMs: REACT_MS, closeMs: CLOSE_MS });
      if (++done % 500 === 0 && process.env.SWITCHYARD_FUZZ_PROGRESS)
        process.stderr.write(`fuzz: ${done}/${cases.length} after ${Date.now() - t0} ms\n`);
      return r;
    });
    clearInterval(sampler);
    const fuzzMs = Date.now() - t0;
    const completedDuringFuzz = steady.completed;
    await steady.stop();

    const problems: string[] = [];
    const byKind = new Map<string, { n: number; error: number; closed: number; maxMs: number }>();
    const codes = new Map<string, number>();
    results.forEach((r, i) => {
      const c = cases[i];
      const k = byKind.get(c.kind) ?? { n: 0, error: 0, closed: 0, maxMs: 0 };
      k.n++;
      k.maxMs = Math.max(k.maxMs, Math.round(r.ms));
      if (r.errors.length > 0) k.error++;
      else k.closed++;
      byKind.set(c.kind, k);
      for (const e of r.errors) codes.set(e.code, (codes.get(e.code) ?? 0) + 1);
      const where = `${c.kind} #${i} payload=${c.payload.toString('hex').slice(0, 200)}${c.chunk ? ` chunk=${c.chunk}` : ''}`;
      if (!r.closed) problems.push(`not closed after the client hung up: ${where}`);
      if (c.mustReact && r.reacted === 'none') problems.push(`no error and no close: ${where}`);
      if (c.handshake && !r.handshakeOk) problems.push(`handshake failed: ${where}`);
      if (r.framing.length > 0) problems.push(`malformed reply (${r.framing.join(', ')}): ${where}`);
      const internal = r.errors.find((e) => e.code === 'XX000' && e.message.startsWith('switchyard'));
      if (internal) problems.push(`internal proxy error "${internal.message}": ${where}`);
    });

    const connectionsGaugeZero = await until(
      async () => (await scrape('switchyard_client_connections')) === 0,
      5000,
    );
    const backendsZero = await until(async () => (await backendsInDatabase()) === 0, 5000);
    const logErrors = proxy
      .output()
      .split('\n')
      .filter((l) => /"level":(50|60)/.test(l));

    console.log(
      JSON.stringify({
        seed: SEED,
        cases: cases.length,
        fuzzSeconds: fuzzMs / 1000,
        steadyQueriesDuringFuzz: completedDuringFuzz,
        steadyErrors: steady.errors.length,
        peakBackends,
        byKind: Object.fromEntries(byKind),
        errorCodes: Object.fromEntries(codes),
      }),
    );

    expect(problems.slice(0, 20)).toEqual([]);
    expect(proxy.child.exitCode).toBeNull();
    expect(logErrors.slice(0, 5)).toEqual([]);
    expect(steady.errors.slice(0, 10)).toEqual([]);
    expect(completedDuringFuzz).toBeGreaterThan(0);
    // Every insert the steady clients saw succeed is stored.
    const stored = await db.query<{ client: number; n: number }>(
      'SELECT client, count(*)::int AS n FROM steady GROUP BY client ORDER BY client',
    );
    expect(stored.rows.map((r) => r.n)).toEqual(steady.inserted);
    expect(connectionsGaugeZero).toBe(true);
    expect(backendsZero).toBe(true);
    // The proxy still serves a fresh client after all of it.
    const after = new pg.Client({ connectionString: proxy.url() });
    await after.connect();
    expect((await after.query('SELECT 41 + 1 AS x')).rows[0].x).toBe(42);
    await after.end();
  }, 180_000);
});

// The admin HTTP endpoint: what Kubernetes probes, Prometheus scrapes, and an
// operator uses during an incident (the kill switch). Plain node:http: five
// routes do not need a framework.
import { createHash, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { isIP, Socket } from 'node:net';
import type { ConfigStore } from '../config/store.ts';
import type { Logger } from '../log.ts';
import { metrics, registry } from '../metrics.ts';
import { VERSION } from '../version.ts';
import { refuseMutationSource } from './mutation-source.ts';
import type {
  AdminStatus,
  ControlChange,
  FleetView,
  Layered,
  RoundTripStatus,
  SwitchLayers,
  SwitchSource,
} from './status.ts';

/** What the admin endpoint uses of a ConfigStore, whatever its compiled rules type. */
export type AdminStore = Pick<
  ConfigStore<unknown>,
  'current' | 'killSwitch' | 'killSwitchOverride' | 'setKillSwitchOverride'
>;

export interface AdminDeps {
  store: AdminStore;
  /** Open client connections. */
  connections(): number;
  draining(): boolean;
  /** A TCP connect to the upstream with a short timeout. */
  upstreamReachable(): Promise<boolean>;
  /** The round-trip check of mappings with dualWrite: both, by mapping name. */
  roundTrips?(): Record<string, RoundTripStatus>;
  /** The most frequent recent statement shapes on mapped tables (`switchyard plans` reads them). */
  shapes?(): unknown[];
  startedAt: Date;
  /** The control connection, when the sidecar follows the fleet's control table. */
  fleet?(): FleetView;
}

export interface AdminOptions {
  host: string;
  port: number;
  /** Name of the environment variable holding the bearer token for mutating endpoints. */
  tokenEnv: string;
  /**
   * Demand the token even on loopback, for hosts where 127.0.0.1 is shared with
   * processes that must not flip switches. Off by default: in a pod, loopback is the pod.
   */
  requireToken?: boolean;
}

export interface AdminServer {
  port: number;
  close(): Promise<void>;
}

/** A readiness probe must answer before the kubelet's own timeout (1s by default). */
const READY_CHECK_TIMEOUT_MS = 900;
const MAX_BODY_BYTES = 4096;
const READY_REFRESH_MS = 10_000;

/** 127.0.0.0/8, ::1 and localhost: only processes on this host can reach the port. */
export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  if (h === 'localhost' || h === '::1') return true;
  const v4 = h.startsWith('::ffff:') ? h.slice(7) : h;
  return isIP(v4) === 4 && v4.startsWith('127.');
}

/** True when a TCP connection to host:port opens within timeoutMs. */
export function probeTcp(host: string, port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = new Socket();
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('error', () => done(false));
    socket.connect(port, host, () => done(true));
  });
}

function layer<T>(file: T, control: ControlChange<T> | undefined, effective: T): Layered<T> {
  const source: SwitchSource = control ? 'control' : 'file';
  return { file, control: control ?? null, effective, source };
}

/** Each switch as the file, the control table and the local override say it, and which wins. */
export function switchLayers(store: AdminStore): SwitchLayers {
  const snap = store.current;
  const fleet = snap.fleet;
  const files = new Map(snap.file.mappings.map((m) => [m.name, m]));
  const ks = layer(snap.file.killSwitch, fleet.killSwitch, store.killSwitch);
  if (store.killSwitchOverride !== null) ks.source = 'override';
  return {
    precedence: ['override', 'control', 'file'],
    killSwitch: { ...ks, override: store.killSwitchOverride },
    mappings: snap.config.mappings.map((m) => {
      const f = files.get(m.name) ?? m;
      const s = fleet.mappings[m.name];
      const dw = s?.dualWrite;
      const dwValue = (v: 'on' | 'off' | 'both') => (v === 'both' ? 'both' : v === 'on');
      return {
        name: m.name,
        reads: layer(f.reads, s?.reads, m.reads),
        dualWrite: layer<boolean | 'both'>(
          f.dualWrite,
          dw ? { ...dw, value: dwValue(dw.value) } : undefined,
          m.dualWrite,
        ),
      };
    }),
  };
}

export function buildStatus(deps: AdminDeps, now = new Date()): AdminStatus {
  const snap = deps.store.current;
  const c = snap.config;
  const effective = deps.store.killSwitch;
  const trips = deps.roundTrips?.() ?? {};
  return {
    version: VERSION,
    config: {
      version: snap.version,
      hash: snap.hash,
      path: snap.path ?? null,
      loadedAt: snap.loadedAt.toISOString(),
    },
    killSwitch: { config: snap.file.killSwitch, override: deps.store.killSwitchOverride, effective },
    onUnmirrorable: c.onUnmirrorable,
    mappings: c.mappings.map((m) => ({
      name: m.name,
      old: m.old,
      new: m.new,
      dualWrite: m.dualWrite,
      reads: m.reads,
      mirroring: m.dualWrite !== false && !effective,
      ...(trips[m.name] ? { roundTrip: trips[m.name] } : {}),
    })),
    switches: switchLayers(deps.store),
    fleet: deps.fleet?.() ?? { enabled: false },
    connections: deps.connections(),
    draining: deps.draining(),
    startedAt: deps.startedAt.toISOString(),
    uptimeSeconds: Math.max(0, Math.floor((now.getTime() - deps.startedAt.getTime()) / 1000)),
  };
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

/** on / off / clear from `?state=`, a bare `?on`, a text body, `state=on`, or JSON {"state": "on"}. */
export function parseKillSwitchRequest(query: URLSearchParams, body: string): boolean | null {
  const candidates: unknown[] = [];
  if (query.has('state')) candidates.push(query.get('state'));
  for (const k of ['on', 'off', 'clear']) if (query.has(k) && query.get(k) === '') candidates.push(k);
  const text = body.trim();
  if (text.startsWith('{')) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      throw new HttpError(400, 'body is not valid JSON');
    }
    candidates.push((parsed as { state?: unknown }).state);
  } else if (text.startsWith('state=')) {
    candidates.push(new URLSearchParams(text).get('state'));
  } else if (text !== '') {
    candidates.push(text);
  }
  if (candidates.length === 0) {
    throw new HttpError(400, 'say on, off or clear (body, ?state=, or JSON {"state":"on"})');
  }
  const values = new Set(candidates.map((c) => (typeof c === 'string' ? c.toLowerCase() : c)));
  if (values.size > 1) throw new HttpError(400, 'conflicting kill switch states in one request');
  const [v] = values;
  if (v === 'on' || v === true) return true;
  if (v === 'off' || v === false) return false;
  if (v === 'clear' || v === null) return null;
  throw new HttpError(400, `unknown kill switch state ${JSON.stringify(v)}: use on, off or clear`);
}

function sameToken(given: string, expected: string): boolean {
  // Hashing first gives equal lengths, so timingSafeEqual never throws and leaks no length.
  const a = createHash('sha256').update(given).digest();
  const b = createHash('sha256').update(expected).digest();
  return timingSafeEqual(a, b);
}

function authorizeMutation(req: IncomingMessage, opts: AdminOptions): void {
  if (!opts.requireToken && isLoopbackHost(opts.host)) return;
  const expected = process.env[opts.tokenEnv];
  if (!expected) {
    throw new HttpError(
      403,
      `mutating endpoints are disabled: ${
        opts.requireToken ? 'a token is required' : `the admin port listens on ${opts.host} beyond loopback`
      } and ${opts.tokenEnv} is not set; set it and send Authorization: Bearer <token>`,
    );
  }
  const m = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? '');
  if (!m || !sameToken(m[1], expected)) {
    throw new HttpError(401, `Authorization: Bearer <token from ${opts.tokenEnv}> required`, {
      'www-authenticate': 'Bearer realm="switchyard"',
    });
  }
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      // Keep reading but stop buffering: closing mid-upload would leave the
      // client with a reset instead of the 413 that explains it.
      if (size <= MAX_BODY_BYTES) chunks.push(chunk);
    });
    req.on('end', () => {
      if (size > MAX_BODY_BYTES) reject(new HttpError(413, `body larger than ${MAX_BODY_BYTES} bytes`));
      else resolve(Buffer.concat(chunks).toString('utf8'));
    });
    req.on('error', reject);
  });
}

function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) {
  const text = `${JSON.stringify(body, null, 2)}\n`;
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'cache-control': 'no-store',
    ...headers,
  });
  res.end(text);
}

/**
 * What the control connection adds to /readyz. Never a reason to be unready:
 * the sidecar serves correctly under the switches it holds, and a control
 * table outage must not take every pod of the fleet out of service at once.
 */
function fleetDetail(f: FleetView | undefined): string[] {
  if (!f?.enabled) return [];
  const out: string[] = [];
  if (!f.connected)
    out.push(
      `control table unreachable since ${f.errorSince ?? '?'} (${f.error ?? 'not connected yet'}); holding switches at control version ${f.appliedVersion ?? 0}`,
    );
  if (f.applyError)
    out.push(`latest control state refused (${f.applyError}); holding version ${f.appliedVersion ?? 0}`);
  return out;
}

async function readiness(deps: AdminDeps): Promise<{ ready: boolean; reasons: string[]; detail: string[] }> {
  // No config check here: a ConfigStore exists only once a config passed validation
  // and compilation, and a refused reload leaves the previous one serving.
  const reasons: string[] = [];
  if (deps.draining()) reasons.push('draining: shutting down');
  let timer: NodeJS.Timeout | undefined;
  const reachable = await Promise.race([
    deps.upstreamReachable().catch(() => false),
    new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(false), READY_CHECK_TIMEOUT_MS);
    }),
  ]).finally(() => clearTimeout(timer));
  if (!reachable) reasons.push('upstream unreachable');
  return { ready: reasons.length === 0, reasons, detail: fleetDetail(deps.fleet?.()) };
}

type Handler = (req: IncomingMessage, res: ServerResponse, url: URL) => Promise<void>;

function isMutation(req: IncomingMessage): boolean {
  return req.method !== 'GET' && req.method !== 'HEAD';
}

/** Where a request came from, for the log line of every accepted or refused mutation. */
function source(req: IncomingMessage) {
  return {
    method: req.method,
    path: req.url,
    client: req.socket.remoteAddress,
    origin: req.headers.origin ?? null,
    host: req.headers.host ?? null,
  };
}

export async function startAdmin(opts: AdminOptions, deps: AdminDeps, logger: Logger): Promise<AdminServer> {
  const log = logger.child({ component: 'admin' });

  const routes: Record<string, { methods: string[]; handler: Handler }> = {
    '/metrics': {
      methods: ['GET', 'HEAD'],
      handler: async (_req, res) => {
        const body = await registry.metrics();
        res.writeHead(200, { 'content-type': registry.contentType, 'cache-control': 'no-store' });
        res.end(body);
      },
    },
    '/healthz': {
      methods: ['GET', 'HEAD'],
      handler: async (_req, res) => sendJson(res, 200, { status: 'ok' }),
    },
    '/readyz': {
      methods: ['GET', 'HEAD'],
      handler: async (_req, res) => {
        const r = await readiness(deps);
        metrics.ready.set(r.ready ? 1 : 0);
        const detail = r.detail.length > 0 ? { detail: r.detail } : {};
        if (r.ready) sendJson(res, 200, { ready: true, ...detail });
        else
          sendJson(res, 503, { ready: false, reason: r.reasons.join('; '), reasons: r.reasons, ...detail });
      },
    },
    '/status': {
      methods: ['GET', 'HEAD'],
      handler: async (_req, res) => sendJson(res, 200, buildStatus(deps)),
    },
    '/shapes': {
      methods: ['GET', 'HEAD'],
      handler: async (_req, res) => sendJson(res, 200, { shapes: deps.shapes?.() ?? [] }),
    },
    '/kill-switch': {
      methods: ['POST'],
      handler: async (req, res, url) => {
        authorizeMutation(req, opts);
        const value = parseKillSwitchRequest(url.searchParams, await readBody(req));
        const before = deps.store.killSwitch;
        deps.store.setKillSwitchOverride(value);
        const status = buildStatus(deps);
        log.warn(
          {
            override: value,
            killSwitch: status.killSwitch.effective,
            was: before,
            configVersion: status.config.version,
            ...source(req),
          },
          `kill switch override ${value === null ? 'cleared' : value ? 'on' : 'off'}: mirroring ${
            status.killSwitch.effective ? 'stopped' : 'active'
          }`,
        );
        sendJson(res, 200, { killSwitch: status.killSwitch, configVersion: status.config.version });
      },
    },
  };

  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://admin');
    const path = url.pathname.length > 1 ? url.pathname.replace(/\/+$/, '') : url.pathname;
    const route = routes[path];
    const work = async () => {
      if (isMutation(req)) {
        const refused = refuseMutationSource(
          { origin: req.headers.origin, host: req.headers.host, localAddress: req.socket.localAddress },
          { host: opts.host, port },
        );
        if (refused) throw new HttpError(403, refused);
      }
      if (!route) throw new HttpError(404, `no such endpoint ${path}`);
      if (!route.methods.includes(req.method ?? '')) {
        throw new HttpError(405, `${req.method} not allowed on ${path}`, { allow: route.methods.join(', ') });
      }
      await route.handler(req, res, url);
    };
    work().catch((e: unknown) => {
      if (res.headersSent) {
        res.destroy();
        return;
      }
      if (e instanceof HttpError) {
        if (isMutation(req))
          log.warn({ ...source(req), status: e.status, reason: e.message }, 'admin mutation refused');
        sendJson(res, e.status, { error: e.message }, e.headers);
        return;
      }
      log.error({ err: e, path }, 'admin request failed');
      sendJson(res, 500, { error: (e as Error).message });
    });
  });
  // Probes and scrapes are short; an idle keep-alive connection must not delay close().
  server.keepAliveTimeout = 5_000;

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : opts.port;
  log.info(
    { host: opts.host, port, mutationsNeedToken: opts.requireToken || !isLoopbackHost(opts.host) },
    `admin listening on ${opts.host}:${port}`,
  );

  // Keep switchyard_ready current where nothing probes /readyz (plain Docker, a VM).
  const refreshReady = () =>
    void readiness(deps).then((r) => {
      if (!closed) metrics.ready.set(r.ready ? 1 : 0);
    });
  let closed = false;
  refreshReady();
  const readyTimer = setInterval(refreshReady, READY_REFRESH_MS);
  readyTimer.unref();

  return {
    port,
    close: () =>
      new Promise<void>((resolve, reject) => {
        closed = true;
        clearInterval(readyTimer);
        metrics.ready.set(0);
        server.close((err) => (err ? reject(err) : resolve()));
        server.closeAllConnections();
      }),
  };
}

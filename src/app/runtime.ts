// Everything `switchyard proxy` runs, wired together: config store, listener,
// admin endpoint, reload watch. The CLI, the demo and the tests start it the same way.
import type { Logger } from 'pino';
import { type AdminServer, startAdmin } from '../admin/server.ts';
import type { LoadedConfig } from '../config/load.ts';
import { ConfigStore } from '../config/store.ts';
import { type Reloader, watchConfig } from '../config/watch.ts';
import type { ControlFollower } from '../fleet/follower.ts';
import { type FleetOptions, followFleet } from '../fleet/sidecar.ts';
import { upstreamClientConfig } from '../pg/connect.ts';
import { type CompiledRules, rulesCompiler } from '../proxy/rules-adapter.ts';
import { type ListenAddress, ProxyServer } from '../proxy/server.ts';
import { shapeStats } from '../proxy/shape-stats.ts';
import { BUN_SOCKETS, bunSockets } from '../transport/bun.ts';
import { NODE_SOCKETS } from '../transport/net.ts';
import { clientTls, upstreamTls } from '../transport/tls.ts';
import type { SocketLayer } from '../transport/transport.ts';
import { RoundTripWatch } from './round-trip-watch.ts';
import { ShadowReads } from './shadow-reads.ts';

export interface RuntimeOptions {
  loaded: LoadedConfig;
  logger: Logger;
  /** Override the config's listen address (tests use port 0). */
  listen?: { host: string; port: number };
  /** Admin endpoint: the config's address by default; false to run without one. */
  admin?: false | { host: string; port: number };
  /** Watch the config file and reload on SIGHUP (needs loaded.path). */
  watch?: boolean;
  /** How this sidecar appears in the fleet (when the config's fleet.enabled). */
  fleet?: FleetOptions;
}

export interface Runtime {
  store: ConfigStore<CompiledRules>;
  proxy: ProxyServer;
  address: ListenAddress;
  admin?: AdminServer;
  reloader?: Reloader;
  /** The control connection, when the config's fleet.enabled. */
  fleet?: ControlFollower;
  /** Shadow reads of mappings with shadowReads. */
  shadow: ShadowReads;
  startedAt: Date;
  /** Graceful: drain sessions up to the timeout (or until `abort` resolves), then stop everything. */
  shutdown(drainTimeoutMs?: number, abort?: Promise<void>): Promise<void>;
}

/**
 * Bun's native sockets where the process runs on Bun and the side is plain
 * TCP; node:net otherwise (TLS is taken up in-band through node:tls).
 * SWITCHYARD_SOCKETS=node forces node:net (comparisons).
 */
function socketLayer(clientTls: boolean, upstreamTls: boolean): SocketLayer {
  if (!bunSockets || process.env.SWITCHYARD_SOCKETS === 'node') return NODE_SOCKETS;
  return {
    name: `${clientTls ? 'node:net' : 'bun'}/${upstreamTls ? 'node:net' : 'bun'}`,
    listen: clientTls ? NODE_SOCKETS.listen : BUN_SOCKETS.listen,
    connect: upstreamTls ? NODE_SOCKETS.connect : BUN_SOCKETS.connect,
  };
}

export async function startRuntime(opts: RuntimeOptions): Promise<Runtime> {
  const { logger } = opts;
  // Shadow reads connect with the config's own credentials, like the catalog check.
  const shadow = new ShadowReads(() => upstreamClientConfig(store.current.config), logger);
  const store: Runtime['store'] = await ConfigStore.create(opts.loaded, rulesCompiler(shadow));
  const config = store.current.config;
  const fleet = config.fleet.enabled ? followFleet(store, config, logger, opts.fleet) : undefined;
  // Start under the fleet's switches, not the file's: a pod started after a
  // flip must not serve a moment of the old state. Bounded: an unreachable
  // control table starts it under the file's, and says so.
  await fleet?.firstAttempt;
  try {
    return await serve(opts, store, fleet, shadow);
  } catch (e) {
    await fleet?.close();
    await shadow.close();
    throw e;
  }
}

async function serve(
  opts: RuntimeOptions,
  store: Runtime['store'],
  fleet: ControlFollower | undefined,
  shadow: ShadowReads,
): Promise<Runtime> {
  const { logger } = opts;
  const config = store.current.config;
  const proxy = new ProxyServer({
    store,
    logger,
    listen: opts.listen,
    tls: config.listen.tls ? clientTls(config.listen.tls) : undefined,
    upstreamSecure: upstreamTls(config.upstream),
    sockets: socketLayer(!!config.listen.tls, config.upstream.sslmode !== 'disable'),
  });
  const address = await proxy.listen();
  const startedAt = new Date();
  const roundTrips = new RoundTripWatch(store, logger);
  let admin: AdminServer | undefined;
  if (opts.admin !== false) {
    const a = opts.admin ?? config.admin;
    admin = await startAdmin(
      { host: a.host, port: a.port, tokenEnv: config.admin.tokenEnv },
      {
        store,
        connections: () => proxy.connections,
        draining: () => proxy.isDraining,
        upstreamReachable: () => proxy.upstreamReachable(800),
        roundTrips: () => roundTrips.statuses(),
        shapes: () => shapeStats.top(),
        startedAt,
        fleet: fleet ? () => fleet.view() : undefined,
      },
      logger,
    );
  }
  const reloader = opts.watch && opts.loaded.path ? watchConfig(opts.loaded.path, store, logger) : undefined;
  let stopping: Promise<void> | undefined;
  return {
    store,
    proxy,
    address,
    admin,
    reloader,
    fleet,
    shadow,
    startedAt,
    shutdown(drainTimeoutMs = 0, abort?: Promise<void>) {
      stopping ??= (async () => {
        reloader?.close();
        roundTrips.close();
        await proxy.drain(drainTimeoutMs, abort);
        await proxy.close();
        await admin?.close();
        await fleet?.close();
        await shadow.close();
      })();
      return stopping;
    },
  };
}

// A sidecar joins the fleet: one control connection that follows the control
// table into the config store, reporting this sidecar's identity and overrides.
import type { Config } from '../config/schema.ts';
import type { ConfigStore } from '../config/store.ts';
import type { Logger } from '../log.ts';
import { upstreamClientConfig } from '../pg/connect.ts';
import { ControlFollower } from './follower.ts';
import { sidecarIdentity } from './sidecars.ts';

export interface FleetOptions {
  /** The name in the fleet list; POD_NAME, HOSTNAME or the host name by default. */
  name?: string;
  /** First reconnect delay (doubles up to 10 s). */
  minBackoffMs?: number;
}

export function followFleet(
  store: Pick<ConfigStore<unknown>, 'applyFleet' | 'killSwitchOverride' | 'on'>,
  config: Config,
  logger: Logger,
  opts: FleetOptions = {},
): ControlFollower {
  const who = sidecarIdentity();
  if (opts.name) who.name = opts.name;
  const follower = new ControlFollower({
    clientConfig: upstreamClientConfig(config),
    who,
    pollMs: config.fleet.pollMs,
    heartbeatMs: config.fleet.heartbeatMs,
    queryTimeoutMs: config.upstream.connectTimeoutMs,
    minBackoffMs: opts.minBackoffMs,
    apply: (fleet) => store.applyFleet(fleet),
    localOverrides: () =>
      store.killSwitchOverride === null ? {} : { killSwitch: store.killSwitchOverride ? 'on' : 'off' },
    logger: logger.child({ component: 'fleet' }),
  });
  follower.start();
  // A local override shows in the fleet list at once, not at the next heartbeat.
  let override = store.killSwitchOverride;
  store.on('change', () => {
    if (store.killSwitchOverride === override) return;
    override = store.killSwitchOverride;
    follower.report();
  });
  return follower;
}

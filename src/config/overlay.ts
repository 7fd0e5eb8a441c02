// The switches a fleet shares through the control table, laid over the file's
// config. The file declares the mappings and their default switches; the
// control table, where it says something, wins over the file.
import { ConfigError } from './load.ts';
import { type Config, readsNewPercent } from './schema.ts';

export type DualWriteSetting = 'on' | 'off' | 'both';
export type ReadsSetting = 'old' | 'new';

/** One switch's latest change in the control table. */
export interface SwitchChange<T> {
  value: T;
  version: number;
  by: string;
  at: string;
  reason: string | null;
}

export interface FleetSwitches {
  /** Highest change version in the control table (0: no change yet). */
  version: number;
  killSwitch?: SwitchChange<boolean>;
  mappings: Record<
    string,
    { reads?: SwitchChange<ReadsSetting>; dualWrite?: SwitchChange<DualWriteSetting> }
  >;
}

export const NO_FLEET_SWITCHES: FleetSwitches = { version: 0, mappings: {} };

/** The config value a control-table dualWrite setting stands for. */
export function dualWriteConfigValue(v: DualWriteSetting): Config['mappings'][number]['dualWrite'] {
  if (v === 'on') return true;
  if (v === 'off') return false;
  return 'both';
}

/**
 * The file's config with the control table's switches in place. Switches for
 * mappings the file does not declare are ignored: a sidecar still running an
 * older file simply has nothing to switch for them.
 */
export function overlaySwitches(file: Config, fleet: FleetSwitches): Config {
  const mappings = file.mappings.map((m) => {
    const s = fleet.mappings[m.name];
    if (!s) return m;
    const reads = s.reads?.value ?? m.reads;
    if (readsNewPercent(reads) > 0 && !m.down) {
      throw new ConfigError(
        `mapping ${m.name}: the control table says reads new, but the config gives it no down expressions`,
      );
    }
    const dualWrite = s.dualWrite ? dualWriteConfigValue(s.dualWrite.value) : m.dualWrite;
    if (dualWrite === 'both' && !m.down) {
      throw new ConfigError(
        `mapping ${m.name}: the control table says dualWrite both, but the config gives it no down expressions`,
      );
    }
    return { ...m, reads, dualWrite };
  });
  return { ...file, killSwitch: fleet.killSwitch?.value ?? file.killSwitch, mappings };
}

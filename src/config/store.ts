// The config in force and its version. A new config is validated whole
// (schema, then the compile step against the live catalog) before it replaces
// the old one; on any failure the old one keeps serving.
//
// What is in force is layered: the file's config, the fleet's switches from
// the control table over it, and the local kill switch override over both.
import { EventEmitter } from 'node:events';
import { metrics } from '../metrics.ts';
import type { LoadedConfig } from './load.ts';
import { type FleetSwitches, NO_FLEET_SWITCHES, overlaySwitches } from './overlay.ts';
import { type Config, readsNewPercent, readsText } from './schema.ts';

export interface Snapshot<R = unknown> {
  version: number;
  /** The config in force: the file's, with the fleet's switches laid over it. */
  config: Config;
  /** The config as the file says it. */
  file: Config;
  /** The control table's switches this snapshot applies. */
  fleet: FleetSwitches;
  hash: string;
  path?: string;
  loadedAt: Date;
  /** Whatever the compile step produced (the compiled rules). */
  rules: R;
}

export type Compile<R> = (config: Config) => Promise<R>;

export class ConfigStore<R = unknown> extends EventEmitter {
  private snap: Snapshot<R>;
  /** Runtime kill switch override (admin API): null = follow the config. */
  killSwitchOverride: boolean | null = null;
  private queue: Promise<unknown> = Promise.resolve();

  private constructor(
    initial: Snapshot<R>,
    private readonly compile: Compile<R>,
  ) {
    super();
    this.snap = initial;
    this.publishGauges();
  }

  static async create<R>(loaded: LoadedConfig, compile: Compile<R>): Promise<ConfigStore<R>> {
    const rules = await compile(loaded.config);
    return new ConfigStore<R>(
      {
        version: 1,
        config: loaded.config,
        file: loaded.config,
        fleet: NO_FLEET_SWITCHES,
        hash: loaded.hash,
        path: loaded.path,
        loadedAt: new Date(),
        rules,
      },
      compile,
    );
  }

  get current(): Snapshot<R> {
    return this.snap;
  }

  /** The kill switch in force: the runtime override wins over the config. */
  get killSwitch(): boolean {
    return this.killSwitchOverride ?? this.snap.config.killSwitch;
  }

  /** Validates and installs a new config; throws (and counts) on failure, leaving the old one. */
  apply(loaded: LoadedConfig): Promise<{ version: number; changes: string[] }> {
    return this.serially(async () => {
      let config: Config;
      let rules: R;
      try {
        config = overlaySwitches(loaded.config, this.snap.fleet);
        rules = await this.compile(config);
      } catch (e) {
        metrics.configReloads.inc({ result: 'error' });
        throw e;
      }
      metrics.configReloads.inc({ result: 'ok' });
      return this.install(config, rules, {
        file: loaded.config,
        hash: loaded.hash,
        path: loaded.path ?? this.snap.path,
        loadedAt: new Date(),
      });
    });
  }

  /**
   * Installs the control table's switches over the file's config. Throws,
   * leaving the state in force, when they cannot apply (reads new on a
   * mapping without down expressions, a value this version does not know).
   */
  applyFleet(fleet: FleetSwitches): Promise<{ version: number; changes: string[] }> {
    return this.serially(async () => {
      const config = overlaySwitches(this.snap.file, fleet);
      const rules = await this.compile(config);
      return this.install(config, rules, { fleet });
    });
  }

  /** Reloads and fleet changes both compile asynchronously; one at a time keeps either from undoing the other. */
  private serially<T>(work: () => Promise<T>): Promise<T> {
    const run = this.queue.then(work, work);
    this.queue = run.catch(() => {});
    return run;
  }

  private install(config: Config, rules: R, fields: Partial<Snapshot<R>>) {
    const prev = this.snap;
    this.snap = { ...prev, ...fields, config, rules, version: prev.version + 1 };
    const changes = describeChanges(prev.config, config);
    this.publishGauges();
    this.emit('change', this.snap, changes);
    return { version: this.snap.version, changes };
  }

  setKillSwitchOverride(value: boolean | null): void {
    this.killSwitchOverride = value;
    // A new version makes every prepared statement re-plan at its next execution.
    this.snap = { ...this.snap, version: this.snap.version + 1 };
    this.publishGauges();
    this.emit('change', this.snap, [
      `kill switch override ${value === null ? 'cleared' : value ? 'on' : 'off'}`,
    ]);
  }

  private publishGauges(): void {
    const c = this.snap.config;
    metrics.configVersion.set(this.snap.version);
    metrics.killSwitch.set(this.killSwitch ? 1 : 0);
    metrics.killSwitchOverride.set(this.killSwitchOverride === null ? -1 : this.killSwitchOverride ? 1 : 0);
    metrics.dualWrite.reset();
    metrics.readsNew.reset();
    for (const m of c.mappings) {
      metrics.dualWrite.set({ mapping: m.name }, m.dualWrite !== false && !this.killSwitch ? 1 : 0);
      metrics.readsNew.set({ mapping: m.name }, readsNewPercent(m.reads) / 100);
    }
    const fleet = this.snap.fleet;
    metrics.fleetVersion.set(fleet.version);
    metrics.fleetMappingVersion.reset();
    for (const m of c.mappings) {
      const s = fleet.mappings[m.name];
      const v = Math.max(s?.reads?.version ?? 0, s?.dualWrite?.version ?? 0, fleet.killSwitch?.version ?? 0);
      metrics.fleetMappingVersion.set({ mapping: m.name }, v);
    }
  }
}

/** Human-readable list of switch changes between two configs, for the reload log line. */
export function describeChanges(a: Config, b: Config): string[] {
  const out: string[] = [];
  if (a.killSwitch !== b.killSwitch) out.push(`killSwitch ${a.killSwitch} -> ${b.killSwitch}`);
  if (a.onUnmirrorable !== b.onUnmirrorable)
    out.push(`onUnmirrorable ${a.onUnmirrorable} -> ${b.onUnmirrorable}`);
  const before = new Map(a.mappings.map((m) => [m.name, m]));
  const after = new Map(b.mappings.map((m) => [m.name, m]));
  for (const [name, m] of after) {
    const p = before.get(name);
    if (!p) {
      out.push(`mapping ${name} added (dualWrite ${m.dualWrite}, reads ${readsText(m.reads)})`);
      continue;
    }
    if (p.dualWrite !== m.dualWrite) out.push(`mapping ${name} dualWrite ${p.dualWrite} -> ${m.dualWrite}`);
    if (readsText(p.reads) !== readsText(m.reads)) {
      out.push(`mapping ${name} reads ${readsText(p.reads)} -> ${readsText(m.reads)}`);
    }
    if (
      JSON.stringify([p.old, p.new, p.key, p.up, p.down]) !==
      JSON.stringify([m.old, m.new, m.key, m.up, m.down])
    ) {
      out.push(`mapping ${name} definition changed`);
    }
  }
  for (const name of before.keys()) if (!after.has(name)) out.push(`mapping ${name} removed`);
  return out;
}

// The layers of a switch: the file, the control table over it, the local
// override over both; and how /status and `switchyard status` show them.
import { describe, expect, it } from 'vitest';
import { switchLayers } from '../../src/admin/server.ts';
import { type AdminStatus, renderStatus } from '../../src/admin/status.ts';
import { parseConfigText } from '../../src/config/load.ts';
import { type FleetSwitches, overlaySwitches } from '../../src/config/overlay.ts';
import { ConfigStore } from '../../src/config/store.ts';

const FILE = parseConfigText(`
upstream: { host: 127.0.0.1, port: 5432 }
killSwitch: false
mappings:
  - { name: a, old: a, new: a2, key: [id], up: { id: id }, down: { id: id }, reads: old, dualWrite: true }
  - { name: b, old: b, new: b2, key: [id], up: { id: id }, reads: old, dualWrite: true }
`);

const change = <T>(value: T, version: number) => ({
  value,
  version,
  by: 'alice',
  at: '2026-12-02T00:00:00.000Z',
  reason: 'why',
});

describe('overlaySwitches', () => {
  it('takes the control table where it says something and the file elsewhere', () => {
    const fleet: FleetSwitches = {
      version: 3,
      killSwitch: change(true, 3),
      mappings: {
        a: { reads: change('new', 1), dualWrite: change('off', 2) },
        gone: { reads: change('new', 1) },
      },
    };
    const c = overlaySwitches(FILE, fleet);
    expect(c.killSwitch).toBe(true);
    expect(c.mappings.map((m) => [m.name, m.reads, m.dualWrite])).toEqual([
      ['a', 'new', false],
      ['b', 'old', true],
    ]);
    expect(FILE.mappings[0].reads).toBe('old');
  });

  it('refuses reads new on a mapping the file gives no down expressions', () => {
    expect(() => overlaySwitches(FILE, { version: 1, mappings: { b: { reads: change('new', 1) } } })).toThrow(
      'mapping b: the control table says reads new, but the config gives it no down expressions',
    );
  });

  it('takes dualWrite both where the config gives down expressions, and refuses it where not', () => {
    const both = (name: string) =>
      overlaySwitches(FILE, { version: 1, mappings: { [name]: { dualWrite: change('both', 1) } } });
    expect(both('a').mappings[0].dualWrite).toBe('both');
    expect(() => both('b')).toThrow(
      'mapping b: the control table says dualWrite both, but the config gives it no down expressions',
    );
  });
});

describe('switch layers in the store and /status', () => {
  it('override > control table > file, with a new config version at each step', async () => {
    const store = await ConfigStore.create({ config: FILE, hash: 'h' }, async () => ({}));
    const v0 = store.current.version;
    await store.applyFleet({
      version: 4,
      killSwitch: change(true, 4),
      mappings: { a: { reads: change('new', 2) } },
    });
    expect(store.current.version).toBe(v0 + 1);
    let l = switchLayers(store);
    expect(l.killSwitch).toMatchObject({ file: false, effective: true, source: 'control', override: null });
    expect(l.mappings[0].reads).toMatchObject({ file: 'old', effective: 'new', source: 'control' });
    expect(l.mappings[1].reads).toMatchObject({
      file: 'old',
      control: null,
      effective: 'old',
      source: 'file',
    });

    store.setKillSwitchOverride(false);
    l = switchLayers(store);
    expect(l.killSwitch).toMatchObject({ effective: false, source: 'override', override: false });

    // A reload of the file keeps the control table's switches over it.
    await store.apply({ config: FILE, hash: 'h2' });
    expect(store.current.config.mappings[0].reads).toBe('new');
    expect(store.current.file.mappings[0].reads).toBe('old');
  });

  it('a refused control state leaves the one in force', async () => {
    const store = await ConfigStore.create({ config: FILE, hash: 'h' }, async () => ({}));
    const before = store.current;
    await expect(
      store.applyFleet({ version: 9, mappings: { b: { reads: change('new', 9) } } }),
    ).rejects.toThrow(/no down expressions/);
    expect(store.current).toBe(before);
  });

  it('switchyard status shows the fleet line and the switches not from the file', async () => {
    const store = await ConfigStore.create({ config: FILE, hash: 'h' }, async () => ({}));
    await store.applyFleet({ version: 7, mappings: { a: { reads: change('new', 7) } } });
    const s: AdminStatus = {
      version: '0.1.0',
      config: { version: 2, hash: 'ab'.repeat(32), path: null, loadedAt: '2026-12-02T00:00:00.000Z' },
      killSwitch: { config: false, override: null, effective: false },
      onUnmirrorable: 'passthrough',
      mappings: [],
      connections: 0,
      draining: false,
      startedAt: '2026-12-02T00:00:00.000Z',
      uptimeSeconds: 5,
      switches: switchLayers(store),
      fleet: {
        enabled: true,
        name: 'pod-1',
        connected: false,
        appliedVersion: 7,
        error: 'connect ECONNREFUSED',
        errorSince: '2026-12-02T00:00:01.000Z',
      },
    };
    const out = renderStatus(s);
    expect(out).toContain(
      'fleet       pod-1 control version 7  CONTROL TABLE UNREACHABLE since 2026-12-02T00:00:01.000Z (connect ECONNREFUSED); holding version 7',
    );
    expect(out).toContain('switches not from the file (override > control table > file):');
    expect(out).toContain('  a reads new from the control table (version 7 by alice: why)');
  });
});

import { describe, expect, it } from 'vitest';
import { isLoopbackHost, parseKillSwitchRequest } from '../../src/admin/server.ts';
import { type AdminStatus, formatDuration, renderStatus } from '../../src/admin/status.ts';

const status: AdminStatus = {
  version: '0.1.0',
  config: {
    version: 4,
    hash: '3f2a9c1b7d0e55aa00112233445566778899aabbccddeeff0011223344556677',
    path: '/etc/switchyard/switchyard.yaml',
    loadedAt: '2026-11-24T06:40:00.000Z',
  },
  killSwitch: { config: false, override: null, effective: false },
  onUnmirrorable: 'passthrough',
  mappings: [
    {
      name: 'users-full-name',
      old: 'public.users',
      new: 'public.users_v2',
      dualWrite: true,
      reads: 'new',
      mirroring: true,
    },
    { name: 'orders', old: 'orders', new: 'orders_v2', dualWrite: false, reads: 'old', mirroring: false },
  ],
  connections: 12,
  draining: false,
  startedAt: '2026-11-24T05:38:00.000Z',
  uptimeSeconds: 3725,
};

describe('renderStatus', () => {
  it('renders the header lines and an aligned mapping table', () => {
    expect(renderStatus(status)).toBe(
      [
        'switchyard 0.1.0  up 1h02m05s  connections 12',
        'config      version 4  sha256 3f2a9c1b7d0e  loaded 2026-11-24T06:40:00.000Z  /etc/switchyard/switchyard.yaml',
        'kill switch off  (config off, override none)',
        'unmirrorable writes: passthrough',
        '',
        'MAPPING          OLD           NEW              DUAL-WRITE  MIRRORING  READS',
        'users-full-name  public.users  public.users_v2  on          yes        new',
        'orders           orders        orders_v2        off         no         old',
        '',
      ].join('\n'),
    );
  });

  it('makes an engaged kill switch and draining impossible to miss', () => {
    const out = renderStatus({
      ...status,
      draining: true,
      killSwitch: { config: false, override: true, effective: true },
      mappings: [{ ...status.mappings[0], mirroring: false }],
    });
    expect(out).toContain('DRAINING');
    expect(out).toContain('kill switch ON (mirroring stopped on every mapping)  (config off, override on)');
    expect(out).toMatch(/users-full-name .* on +no \(kill switch\) +new/);
  });

  it('shows readiness when it is known', () => {
    expect(renderStatus(status, { ready: true }).split('\n')[0]).toBe(
      'switchyard 0.1.0  up 1h02m05s  connections 12  ready',
    );
    expect(renderStatus(status, { ready: false, reason: 'upstream unreachable' }).split('\n')[0]).toBe(
      'switchyard 0.1.0  up 1h02m05s  connections 12  NOT READY (upstream unreachable)',
    );
    const draining = renderStatus(
      { ...status, draining: true },
      { ready: false, reason: 'draining: shutting down' },
    );
    expect(draining.split('\n')[0]).toBe(
      'switchyard 0.1.0  up 1h02m05s  connections 12  NOT READY (draining: shutting down)',
    );
  });

  it('says so when there are no mappings', () => {
    expect(renderStatus({ ...status, mappings: [] })).toContain('no mappings');
  });
});

describe('formatDuration', () => {
  it.each([
    [0, '0s'],
    [59, '59s'],
    [61, '1m01s'],
    [3600, '1h00m00s'],
    [90061, '1d01h01m'],
  ])('%i -> %s', (s, out) => expect(formatDuration(s)).toBe(out));
});

describe('isLoopbackHost', () => {
  it.each([
    ['127.0.0.1', true],
    ['127.1.2.3', true],
    ['::1', true],
    ['[::1]', true],
    ['localhost', true],
    ['::ffff:127.0.0.1', true],
    ['0.0.0.0', false],
    ['::', false],
    ['10.0.0.5', false],
    ['127.example.com', false],
  ])('%s -> %s', (h, out) => expect(isLoopbackHost(h)).toBe(out));
});

describe('parseKillSwitchRequest', () => {
  const q = (s = '') => new URLSearchParams(s);
  it('accepts every documented form', () => {
    expect(parseKillSwitchRequest(q(), 'on')).toBe(true);
    expect(parseKillSwitchRequest(q(), ' OFF\n')).toBe(false);
    expect(parseKillSwitchRequest(q(), 'clear')).toBe(null);
    expect(parseKillSwitchRequest(q('state=on'), '')).toBe(true);
    expect(parseKillSwitchRequest(q('off'), '')).toBe(false);
    expect(parseKillSwitchRequest(q(), '{"state":"on"}')).toBe(true);
    expect(parseKillSwitchRequest(q(), '{"state":null}')).toBe(null);
    expect(parseKillSwitchRequest(q(), 'state=clear')).toBe(null);
    expect(parseKillSwitchRequest(q('state=on'), 'on')).toBe(true);
  });
  it('rejects the rest', () => {
    expect(() => parseKillSwitchRequest(q(), '')).toThrow(/on, off or clear/);
    expect(() => parseKillSwitchRequest(q(), 'yes')).toThrow(/unknown kill switch state/);
    expect(() => parseKillSwitchRequest(q('state=on'), 'off')).toThrow(/conflicting/);
    expect(() => parseKillSwitchRequest(q(), '{"state"')).toThrow(/JSON/);
  });
});

// The /status document and its rendering for a person at a terminal. Kept
// apart from the HTTP server so `switchyard status` loads no server code.

export interface KillSwitchState {
  /** killSwitch in the config file. */
  config: boolean;
  /** Runtime override from POST /kill-switch; null = follow the config. */
  override: boolean | null;
  /** What the proxy acts on: the override when set, else the config. */
  effective: boolean;
}

export interface MappingStatus {
  name: string;
  old: string;
  new: string;
  /** both: writes on new are mirrored into old too. */
  dualWrite: boolean | 'both';
  reads: 'old' | 'new';
  /** dualWrite and the kill switch off: writes on old are mirrored right now. */
  mirroring: boolean;
  /** dualWrite: both: whether rows survive the round trip through the other table. */
  roundTrip?: RoundTripStatus;
}

export interface RoundTripStatus {
  state: 'checking' | 'ok' | 'lossy' | 'error';
  /** Columns that do not come back, by the table they belong to. */
  lossy?: { old: string[]; new: string[] };
  error?: string;
  checkedAt?: string;
}

export interface AdminStatus {
  version: string;
  config: { version: number; hash: string; path: string | null; loadedAt: string };
  killSwitch: KillSwitchState;
  onUnmirrorable: 'passthrough' | 'reject';
  mappings: MappingStatus[];
  connections: number;
  draining: boolean;
  startedAt: string;
  uptimeSeconds: number;
}

/** '-' where not checked; the lossy columns by table where some do not come back. */
function roundTripCell(r: RoundTripStatus | undefined): string {
  if (!r) return '-';
  if (r.state !== 'lossy') return r.state;
  const cols = [
    ...(r.lossy?.old ?? []).map((c) => `old.${c}`),
    ...(r.lossy?.new ?? []).map((c) => `new.${c}`),
  ];
  return `LOSSY ${cols.join(' ')}`;
}

/** 3725 -> "1h02m05s"; short forms for short uptimes. */
export function formatDuration(totalSeconds: number): string {
  const s = Math.max(0, Math.floor(totalSeconds));
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  const pad = (n: number) => String(n).padStart(2, '0');
  if (d > 0) return `${d}d${pad(h)}h${pad(m)}m`;
  if (h > 0) return `${h}h${pad(m)}m${pad(sec)}s`;
  if (m > 0) return `${m}m${pad(sec)}s`;
  return `${sec}s`;
}

function onOff(v: boolean): string {
  return v ? 'on' : 'off';
}

/** Left-aligned columns separated by two spaces, header first. */
export function formatTable(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i])))
      .join('  ')
      .trimEnd();
  return [line(header), ...rows.map(line)].join('\n');
}

/** The /readyz answer: ready, or why not. */
export interface Readiness {
  ready: boolean;
  reason?: string;
}

/** The /status document as a few lines and a mapping table; readiness when known. */
export function renderStatus(s: AdminStatus, readiness?: Readiness): string {
  const ks = s.killSwitch;
  const ksDetail = `config ${onOff(ks.config)}, override ${ks.override === null ? 'none' : onOff(ks.override)}`;
  const ready =
    readiness === undefined
      ? ''
      : readiness.ready
        ? '  ready'
        : `  NOT READY (${readiness.reason ?? 'unknown'})`;
  const lines = [
    `switchyard ${s.version}  up ${formatDuration(s.uptimeSeconds)}  connections ${s.connections}${ready}${
      s.draining && !ready.includes('draining') ? '  DRAINING' : ''
    }`,
    `config      version ${s.config.version}  sha256 ${s.config.hash.slice(0, 12)}  loaded ${s.config.loadedAt}${
      s.config.path ? `  ${s.config.path}` : ''
    }`,
    `kill switch ${ks.effective ? 'ON (mirroring stopped on every mapping)' : 'off'}  (${ksDetail})`,
    `unmirrorable writes: ${s.onUnmirrorable}`,
    '',
  ];
  if (s.mappings.length === 0) {
    lines.push('no mappings: every statement passes through');
  } else {
    // The round-trip column only where some mapping mirrors both ways.
    const trips = s.mappings.some((m) => m.roundTrip !== undefined);
    lines.push(
      formatTable(
        ['MAPPING', 'OLD', 'NEW', 'DUAL-WRITE', 'MIRRORING', 'READS', ...(trips ? ['ROUND TRIP'] : [])],
        s.mappings.map((m) => [
          m.name,
          m.old,
          m.new,
          m.dualWrite === 'both' ? 'both ways' : onOff(m.dualWrite),
          m.mirroring ? 'yes' : m.dualWrite !== false ? 'no (kill switch)' : 'no',
          m.reads,
          ...(trips ? [roundTripCell(m.roundTrip)] : []),
        ]),
      ),
    );
  }
  return `${lines.join('\n')}\n`;
}

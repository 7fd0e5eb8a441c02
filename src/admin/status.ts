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

export type Reads = 'old' | 'new' | { new: number };

/** reads for a person: old, new, or "new 10%" for a canary. */
export function readsLabel(r: Reads): string {
  return typeof r === 'string' ? r : `new ${r.new}%`;
}

export interface MappingStatus {
  name: string;
  old: string;
  new: string;
  /** both: writes on new are mirrored into old too. */
  dualWrite: boolean | 'both';
  /** old, new, or a canary: { new: N } percent of client sessions. */
  reads: Reads;
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

/** Where a switch's value in force comes from; the first that says something wins. */
export type SwitchSource = 'override' | 'control' | 'file';

export const PRECEDENCE: SwitchSource[] = ['override', 'control', 'file'];

/** A change recorded in the control table. */
export interface ControlChange<T> {
  value: T;
  version: number;
  by: string;
  at: string;
  reason: string | null;
}

export interface Layered<T> {
  file: T;
  control: ControlChange<T> | null;
  effective: T;
  source: SwitchSource;
}

export interface SwitchLayers {
  /** First wins: the local override, then the control table, then the file. */
  precedence: SwitchSource[];
  killSwitch: Layered<boolean> & { override: boolean | null };
  mappings: Array<{
    name: string;
    reads: Layered<Reads>;
    dualWrite: Layered<boolean | 'both'>;
  }>;
}

/** The control connection as this sidecar sees it. */
export interface FleetView {
  enabled: boolean;
  id?: string;
  name?: string;
  connected?: boolean;
  /** Control-table version in force here. */
  appliedVersion?: number;
  lastSyncAt?: string | null;
  /** Why the control table cannot be reached, while it cannot. */
  error?: string | null;
  errorSince?: string | null;
  /** Why the latest control state could not be applied. */
  applyError?: string | null;
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
  /** Each switch's layers and which one is in force. */
  switches?: SwitchLayers;
  fleet?: FleetView;
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

function onOff(v: boolean | 'both'): string {
  return v === 'both' ? 'both' : v ? 'on' : 'off';
}

/** The fleet line: which control version applies, and whether the control table is reachable. */
function fleetLine(f: FleetView): string {
  if (!f.enabled) return 'fleet       off (switches from this file and this admin port only)';
  const link = f.connected
    ? `connected, last read ${f.lastSyncAt ?? 'never'}`
    : `CONTROL TABLE UNREACHABLE since ${f.errorSince ?? '?'} (${f.error ?? 'unknown'}); holding version ${f.appliedVersion ?? 0}`;
  const refused = f.applyError ? `  REFUSED latest state: ${f.applyError}` : '';
  return `fleet       ${f.name ?? ''} control version ${f.appliedVersion ?? 0}  ${link}${refused}`;
}

/** The switches set by the control table or an override rather than the file. */
function sourceLines(l: SwitchLayers): string[] {
  const out: string[] = [];
  const from = (what: string, x: Layered<unknown>) => {
    if (x.source === 'control' && x.control)
      out.push(
        `  ${what} ${String(x.effective)} from the control table (version ${x.control.version} by ${x.control.by}${x.control.reason ? `: ${x.control.reason}` : ''})`,
      );
    if (x.source === 'override')
      out.push(`  ${what} ${String(x.effective)} from this sidecar's local override`);
  };
  from('kill switch', l.killSwitch);
  for (const m of l.mappings) {
    from(`${m.name} reads`, m.reads);
    from(`${m.name} dualWrite`, m.dualWrite);
  }
  return out.length ? ['switches not from the file (override > control table > file):', ...out] : [];
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
  const ctl = s.switches?.killSwitch.control;
  const ksDetail = `config ${onOff(ks.config)}${ctl ? `, control table ${onOff(ctl.value)} (version ${ctl.version})` : ''}, override ${ks.override === null ? 'none' : onOff(ks.override)}`;
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
    ...(s.fleet ? [fleetLine(s.fleet)] : []),
    ...(s.switches ? sourceLines(s.switches) : []),
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
          readsLabel(m.reads),
          ...(trips ? [roundTripCell(m.roundTrip)] : []),
        ]),
      ),
    );
  }
  return `${lines.join('\n')}\n`;
}

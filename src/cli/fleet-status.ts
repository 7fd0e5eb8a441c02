// `switchyard status --fleet --config FILE`: every sidecar's heartbeat row,
// the control version it applies, and which ones are stale or behind.
import type pg from 'pg';
import { formatDuration, formatTable } from '../admin/status.ts';
import { ConfigError, loadConfigFile } from '../config/load.ts';
import { listSidecars, type SidecarRow } from '../fleet/sidecars.ts';
import { controlTablesExist, latestChange } from '../fleet/tables.ts';
import { connect, upstreamClientConfig } from '../pg/connect.ts';
import { databaseError, FleetCliError } from './fleet-errors.ts';

function state(s: SidecarRow, top: number): string {
  if (s.stale) return 'STALE';
  if (s.applyError) return `REFUSED (${s.applyError})`;
  if (s.appliedVersion < top) return 'BEHIND';
  return 'ok';
}

function overrides(o: Record<string, unknown>): string {
  const parts = Object.entries(o).map(([k, v]) => `${k}=${String(v)}`);
  return parts.length ? parts.join(',') : '-';
}

export async function runFleetStatus(configPath: string | undefined, json: boolean): Promise<number> {
  let client: pg.Client | undefined;
  try {
    if (!configPath)
      throw new FleetCliError('--fleet needs --config FILE (the database to read the fleet from)');
    const { config } = loadConfigFile(configPath);
    const cfg = upstreamClientConfig(config, { application_name: 'switchyard-status' });
    client = await connect(cfg).catch((e) => {
      throw databaseError(cfg, e);
    });
    const exists = await controlTablesExist(client);
    const latest = exists ? await latestChange(client) : null;
    const sidecars = exists ? await listSidecars(client, config.fleet.staleAfterMs) : [];
    const top = latest?.version ?? 0;
    if (json) {
      const out = { version: top, latest, staleAfterMs: config.fleet.staleAfterMs, sidecars };
      process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
      return 0;
    }
    const lines: string[] = [];
    lines.push(
      latest
        ? `control version ${top}: ${latest.setting === 'killSwitch' ? 'kill switch' : `${latest.mapping} ${latest.setting}`} ${latest.value} by ${latest.by} at ${latest.at.toISOString()}${latest.reason ? ` (${latest.reason})` : ''}`
        : 'control version 0: no switch changed through the control table yet',
    );
    if (sidecars.length === 0) {
      lines.push('no sidecar has reported (fleet.enabled in their config?)');
    } else {
      const live = sidecars.filter((s) => !s.stale);
      lines.push(
        `${live.length} live, ${sidecars.length - live.length} stale (no heartbeat for ${formatDuration(config.fleet.staleAfterMs / 1000)})`,
        '',
        formatTable(
          ['NAME', 'ID', 'PID', 'UP', 'LAST SEEN', 'VERSION', 'OVERRIDES', 'STATE'],
          sidecars.map((s) => [
            s.name,
            s.id,
            String(s.pid),
            formatDuration((Date.parse(s.lastSeen) - Date.parse(s.startedAt)) / 1000),
            `${formatDuration(s.ageSeconds)} ago`,
            String(s.appliedVersion),
            overrides(s.localOverrides),
            state(s, top),
          ]),
        ),
      );
    }
    process.stdout.write(`${lines.join('\n')}\n`);
    return 0;
  } catch (e) {
    const msg = e instanceof FleetCliError || e instanceof ConfigError ? e.message : (e as Error).message;
    process.stderr.write(`switchyard status: ${msg.split('\n')[0]}\n`);
    return 2;
  } finally {
    await client?.end().catch(() => {});
  }
}

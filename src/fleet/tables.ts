// The fleet's shared state, in the database every sidecar already reaches:
//
//   switch_changes  every switch change ever made (the history): a version
//                   from one sequence, the mapping (NULL for the fleet-wide
//                   kill switch), the setting, its value ('file': back to the
//                   config file's value), who, when and why;
//   switches        a view: the latest change of each switch, the state in force;
//   sidecars        one heartbeat row per running sidecar: who it is, when it
//                   was last seen, which version it applies, its local overrides.
//
// An insert into switch_changes notifies CHANNEL from a trigger, so a change
// made by hand in psql reaches the fleet as fast as one made by the CLI.
import type pg from 'pg';
import type { FleetSwitches, SwitchChange } from '../config/overlay.ts';

export const SCHEMA = 'switchyard';
export const CHANNEL = 'switchyard_switches';

export const CONTROL_DDL = `
CREATE SCHEMA IF NOT EXISTS ${SCHEMA};
CREATE TABLE IF NOT EXISTS ${SCHEMA}.switch_changes (
  version     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  mapping     text,
  setting     text NOT NULL CHECK (setting IN ('reads', 'dualWrite', 'killSwitch')),
  value       text NOT NULL,
  changed_by  text NOT NULL,
  db_user     text NOT NULL DEFAULT current_user,
  changed_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
  reason      text,
  CHECK ((setting = 'killSwitch') = (mapping IS NULL)),
  CHECK (setting <> 'reads' OR value IN ('old', 'new', 'file')),
  CHECK (setting <> 'dualWrite' OR value IN ('on', 'off', 'both', 'file')),
  CHECK (setting <> 'killSwitch' OR value IN ('on', 'off', 'file'))
);
CREATE OR REPLACE VIEW ${SCHEMA}.switches AS
  SELECT DISTINCT ON (mapping, setting) version, mapping, setting, value, changed_by, db_user, changed_at, reason
  FROM ${SCHEMA}.switch_changes
  ORDER BY mapping, setting, version DESC;
CREATE OR REPLACE FUNCTION ${SCHEMA}.notify_switch_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('${CHANNEL}', (SELECT max(version)::text FROM new_rows));
  RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS switch_changes_notify ON ${SCHEMA}.switch_changes;
CREATE TRIGGER switch_changes_notify AFTER INSERT ON ${SCHEMA}.switch_changes
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION ${SCHEMA}.notify_switch_change();
CREATE TABLE IF NOT EXISTS ${SCHEMA}.sidecars (
  id              text PRIMARY KEY,
  name            text NOT NULL,
  pid             int NOT NULL,
  started_at      timestamptz NOT NULL,
  last_seen       timestamptz NOT NULL DEFAULT clock_timestamp(),
  applied_version bigint NOT NULL DEFAULT 0,
  applied_at      timestamptz,
  local_overrides jsonb NOT NULL DEFAULT '{}',
  apply_error     text
);
`;

/**
 * Creates the control tables when they are missing. Concurrent starts (a whole
 * fleet rolling out) take turns on an advisory lock: concurrent CREATE ... IF
 * NOT EXISTS can still collide in the catalog.
 */
export async function ensureControlTables(client: pg.Client): Promise<void> {
  const present = await client.query<{ ok: boolean }>(
    `SELECT to_regclass('${SCHEMA}.switch_changes') IS NOT NULL
        AND to_regclass('${SCHEMA}.switches') IS NOT NULL
        AND to_regclass('${SCHEMA}.sidecars') IS NOT NULL AS ok`,
  );
  if (present.rows[0].ok) return;
  await client.query('BEGIN');
  try {
    await client.query(`SELECT pg_advisory_xact_lock(hashtext('${SCHEMA}.control'))`);
    await client.query(CONTROL_DDL);
    await client.query('COMMIT');
  } catch (e) {
    await client.query('ROLLBACK').catch(() => {});
    throw e;
  }
}

interface SwitchRow {
  top: string;
  version: string | null;
  mapping: string | null;
  setting: 'reads' | 'dualWrite' | 'killSwitch' | null;
  value: string;
  changed_by: string;
  changed_at: Date;
  reason: string | null;
}

/** The switches in force and the highest version, in one statement (one snapshot). */
export async function readSwitches(client: pg.Client): Promise<FleetSwitches> {
  const r = await client.query<SwitchRow>(
    `SELECT t.top, s.version, s.mapping, s.setting, s.value, s.changed_by, s.changed_at, s.reason
       FROM (SELECT coalesce(max(version), 0) AS top FROM ${SCHEMA}.switch_changes) t
       LEFT JOIN ${SCHEMA}.switches s ON true
      ORDER BY s.version`,
  );
  const out: FleetSwitches = { version: Number(r.rows[0]?.top ?? 0), mappings: {} };
  for (const row of r.rows) {
    // 'file' hands the switch back to the config file.
    if (row.setting === null || row.version === null || row.value === 'file') continue;
    const change = <T>(value: T): SwitchChange<T> => ({
      value,
      version: Number(row.version),
      by: row.changed_by,
      at: row.changed_at.toISOString(),
      reason: row.reason,
    });
    if (row.setting === 'killSwitch') {
      out.killSwitch = change(row.value === 'on');
      continue;
    }
    const name = row.mapping ?? '';
    out.mappings[name] ??= {};
    const m = out.mappings[name];
    if (row.setting === 'reads') m.reads = change(row.value as 'old' | 'new');
    else m.dualWrite = change(row.value as 'on' | 'off' | 'both');
  }
  return out;
}

export interface NewChange {
  mapping: string | null;
  setting: 'reads' | 'dualWrite' | 'killSwitch';
  value: string;
  by: string;
  reason: string | null;
}

/**
 * Records changes in one transaction (one notification) and returns the
 * highest version. Writers take turns on the table, so versions commit in the
 * order they were given and the highest version a sidecar has read always
 * includes every change below it.
 */
export async function recordChanges(
  client: pg.Client,
  changes: NewChange[],
): Promise<{ version: number; at: Date }> {
  await client.query('BEGIN');
  try {
    // An advisory lock, not LOCK TABLE: that would need UPDATE rights, and an operator needs only INSERT.
    await client.query(`SELECT pg_advisory_xact_lock(hashtext('${SCHEMA}.switch_changes'))`);
    let last: { version: string; changed_at: Date } | undefined;
    for (const c of changes) {
      const r = await client.query<{ version: string; changed_at: Date }>(
        `INSERT INTO ${SCHEMA}.switch_changes (mapping, setting, value, changed_by, reason)
         VALUES ($1, $2, $3, $4, $5) RETURNING version, changed_at`,
        [c.mapping, c.setting, c.value, c.by, c.reason],
      );
      last = r.rows[0];
    }
    await client.query('COMMIT');
    if (!last) throw new Error('no change to record');
    return { version: Number(last.version), at: last.changed_at };
  } catch (e) {
    await client.query('ROLLBACK').catch(() => {});
    throw e;
  }
}

/** The latest change, or null when none was ever made (or the tables do not exist yet). */
export async function latestChange(
  client: pg.Client,
): Promise<(NewChange & { version: number; at: Date }) | null> {
  const r = await client.query(
    `SELECT version, mapping, setting, value, changed_by, changed_at, reason
       FROM ${SCHEMA}.switch_changes ORDER BY version DESC LIMIT 1`,
  );
  const row = r.rows[0];
  if (!row) return null;
  return {
    version: Number(row.version),
    mapping: row.mapping,
    setting: row.setting,
    value: row.value,
    by: row.changed_by,
    reason: row.reason,
    at: row.changed_at,
  };
}

/** Whether the control tables exist (a read-only look: creating them needs other rights). */
export async function controlTablesExist(client: pg.Client): Promise<boolean> {
  const r = await client.query<{ ok: boolean }>(
    `SELECT to_regclass('${SCHEMA}.switch_changes') IS NOT NULL AND to_regclass('${SCHEMA}.sidecars') IS NOT NULL AS ok`,
  );
  return r.rows[0].ok;
}

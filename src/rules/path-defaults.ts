// The search_path a new session starts with when its startup packet names
// none: ALTER ROLE ... [IN DATABASE ...] SET search_path and ALTER DATABASE
// ... SET search_path, read from pg_db_role_setting when the rules are
// compiled. Postgres applies them in this order of precedence: the role in
// this database, the role anywhere, this database for every role.
import type pg from 'pg';

export interface SearchPathDefaults {
  /** By role name: the role's own setting (in this database first). */
  roles: Map<string, string>;
  /** ALTER DATABASE ... SET search_path, for every role. */
  database?: string;
}

export async function readSearchPathDefaults(client: pg.Client): Promise<SearchPathDefaults> {
  const out: SearchPathDefaults = { roles: new Map() };
  let rows: { role: string | null; indb: boolean; path: string }[];
  try {
    const r = await client.query<{ role: string | null; indb: boolean; path: string }>(
      `SELECT r.rolname AS role, s.setdatabase <> 0 AS indb, pg_catalog.substr(c, 13) AS path
         FROM pg_catalog.pg_db_role_setting s
         LEFT JOIN pg_catalog.pg_roles r ON r.oid = s.setrole
         CROSS JOIN LATERAL pg_catalog.unnest(s.setconfig) AS c
        WHERE s.setdatabase IN (0, (SELECT oid FROM pg_catalog.pg_database
                                     WHERE datname = pg_catalog.current_database()))
          AND c LIKE 'search\\_path=%'`,
    );
    rows = r.rows;
  } catch {
    // Unreadable catalog: sessions fall back to the server default, as before.
    return out;
  }
  // A role's setting in this database wins over its setting for all databases.
  for (const row of [...rows].sort((a, b) => Number(a.indb) - Number(b.indb))) {
    if (row.role === null) out.database = row.path;
    else out.roles.set(row.role, row.path);
  }
  return out;
}

export function defaultPathFor(d: SearchPathDefaults | undefined, role: string): string | undefined {
  return d?.roles.get(role) ?? d?.database;
}

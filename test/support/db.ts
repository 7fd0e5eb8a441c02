// A fresh database per test file on the run's Postgres, plus direct clients to it.
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { inject } from 'vitest';

export interface TestDatabase {
  name: string;
  /** Direct superuser URL to this database (not through the proxy). */
  url: string;
  host: string;
  port: number;
  /** Server major version, e.g. 15 or 18. */
  serverVersion: number;
  /** A direct client; closed by drop(). */
  direct: pg.Client;
  query<R extends pg.QueryResultRow = pg.QueryResultRow>(
    sql: string,
    params?: unknown[],
  ): Promise<pg.QueryResult<R>>;
  drop(): Promise<void>;
}

export function serverInfo() {
  return inject('pg');
}

function withDatabase(url: string, db: string): string {
  const u = new URL(url);
  u.pathname = `/${db}`;
  return u.toString();
}

export async function freshDatabase(prefix = 't'): Promise<TestDatabase> {
  const { url: adminUrl } = serverInfo();
  const name = `${prefix}_${randomBytes(5).toString('hex')}`;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE "${name}"`);
  } finally {
    await admin.end();
  }
  const url = withDatabase(adminUrl, name);
  const direct = new pg.Client({ connectionString: url });
  await direct.connect();
  const v = await direct.query<{ v: string }>("SELECT current_setting('server_version_num') AS v");
  const u = new URL(url);
  return {
    name,
    url,
    host: u.hostname,
    port: Number(u.port || 5432),
    serverVersion: Math.floor(Number(v.rows[0].v) / 10000),
    direct,
    query: (sql, params) => direct.query(sql, params),
    async drop() {
      await direct.end().catch(() => {});
      const a = new pg.Client({ connectionString: adminUrl });
      await a.connect();
      try {
        await a.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
      } finally {
        await a.end();
      }
    },
  };
}

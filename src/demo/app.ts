// The demo's "application": plain node-postgres talking to the proxy as if it
// were Postgres, writing only to the old table, unaware of users_v2.
import pg from 'pg';

export async function connectClient(url: string, applicationName: string): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: url, application_name: applicationName });
  // A server or proxy going away (Ctrl-C) surfaces on the next query; an unheard 'error' would crash.
  c.on('error', () => {});
  await c.connect();
  return c;
}

export interface BackgroundStats {
  inserts: number;
  updates: number;
  deletes: number;
  errors: string[];
}

/**
 * A steady trickle of application writes through the proxy: updates and
 * deletes of historical rows, and inserts, until stopped. Run during the
 * backfill, it makes the copy race real application traffic.
 */
export function backgroundWrites(client: pg.Client, historicalRows: number) {
  const stats: BackgroundStats = { inserts: 0, updates: 0, deletes: 0, errors: [] };
  let stopping = false;
  let i = 0;
  const loop = (async () => {
    while (!stopping) {
      i++;
      const id = 1 + ((i * 7919) % historicalRows);
      try {
        if (i % 5 === 0) {
          await client.query('DELETE FROM users WHERE id = $1', [id]);
          stats.deletes++;
        } else if (i % 3 === 0) {
          await client.query(
            "INSERT INTO users (first_name, last_name, email) VALUES ('Radia', 'Perlman', $1)",
            [`Radia.Perlman.${i}@Example.com`],
          );
          stats.inserts++;
        } else {
          await client.query("UPDATE users SET last_name = 'Wing', email = upper(email) WHERE id = $1", [id]);
          stats.updates++;
        }
      } catch (e) {
        stats.errors.push((e as Error).message);
        if (stats.errors.length > 5) return;
      }
      await new Promise((r) => setTimeout(r, 5));
    }
  })();
  return {
    stats,
    async stop(): Promise<BackgroundStats> {
      stopping = true;
      await loop;
      return stats;
    },
  };
}

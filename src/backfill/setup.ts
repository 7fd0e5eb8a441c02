// What backfill and verify share on the command line: load the config,
// compile the one mapping asked for against the catalog, serve metrics.
import http from 'node:http';
import type pg from 'pg';
import { loadConfigFile } from '../config/load.ts';
import type { Config } from '../config/schema.ts';
import { registry } from '../metrics.ts';
import { upstreamClientConfig } from '../pg/connect.ts';
import type { CompiledMapping } from '../rules/mapping.ts';
import { compileRules } from '../rules/ruleset.ts';

export class SetupError extends Error {
  override name = 'SetupError';
}

export interface Loaded {
  config: Config;
  mapping: CompiledMapping;
  clientConfig: pg.ClientConfig;
}

export async function loadMapping(
  configPath: string,
  name: string,
  applicationName: string,
  opts: { reverse?: string } = {},
): Promise<Loaded> {
  const { config } = loadConfigFile(configPath);
  let mc = config.mappings.find((m) => m.name === name);
  if (!mc) {
    const known = config.mappings.map((m) => m.name).join(', ') || 'none';
    throw new SetupError(`unknown mapping ${name} in ${configPath} (mappings: ${known})`);
  }
  // `reverse`: the command also needs the mapping seen from new (old = down(new)),
  // whatever dualWrite says now; the string says why, for the error without down.
  if (opts.reverse !== undefined) {
    if (!mc.down)
      throw new SetupError(`mapping ${name}: ${opts.reverse} needs down expressions (none in ${configPath})`);
    mc = { ...mc, dualWrite: 'both' };
  }
  // Only the mapping at hand: a problem in another one is not this command's business.
  const rules = await compileRules({ ...config, mappings: [mc] }, { installHelpers: false });
  return {
    config,
    mapping: rules.mappings[0],
    clientConfig: upstreamClientConfig(config, { application_name: applicationName }),
  };
}

/** Serves /metrics on 127.0.0.1:port while a long command runs; port 0 picks a free one. */
export async function serveMetrics(port: number, host = '127.0.0.1'): Promise<http.Server> {
  const server = http.createServer(async (req, res) => {
    if (req.url === '/metrics') {
      res.setHeader('content-type', registry.contentType);
      res.end(await registry.metrics());
      return;
    }
    res.statusCode = 404;
    res.end('not found\n');
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  server.unref();
  return server;
}

export function positiveInt(flag: string, v: string | undefined, min = 1): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new SetupError(`${flag} must be an integer >= ${min}, got ${v}`);
  return n;
}

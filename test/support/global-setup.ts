// One Postgres per test run. SWITCHYARD_TEST_DATABASE_URL (a superuser URL)
// names an existing server and wins; otherwise a throwaway cluster is started
// from SWITCHYARD_TEST_PG_BIN (a bin directory, e.g. /usr/lib/postgresql/15/bin)
// or from the embedded PG 18 binaries, and stopped when the run ends.
import type {} from 'vitest';
import type { TestProject } from 'vitest/node';
import { LocalCluster } from '../../src/demo/cluster.ts';

let cluster: LocalCluster | undefined;

export async function setup(project: TestProject): Promise<void> {
  const external = process.env.SWITCHYARD_TEST_DATABASE_URL;
  if (external) {
    project.provide('pg', { url: external, owned: false, binDir: '', dataDir: '', version: 0 });
    return;
  }
  cluster = await LocalCluster.start({ binDir: process.env.SWITCHYARD_TEST_PG_BIN || undefined });
  project.provide('pg', {
    url: cluster.url(),
    owned: true,
    binDir: cluster.binDir,
    dataDir: cluster.dataDir,
    version: cluster.version,
  });
  console.log(`test Postgres ${cluster.version} on port ${cluster.port} (${cluster.binDir})`);
}

export async function teardown(): Promise<void> {
  await cluster?.stop();
}

declare module 'vitest' {
  export interface ProvidedContext {
    pg: { url: string; owned: boolean; binDir: string; dataDir: string; version: number };
  }
}

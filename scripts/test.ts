// `npm test`: the client test dependencies (scripts/setup-test-deps.sh), then
// every test on a throwaway PG 18 (embedded, works on a fresh machine), then
// the protocol and rules suites again on PG 15 when a system install is
// present. Ends with one summary line: "N passed, N failed".
import { spawnSync } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { systemBinDir } from '../src/demo/cluster.ts';

interface Pass {
  label: string;
  env: NodeJS.ProcessEnv;
  files: string[];
}

/** Suites whose behaviour depends on the server version. */
const VERSION_SENSITIVE = [
  'test/integration/protocol-',
  'test/integration/clients-',
  'test/integration/rules-',
  'test/integration/lifecycle-',
  'test/integration/corpus-',
  'test/integration/mirror-',
  'test/integration/switch-',
  'test/integration/fleet-',
];

const passes: Pass[] = [{ label: 'PG 18 (embedded)', env: {}, files: [] }];
const pg15 = systemBinDir();
if (process.env.SWITCHYARD_TEST_DATABASE_URL) {
  passes[0].label = 'SWITCHYARD_TEST_DATABASE_URL';
} else if (pg15 && process.env.SWITCHYARD_TEST_SKIP_SECOND_VERSION !== '1') {
  passes.push({
    label: `system Postgres (${pg15})`,
    env: { SWITCHYARD_TEST_PG_BIN: pg15 },
    files: VERSION_SENSITIVE,
  });
} else {
  console.log('note: no system Postgres install found; version-sensitive suites run on PG 18 only');
}

// The client tests (psycopg 3, pgjdbc) need Python and Java packages: installed
// here when missing, so the one test command works on a fresh machine.
const setup = spawnSync('bash', [path.resolve('scripts/setup-test-deps.sh')], { stdio: 'inherit' });
if (setup.status !== 0) {
  console.log('\nscripts/setup-test-deps.sh failed: the client tests cannot run (see above)');
  process.exit(1);
}

let passed = 0;
let failed = 0;
let exit = 0;
for (const [i, pass] of passes.entries()) {
  const out = path.resolve('.tmp', `vitest-${i}.json`);
  rmSync(out, { force: true });
  console.log(`\n=== tests on ${pass.label} ===`);
  const r = spawnSync(
    'npx',
    [
      'vitest',
      'run',
      '--reporter=default',
      '--reporter=json',
      `--outputFile=${out}`,
      ...pass.files,
      ...process.argv.slice(2),
    ],
    { stdio: 'inherit', env: { ...process.env, ...pass.env } },
  );
  try {
    const json = JSON.parse(readFileSync(out, 'utf8')) as {
      numPassedTests: number;
      numFailedTests: number;
      numTotalTests: number;
      testResults: { status: string; assertionResults: { status: string }[] }[];
    };
    passed += json.numPassedTests;
    failed += json.numFailedTests + (json.numTotalTests === 0 ? 1 : 0);
    // A file that fails outside any test (its beforeAll, its import) leaves
    // its tests unrun: each of them counts as failed, and the file at least once.
    for (const file of json.testResults) {
      if (file.status !== 'failed') continue;
      const unrun = file.assertionResults.filter((a) => a.status !== 'passed' && a.status !== 'failed');
      const ranAndFailed = file.assertionResults.some((a) => a.status === 'failed');
      failed += unrun.length > 0 ? unrun.length : ranAndFailed ? 0 : 1;
    }
  } catch {
    failed += 1;
  }
  if (r.status !== 0) exit = 1;
}
console.log(`\n${passed} passed, ${failed} failed`);
process.exit(exit || (failed > 0 ? 1 : 0));

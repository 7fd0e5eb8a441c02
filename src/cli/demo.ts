// `switchyard demo [--keep-running]`: the guided tour on a throwaway Postgres.
// Whatever happens (the end of the tour, an error, Ctrl-C at any point),
// everything it started is stopped and its temp directory removed.
import { Narrator } from '../demo/narrate.ts';
import { runTour, STEPS, type TourResult } from '../demo/tour.ts';
import { Workspace } from '../demo/workspace.ts';
import { parseArgs, UsageError } from './args.ts';

const USAGE = `Usage: switchyard demo [--keep-running]

Starts a throwaway Postgres and the switchyard proxy in front of it, and walks
through a zero-downtime table migration: dual-write, backfill, verify, read
switch, kill switch. Stops everything it started when done (or on Ctrl-C).

  --keep-running   stay up after the tour (proxy, admin endpoint, Postgres) until Ctrl-C
`;

export async function run(argv: string[]): Promise<number> {
  let keepRunning = false;
  try {
    const { values } = parseArgs(argv, {
      'keep-running': { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    });
    if (values.help) {
      process.stdout.write(USAGE);
      return 0;
    }
    keepRunning = values['keep-running'] === true;
  } catch (e) {
    if (e instanceof UsageError) {
      process.stderr.write(`switchyard demo: ${e.message}\n${USAGE}`);
      return 2;
    }
    throw e;
  }

  const n = new Narrator(process.stdout, STEPS);
  const ws = await Workspace.create();
  let waitingForCtrlC = false;

  const stopAll = async () => {
    const report = await ws.close();
    for (const r of report) {
      if (r.error) process.stdout.write(`  could not stop ${r.name}: ${r.error}\n`);
    }
    const stopped = report.filter((r) => !r.error && !r.quiet).map((r) => r.name);
    const clean = report.every((r) => !r.error);
    process.stdout.write(`Stopped: ${stopped.join(', ')}.${clean ? ' Nothing is left running.' : ''}\n`);
    return clean;
  };

  // Handled here rather than left to the default so Postgres never outlives the demo.
  let signalled = false;
  const onSignal = (sig: NodeJS.Signals) => {
    if (signalled) {
      process.stdout.write('\nStill stopping; one moment.\n');
      return;
    }
    signalled = true;
    // Stopping Postgres under the tour's feet makes its in-flight queries fail; that is expected now.
    process.on('uncaughtException', () => {});
    process.stdout.write(
      `\n${waitingForCtrlC ? '' : `${sig}: interrupted. `}Stopping everything the demo started...\n`,
    );
    void stopAll().then((clean) => process.exit(waitingForCtrlC && clean ? 0 : 130));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  let result: TourResult | undefined;
  let error: unknown;
  try {
    result = await runTour(n, ws);
  } catch (e) {
    error = e;
  }
  if (signalled) return new Promise<number>(() => {}); // the signal handler finishes and exits

  if (error) {
    process.stdout.write(`\nThe demo stopped with an error: ${(error as Error).message}\n`);
  } else if (result) {
    n.write('\n');
    if (result.unavailable.length > 0) {
      n.title('Not available in this build:');
      for (const u of result.unavailable) n.say(u);
    }
    if (result.failures.length > 0) {
      n.title('Failed checks:');
      for (const f of result.failures) n.say(f);
    }
    if (keepRunning) {
      n.title('Still running (--keep-running). Try it:');
      n.cmd(`psql "${result.proxyUrl}"`);
      n.cmd(`curl ${result.adminUrl}/status`);
      n.cmd(`npx switchyard status --admin ${result.adminUrl}`);
      n.say(`Edit ${result.configPath} (reads, killSwitch) and the proxy reloads it.`);
      n.say(`Proxy log: ${result.logPath}`);
      n.say('Press Ctrl-C to stop everything.');
      waitingForCtrlC = true;
      return new Promise<number>(() => {});
    }
  }
  const clean = await stopAll();
  process.off('SIGINT', onSignal);
  process.off('SIGTERM', onSignal);
  if (error || !clean || (result && result.failures.length > 0)) return 1;
  return 0;
}

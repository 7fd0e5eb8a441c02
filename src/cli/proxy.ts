// `switchyard proxy --config FILE`: run the sidecar until SIGTERM/SIGINT.

import { startRuntime } from '../app/runtime.ts';
import { ConfigError, loadConfigFile } from '../config/load.ts';
import { createLogger } from '../log.ts';
import { parseArgs, UsageError } from './args.ts';

const HELP = `Usage: switchyard proxy --config FILE

Runs the sidecar: listens on listen.host:listen.port, relays every client to
the upstream, mirrors writes and switches reads per the config's mappings.
The admin endpoint (admin.host:admin.port) serves /metrics, /healthz,
/readyz, /status and POST /kill-switch.

Reloads the config on SIGHUP and when the file's directory changes; an
invalid file is refused and the running config keeps serving.
SIGTERM drains (shutdown.drainTimeoutMs); a second SIGTERM ends it at once.
`;

export async function run(argv: string[]): Promise<number> {
  let configPath: string;
  try {
    const { values } = parseArgs(argv, {
      config: { type: 'string', short: 'c' },
      help: { type: 'boolean', short: 'h' },
    });
    if (values.help) {
      process.stdout.write(HELP);
      return 0;
    }
    if (!values.config) throw new UsageError('--config FILE is required');
    configPath = values.config;
  } catch (e) {
    process.stderr.write(`switchyard proxy: ${(e as Error).message}\n`);
    return 2;
  }
  let loaded: ReturnType<typeof loadConfigFile>;
  try {
    loaded = loadConfigFile(configPath);
  } catch (e) {
    process.stderr.write(`switchyard proxy: invalid config ${configPath}: ${(e as Error).message}\n`);
    return 2;
  }
  const logger = createLogger(loaded.config.log.level);
  let runtime: Awaited<ReturnType<typeof startRuntime>>;
  try {
    runtime = await startRuntime({ loaded, logger, watch: true });
  } catch (e) {
    // A config the catalog check refused is reported like one the schema
    // refused: one line on stderr. Other failures are also logged, for the
    // log pipeline of a process that was expected to run.
    if (e instanceof ConfigError) {
      process.stderr.write(`switchyard proxy: invalid config ${configPath}: ${e.message}\n`);
      return 2;
    }
    const msg = (e as Error).message;
    logger.fatal({ error: msg }, 'cannot start');
    logger.flush?.();
    process.stderr.write(`switchyard proxy: ${msg}\n`);
    return 2;
  }
  logger.info(
    { version: runtime.store.current.version, mappings: loaded.config.mappings.map((m) => m.name) },
    'switchyard proxy started',
  );
  return new Promise<number>((resolve) => {
    let signals = 0;
    let forceStop: () => void = () => {};
    const abort = new Promise<void>((r) => {
      forceStop = r;
    });
    const onSignal = (sig: NodeJS.Signals) => {
      signals++;
      if (signals > 1) {
        logger.warn({ signal: sig }, 'second signal: ending remaining sessions now');
        forceStop();
        return;
      }
      const drainMs =
        sig === 'SIGINT' && process.stdout.isTTY ? 0 : runtime.store.current.config.shutdown.drainTimeoutMs;
      logger.info(
        { signal: sig, drainMs, connections: runtime.proxy.connections },
        'shutting down: draining sessions',
      );
      runtime.shutdown(drainMs, abort).then(() => {
        logger.info('stopped');
        logger.flush?.();
        resolve(0);
      });
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });
}

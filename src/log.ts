// pino JSON logs for machines; pretty lines when a person watches a terminal.
import pino, { type Logger } from 'pino';

export type { Logger };

export function createLogger(level = 'info', opts: { pretty?: boolean; destination?: number } = {}): Logger {
  const pretty = opts.pretty ?? (process.stdout.isTTY === true && opts.destination === undefined);
  if (pretty) {
    return pino({
      level,
      base: undefined,
      transport: {
        target: 'pino-pretty',
        options: { colorize: true, translateTime: 'HH:MM:ss.l', ignore: 'pid,hostname' },
      },
    });
  }
  return pino(
    { level, base: { pid: process.pid } },
    pino.destination({ dest: opts.destination ?? 1, sync: false }),
  );
}

/** A logger that drops everything (tests and embedded use). */
export const silentLogger: Logger = pino({ level: 'silent' });

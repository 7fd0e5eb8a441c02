// A small, strict argument parser: unknown flags and missing values are errors.
import { parseArgs as nodeParseArgs, type ParseArgsConfig } from 'node:util';

export class UsageError extends Error {
  override name = 'UsageError';
}

export function parseArgs<T extends NonNullable<ParseArgsConfig['options']>>(argv: string[], options: T) {
  try {
    return nodeParseArgs({ args: argv, options, strict: true, allowPositionals: false });
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

/**
 * Parses a subcommand's arguments the way every switchyard command does:
 * --help prints the usage (exit 0); a bad flag or a missing required option
 * prints one line plus the usage on stderr (exit 2). Returns the values, or
 * the exit code when the command should stop here.
 */
export function parseCommandArgs<T extends NonNullable<ParseArgsConfig['options']>>(
  command: string,
  argv: string[],
  options: T,
  usage: string,
  required: string[],
): ReturnType<typeof parseArgs<T>>['values'] | number {
  let values: ReturnType<typeof parseArgs<T>>['values'];
  try {
    ({ values } = parseArgs(argv, options));
  } catch (e) {
    if (e instanceof UsageError) {
      process.stderr.write(`switchyard ${command}: ${e.message}\n${usage}`);
      return 2;
    }
    throw e;
  }
  const v = values as Record<string, unknown>;
  if (v.help) {
    process.stdout.write(usage);
    return 0;
  }
  const missing = required.filter((k) => !v[k]);
  if (missing.length > 0) {
    process.stderr.write(
      `switchyard ${command}: ${required.map((k) => `--${k}`).join(' and ')} ${required.length > 1 ? 'are' : 'is'} required\n${usage}`,
    );
    return 2;
  }
  return values;
}

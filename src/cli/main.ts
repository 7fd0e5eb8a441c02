// `switchyard <command>`: each command lives in its own module, loaded only when used.
const USAGE = `switchyard: Postgres wire-protocol sidecar for zero-downtime schema migrations

Usage:
  switchyard proxy    --config FILE          run the sidecar
  switchyard backfill --config FILE --mapping NAME [--batch-size N] [--max-lag-ms N] [--workers N]
                      [--replica URL ...] [--target-batch-ms N] [--dry-run]
  switchyard verify   --config FILE --mapping NAME [--direction old-to-new|new-to-old|both]
                      [--repair] [--out FILE]
  switchyard check    --config FILE --mapping NAME [--sample N] [--json]
                                             columns that do not survive up then down (or back)
  switchyard plans    --config FILE --mapping NAME [--admin URL] [--json]
                                             the recent reads' plans served from old and switched to new
  switchyard switch   --config FILE --mapping NAME [--reads old|new] [--dual-write on|off|both]
  switchyard switch   --config FILE --kill-switch on|off --reason TEXT
                                             flip a switch for the whole fleet (control table)
  switchyard status   [--admin URL] [--json]
  switchyard status   --fleet --config FILE [--json]
  switchyard demo                             embedded Postgres + proxy + guided tour

Options:
  -h, --help       show this help
  -v, --version    show the version
`;

const COMMANDS: Record<string, () => Promise<{ run(argv: string[]): Promise<number> }>> = {
  proxy: () => import('./proxy.ts'),
  backfill: () => import('./backfill.ts'),
  verify: () => import('./verify.ts'),
  check: () => import('./check.ts'),
  plans: () => import('./plans.ts'),
  status: () => import('./status.ts'),
  switch: () => import('./switch.ts'),
  demo: () => import('./demo.ts'),
};

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (cmd === undefined || cmd === '-h' || cmd === '--help' || cmd === 'help') {
    process.stdout.write(USAGE);
    return cmd === undefined ? 2 : 0;
  }
  if (cmd === '-v' || cmd === '--version') {
    const { VERSION } = await import('../version.ts');
    process.stdout.write(`${VERSION}\n`);
    return 0;
  }
  const load = COMMANDS[cmd];
  if (!load) {
    process.stderr.write(`switchyard: unknown command ${cmd} (see switchyard --help)\n`);
    return 2;
  }
  const mod = await load();
  return mod.run(rest);
}

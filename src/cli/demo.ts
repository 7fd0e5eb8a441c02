export async function run(_argv: string[]): Promise<number> {
  process.stderr.write('switchyard demo: not available yet\n');
  return 2;
}

// The demo's voice: numbered steps, a few indented lines each, commands to
// copy, and tables. Colour only on a terminal (and never with NO_COLOR).

const INDENT = '      ';

export class Narrator {
  private readonly color: boolean;

  constructor(
    private readonly out: NodeJS.WritableStream & { isTTY?: boolean },
    private readonly total: number,
  ) {
    this.color = out.isTTY === true && !process.env.NO_COLOR;
  }

  private paint(code: string, text: string): string {
    return this.color ? `\x1b[${code}m${text}\x1b[0m` : text;
  }

  write(text: string): void {
    this.out.write(text);
  }

  title(text: string): void {
    this.write(`${this.paint('1', text)}\n`);
  }

  step(n: number, text: string): void {
    this.write(`\n${this.paint('1;36', `[${n}/${this.total}] ${text}`)}\n`);
  }

  say(...lines: string[]): void {
    for (const l of lines) this.write(`${INDENT}${l}\n`);
  }

  /** A command the reader can copy. */
  cmd(text: string): void {
    this.write(`${INDENT}${this.paint('33', `$ ${text}`)}\n`);
  }

  ok(text: string): void {
    this.write(`${INDENT}${this.paint('32', `ok: ${text}`)}\n`);
  }

  fail(text: string): void {
    this.write(`${INDENT}${this.paint('31', `FAILED: ${text}`)}\n`);
  }

  unavailable(text: string): void {
    this.write(`${INDENT}${this.paint('35', `NOT AVAILABLE: ${text}`)}\n`);
  }

  /** Indented block (SQL, YAML, a status table). */
  block(text: string): void {
    for (const l of text.replace(/\n+$/, '').split('\n')) this.write(`${INDENT}  ${this.paint('2', l)}\n`);
  }

  table(header: string[], rows: string[][]): void {
    const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
    const line = (cells: string[]) =>
      cells
        .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i])))
        .join('  ')
        .trimEnd();
    this.write(`${INDENT}  ${this.paint('1', line(header))}\n`);
    for (const r of rows) this.write(`${INDENT}  ${line(r)}\n`);
  }
}

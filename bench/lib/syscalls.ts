// Socket syscalls of a process while a workload runs, from `strace -c -f`:
// how many reads and writes each transaction costs. strace slows the traced
// process many times over, so only the counts are meaningful, never the
// timings of a traced run.
import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs/promises';

const READS = new Set(['read', 'readv', 'recvfrom', 'recvmsg']);
const WRITES = new Set(['write', 'writev', 'sendto', 'sendmsg']);

export interface SyscallCounts {
  reads: number;
  writes: number;
  /** Every counted syscall by name. */
  all: Map<string, number>;
}

export class SyscallTrace {
  private constructor(
    private readonly child: ChildProcess,
    private readonly file: string,
  ) {}

  static async attach(pid: number, file: string): Promise<SyscallTrace> {
    const child = spawn('strace', ['-f', '-c', '-o', file, '-p', String(pid)], { stdio: 'ignore' });
    // strace reports nothing for the time before it has attached to every thread.
    await new Promise((r) => setTimeout(r, 300));
    return new SyscallTrace(child, file);
  }

  async stop(): Promise<SyscallCounts> {
    const exited = new Promise((r) => this.child.once('exit', r));
    this.child.kill('SIGINT');
    await exited;
    const all = new Map<string, number>();
    // % time, seconds, usecs/call, calls, [errors,] syscall
    for (const line of (await fs.readFile(this.file, 'utf8')).split('\n')) {
      const m = /^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)\s*$/.exec(line);
      if (m && m[2] !== 'total') all.set(m[2], Number(m[1]));
    }
    let reads = 0;
    let writes = 0;
    for (const [name, n] of all) {
      if (READS.has(name)) reads += n;
      if (WRITES.has(name)) writes += n;
    }
    return { reads, writes, all };
  }
}

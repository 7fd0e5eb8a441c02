// CPU time and memory of a process from /proc (Linux).
import fs from 'node:fs/promises';

const TICKS_PER_SECOND = 100;

/** User + system CPU time of a process in microseconds, undefined when unreadable. */
export async function cpuMicros(pid: number | undefined): Promise<number | undefined> {
  const t = await cpuTimes(pid);
  return t && t.user + t.sys;
}

/** User and system CPU time of a process in microseconds. */
export async function cpuTimes(pid: number | undefined): Promise<{ user: number; sys: number } | undefined> {
  if (!pid) return undefined;
  try {
    const stat = await fs.readFile(`/proc/${pid}/stat`, 'utf8');
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const us = 1_000_000 / TICKS_PER_SECOND;
    return { user: Number(rest[11]) * us, sys: Number(rest[12]) * us };
  } catch {
    return undefined;
  }
}

/** Resident memory of a process in bytes. */
export async function rssBytes(pid: number): Promise<number> {
  const status = await fs.readFile(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1]) * 1024;
}

/** 1-minute load average, for saying how busy the shared machine was. */
export async function loadAvg(): Promise<number> {
  const text = await fs.readFile('/proc/loadavg', 'utf8');
  return Number(text.split(' ')[0]);
}

/**
 * CPU time in microseconds of a process and all its children, living or
 * exited: a Postgres server's own work (the postmaster reaps each backend,
 * and the kernel adds an exited backend's time to the postmaster's cutime
 * and cstime), whichever backend did it.
 */
export async function treeCpuMicros(pid: number): Promise<number> {
  const us = 1_000_000 / TICKS_PER_SECOND;
  const fields = async (p: number | string) => {
    const stat = await fs.readFile(`/proc/${p}/stat`, 'utf8').catch(() => '');
    return stat ? stat.slice(stat.lastIndexOf(')') + 2).split(' ') : undefined;
  };
  const own = await fields(pid);
  if (!own) return Number.NaN;
  // utime, stime, cutime, cstime are fields 14-17; ppid is field 4.
  let total = (Number(own[11]) + Number(own[12]) + Number(own[13]) + Number(own[14])) * us;
  for (const entry of await fs.readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const f = await fields(entry);
    if (f && Number(f[1]) === pid) total += (Number(f[11]) + Number(f[12])) * us;
  }
  return total;
}

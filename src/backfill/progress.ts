// Progress for people and for machines: a one-line bar redrawn on a terminal
// (rows done, rate, ETA), JSON log lines at an interval otherwise.
import type { Logger } from '../log.ts';

export interface ProgressSnapshot {
  rows: number;
  inserted: number;
  total: number;
  /** Rows per second over the recent window. */
  rate: number;
  etaSeconds: number | undefined;
  note?: string;
}

/** Rate over a sliding window of (time, count) samples, so it follows the current speed. */
export class RateMeter {
  private samples: { t: number; n: number }[] = [];

  constructor(private readonly windowMs = 5000) {}

  add(n: number, t = Date.now()): void {
    this.samples.push({ t, n });
    while (this.samples.length > 2 && t - this.samples[1].t > this.windowMs) this.samples.shift();
  }

  rate(): number {
    if (this.samples.length < 2) return 0;
    const a = this.samples[0];
    const b = this.samples[this.samples.length - 1];
    return b.t > a.t ? ((b.n - a.n) * 1000) / (b.t - a.t) : 0;
  }
}

export function formatDuration(seconds: number | undefined): string {
  if (seconds === undefined || !Number.isFinite(seconds)) return '--:--';
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600);
  const mm = String(Math.floor((s % 3600) / 60)).padStart(2, '0');
  const ss = String(s % 60).padStart(2, '0');
  return h > 0 ? `${h}:${mm}:${ss}` : `${mm}:${ss}`;
}

function compact(n: number): string {
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)}M`;
  if (n >= 1e4) return `${(n / 1e3).toFixed(1)}k`;
  return String(Math.round(n));
}

export function renderBar(p: ProgressSnapshot, width = 30): string {
  const ratio = p.total > 0 ? Math.min(1, p.rows / p.total) : 1;
  const filled = Math.round(ratio * width);
  const bar = `${'#'.repeat(filled)}${'-'.repeat(width - filled)}`;
  const pct = (ratio * 100).toFixed(1).padStart(5);
  const rows = `${p.rows.toLocaleString('en-US')}/${p.total.toLocaleString('en-US')} rows`;
  const note = p.note ? `  ${p.note}` : '';
  return `[${bar}] ${pct}%  ${rows}  ${compact(p.rate)} rows/s  ETA ${formatDuration(p.etaSeconds)}${note}`;
}

export class ProgressReporter {
  private timer: NodeJS.Timeout | undefined;
  private lastLine = 0;

  constructor(
    private readonly snapshot: () => ProgressSnapshot,
    private readonly out: {
      tty: boolean;
      stream: NodeJS.WriteStream;
      log: Logger;
      intervalMs: number;
      message?: string;
    },
  ) {}

  start(): void {
    const every = this.out.tty ? 200 : this.out.intervalMs;
    this.timer = setInterval(() => this.tick(), every);
    this.timer.unref();
  }

  private tick(): void {
    const p = this.snapshot();
    if (this.out.tty) {
      const line = renderBar(p);
      this.out.stream.write(`\r${line}${' '.repeat(Math.max(0, this.lastLine - line.length))}`);
      this.lastLine = line.length;
    } else {
      this.out.log.info(
        {
          rows: p.rows,
          inserted: p.inserted,
          total: p.total,
          rate: Math.round(p.rate),
          etaSeconds: p.etaSeconds === undefined ? null : Math.round(p.etaSeconds),
          ...(p.note ? { note: p.note } : {}),
        },
        this.out.message ?? 'backfill progress',
      );
    }
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    if (this.out.tty) {
      this.tick();
      this.out.stream.write('\n');
    }
  }
}

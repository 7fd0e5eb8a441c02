// COPY through the proxy with pg-copy-streams: FROM STDIN, CopyFail, TO STDOUT,
// and ~50 MB each way with a slow reader to show the proxy applies
// backpressure instead of buffering (the in-process proxy's memory is this
// process's memory).
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import v8 from 'node:v8';
import vm from 'node:vm';
import pg from 'pg';
import { from as copyFrom, to as copyTo } from 'pg-copy-streams';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freshDatabase, type TestDatabase } from '../support/db.ts';
import { startProxy, type TestProxy } from '../support/proxy.ts';

let db: TestDatabase;
let proxy: TestProxy;
let client: pg.Client;

const ROW_PAD = 'x'.repeat(200);
const BIG_ROWS = 250_000; // ~51 MB of COPY text

beforeAll(async () => {
  db = await freshDatabase('pcopy');
  proxy = await startProxy(db);
  await db.query('CREATE TABLE t (id int PRIMARY KEY, name text)');
  await db.query('CREATE UNLOGGED TABLE big_keyed (id int PRIMARY KEY, pad text)');
  client = new pg.Client({ connectionString: proxy.url() });
  await client.connect();
});

afterAll(async () => {
  await client?.end().catch(() => {});
  await proxy?.close();
  await db?.drop();
});

// A relayed chunk becomes garbage as soon as it is written; collecting it while
// sampling makes RSS show what is really held (socket buffers), not what the
// collector has not reached yet.
v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;

interface Growth {
  /** Peak resident set size over the baseline. */
  rss: number;
  /** Peak live memory (JS heap in use + Buffers) over the baseline, measured right after a collection. */
  live: number;
}

const live = () => {
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
};

/** Peak memory growth while `run` executes, sampled after a collection every 200 ms. */
async function memoryGrowth(run: () => Promise<void>): Promise<Growth> {
  gc();
  const base = { rss: process.memoryUsage().rss, live: live() };
  const peak = { ...base };
  const sample = () => {
    gc();
    peak.rss = Math.max(peak.rss, process.memoryUsage().rss);
    peak.live = Math.max(peak.live, live());
  };
  const timer = setInterval(sample, 200);
  try {
    await run();
    return { rss: peak.rss - base.rss, live: peak.live - base.live };
  } finally {
    clearInterval(timer);
  }
}

const mb = (n: number) => `${(n / 1e6).toFixed(1)} MB`;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitFor(check: () => Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not reached in time');
    await sleep(25);
  }
}

/** What the backend is waiting on, seen from a direct connection. */
async function waitEvent(pid: number): Promise<string | null> {
  const r = await db.query<{ w: string | null }>(
    'SELECT wait_event AS w FROM pg_stat_activity WHERE pid = $1',
    [pid],
  );
  return r.rows[0]?.w ?? null;
}

describe('COPY', () => {
  it('COPY FROM STDIN loads rows', async () => {
    const stream = client.query(copyFrom('COPY t (id, name) FROM STDIN'));
    await pipeline(Readable.from(['1\tone\n2\ttwo\n', '3\tthree\n']), stream);
    expect(stream.rowCount).toBe(3);
    const r = await client.query('SELECT id, name FROM t ORDER BY id');
    expect(r.rows).toEqual([
      { id: 1, name: 'one' },
      { id: 2, name: 'two' },
      { id: 3, name: 'three' },
    ]);
  });

  it('CopyFail aborts the COPY with the server error and the session goes on', async () => {
    const stream = client.query(copyFrom('COPY t (id, name) FROM STDIN'));
    const failed = new Promise<Error>((resolve) => stream.on('error', resolve));
    stream.write('10\tten\n');
    // Destroying the stream sends CopyFail with this message.
    stream.destroy(new Error('client gave up'));
    const err = (await failed) as Error & { code?: string };
    // The server's own answer to the CopyFail, carrying the client's message.
    expect(err.message).toBe('COPY from stdin failed: client gave up');
    expect(err.code).toBe('57014');
    const r = await client.query('SELECT count(*)::int AS n FROM t WHERE id = 10');
    expect(r.rows).toEqual([{ n: 0 }]);
  });

  it('a bad row fails COPY FROM with the server error (22P02)', async () => {
    const stream = client.query(copyFrom('COPY t (id, name) FROM STDIN'));
    const err = await pipeline(Readable.from(['20\ttwenty\n', 'abc\tbad\n']), stream).catch((e) => e);
    expect(err.code).toBe('22P02');
    expect((await client.query('SELECT count(*)::int AS n FROM t')).rows).toEqual([{ n: 3 }]);
  });

  it('COPY TO STDOUT returns the rows', async () => {
    const chunks: Buffer[] = [];
    const collect = new Writable({
      write(chunk: Buffer, _e, cb) {
        chunks.push(chunk);
        cb();
      },
    });
    await pipeline(client.query(copyTo('COPY (SELECT id, name FROM t ORDER BY id) TO STDOUT')), collect);
    expect(Buffer.concat(chunks).toString()).toBe('1\tone\n2\ttwo\n3\tthree\n');
  });

  it('a ~50 MB COPY TO STDOUT to a stalled reader: the server blocks, memory stays bounded', async () => {
    let bytes = 0;
    let lines = 0;
    let stalled = false;
    let release!: () => void;
    const resumed = new Promise<void>((r) => {
      release = r;
    });
    const sink = new Writable({
      highWaterMark: 16 * 1024,
      write(chunk: Buffer, _e, cb) {
        bytes += chunk.length;
        for (let i = chunk.indexOf(10); i >= 0; i = chunk.indexOf(10, i + 1)) lines++;
        if (!stalled && bytes > 1_000_000) {
          stalled = true;
          resumed.then(() => cb());
        } else cb();
      },
    });
    const pid = (client as unknown as { processID: number }).processID;
    const sql = `COPY (SELECT g, '${ROW_PAD}' FROM generate_series(1, ${BIG_ROWS}) g) TO STDOUT`;
    gc();
    const liveBefore = live();
    const rssBefore = process.memoryUsage().rss;
    let liveWhileStalled = 0;
    let rssWhileStalled = 0;
    const growth = await memoryGrowth(async () => {
      const done = pipeline(client.query(copyTo(sql)), sink);
      // The reader stopped: with backpressure the proxy stops reading too and
      // the server ends up waiting to write to its client.
      await waitFor(async () => stalled && (await waitEvent(pid)) === 'ClientWrite');
      const heldAt = bytes;
      await sleep(300);
      expect(bytes).toBe(heldAt);
      expect(bytes).toBeLessThan(5_000_000);
      // What the process holds while the reader is stalled: with backpressure
      // only what was in flight when the proxy stopped reading.
      gc();
      liveWhileStalled = live() - liveBefore;
      rssWhileStalled = process.memoryUsage().rss - rssBefore;
      release();
      await done;
    });
    console.log(`COPY TO STDOUT ${mb(bytes)}: peak growth RSS ${mb(growth.rss)}, live ${mb(growth.live)}`);
    expect(lines).toBe(BIG_ROWS);
    expect(bytes).toBeGreaterThan(50_000_000);
    console.log(
      `COPY TO STDOUT: growth while the reader stalled: live ${mb(liveWhileStalled)}, RSS ${mb(rssWhileStalled)}`,
    );
    // Without backpressure the proxy would have read the whole result into its
    // socket buffer while the reader stalled. (Once the reader resumes, the
    // client in this same process holds chunks in flight, so the bound is
    // taken during the stall.) RSS also holds heap pages the collector keeps,
    // hence its wider bound.
    expect(liveWhileStalled).toBeLessThan(10_000_000);
    expect(rssWhileStalled).toBeLessThan(25_000_000);
  });

  it('a ~50 MB COPY FROM STDIN while the server is blocked: the client is held back, memory stays bounded', async () => {
    // Another transaction holds an uncommitted row with key 5000: the COPY waits
    // on it mid-stream and stops reading its input.
    const blocker = new pg.Client({ connectionString: db.url });
    await blocker.connect();
    await blocker.query('BEGIN');
    await blocker.query("INSERT INTO big_keyed VALUES (5000, 'blocker')");
    let produced = 0;
    let n = 0;
    const rows = Readable.from(
      (function* () {
        while (n < BIG_ROWS) {
          let s = '';
          for (let i = 0; i < 500 && n < BIG_ROWS; i++) s += `${++n}\t${ROW_PAD}\n`;
          produced += s.length;
          yield s;
        }
      })(),
    );
    const pid = (client as unknown as { processID: number }).processID;
    const stream = client.query(copyFrom('COPY big_keyed (id, pad) FROM STDIN'));
    gc();
    const liveBefore = live();
    const rssBefore = process.memoryUsage().rss;
    let liveWhileBlocked = 0;
    let rssWhileBlocked = 0;
    const growth = await memoryGrowth(async () => {
      const done = pipeline(rows, stream);
      await waitFor(async () => (await waitEvent(pid)) === 'transactionid');
      // The producer comes to a stop: the proxy stopped reading from the client.
      let last = -1;
      await waitFor(async () => {
        const same = produced === last;
        last = produced;
        await sleep(200);
        return same;
      });
      expect(produced).toBeLessThan(15_000_000);
      gc();
      liveWhileBlocked = live() - liveBefore;
      rssWhileBlocked = process.memoryUsage().rss - rssBefore;
      await blocker.query('ROLLBACK');
      await done;
    });
    await blocker.end();
    console.log(
      `COPY FROM STDIN ${mb(produced)}: peak growth RSS ${mb(growth.rss)}, live ${mb(growth.live)}; ` +
        `while blocked: live ${mb(liveWhileBlocked)}, RSS ${mb(rssWhileBlocked)}`,
    );
    expect(stream.rowCount).toBe(BIG_ROWS);
    expect(produced).toBeGreaterThan(50_000_000);
    // Bounded while the server is blocked (once it resumes, the producer and
    // the client in this same process hold chunks in flight, which made a
    // whole-run peak noisy): far below the 50 MB the client would otherwise
    // have pushed into the proxy.
    expect(liveWhileBlocked).toBeLessThan(10_000_000);
    expect(rssWhileBlocked).toBeLessThan(30_000_000);
    const r = await db.query('SELECT count(*)::int AS n, max(id) AS m FROM big_keyed');
    expect(r.rows).toEqual([{ n: BIG_ROWS, m: BIG_ROWS }]);
  });
});

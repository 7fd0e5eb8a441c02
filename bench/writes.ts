// `npx tsx bench/writes.ts`: CPU per round of the ways a batch of reply
// pieces can reach a socket (a rewritten statement's replies are a made-up
// CommandComplete and a forwarded ReadyForQuery): one corked writev, one copy
// and one write, one write per piece, and a single-piece write for reference.
// A peer process answers each batch with one byte, so every round is a real
// ping-pong on loopback TCP, as in the proxy. CPU comes from process.cpuUsage,
// which other work on the machine does not inflate the way it inflates time.
//
//   ROUNDS=20000 REPEAT=5 npx tsx bench/writes.ts
import { spawn } from 'node:child_process';
import net from 'node:net';

const ROUNDS = Number(process.env.ROUNDS ?? 20_000);
const REPEAT = Number(process.env.REPEAT ?? 5);

const PEER = `
const net = require('node:net');
const one = Buffer.from([1]);
net.createServer({ noDelay: true }, (s) => s.on('data', () => s.write(one)))
  .listen(0, '127.0.0.1', function () { process.stdout.write(String(this.address().port)); });`;

async function main(): Promise<void> {
  const peer = spawn(process.execPath, ['-e', PEER], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<number>((r) => peer.stdout.once('data', (d) => r(Number(String(d)))));
  const s = net.connect({ host: '127.0.0.1', port, noDelay: true });
  await new Promise((r) => s.once('connect', r));
  const tag = Buffer.from('C\0\0\0\x0dUPDATE 1\0', 'latin1');
  // The forwarded piece is a slice of a larger read buffer, as in the proxy.
  const z = Buffer.alloc(65536).subarray(100, 106);
  const ways: Record<string, (p: Buffer[]) => void> = {
    'cork + writev': (p) => {
      s.cork();
      for (const b of p) s.write(b);
      s.uncork();
    },
    'concat + write': (p) => s.write(Buffer.concat(p, p[0].length + p[1].length)),
    'write per piece': (p) => {
      for (const b of p) s.write(b);
    },
    'one piece (reference)': (p) => s.write(p[1]),
  };
  let answered: () => void = () => {};
  s.on('data', () => answered());
  const runs = new Map<string, number[]>();
  for (let r = 0; r < REPEAT; r++) {
    for (const [name, write] of Object.entries(ways)) {
      const c0 = process.cpuUsage();
      for (let i = 0; i < ROUNDS; i++) {
        const done = new Promise<void>((res) => (answered = res));
        write([Buffer.from(tag), z]);
        await done;
      }
      const c = process.cpuUsage(c0);
      runs.set(name, [...(runs.get(name) ?? []), (c.user + c.system) / ROUNDS]);
    }
  }
  process.stdout.write(`${ROUNDS} rounds x ${REPEAT}, CPU µs per round (user+sys), median and runs\n`);
  for (const [name, v] of runs) {
    const sorted = [...v].sort((a, b) => a - b);
    process.stdout.write(
      `${name.padEnd(24)} ${sorted[Math.floor(sorted.length / 2)].toFixed(2).padStart(6)}   ${v.map((x) => x.toFixed(2)).join(' ')}\n`,
    );
  }
  s.destroy();
  peer.kill();
}

main().catch((e) => {
  process.stderr.write(`writes failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exitCode = 1;
});

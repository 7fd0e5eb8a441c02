// A batch of pieces (what one incoming chunk produced) reaches the socket as
// one write: a rewritten statement's replies are a made-up tag between
// forwarded slices, and each extra socket write is a syscall on every round.
import net from 'node:net';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { NetTransport } from '../../src/transport/net.ts';

const open: net.Socket[] = [];
let server: net.Server | undefined;

afterEach(async () => {
  for (const s of open.splice(0)) s.destroy();
  await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
  server = undefined;
});

/** A connected pair: the transport's socket and the peer that reads what it writes. */
async function pair(): Promise<{ transport: NetTransport; received: () => Promise<Buffer> }> {
  const chunks: Buffer[] = [];
  const accepted = new Promise<net.Socket>((resolve) => {
    server = net.createServer((peer) => {
      open.push(peer);
      peer.on('data', (c) => chunks.push(c));
      resolve(peer);
    });
  });
  await new Promise<void>((r) => server!.listen(0, '127.0.0.1', () => r()));
  const port = (server!.address() as net.AddressInfo).port;
  const socket = net.connect({ host: '127.0.0.1', port });
  open.push(socket);
  await new Promise((r) => socket.once('connect', r));
  const peer = await accepted;
  return {
    transport: new NetTransport(socket),
    received: async () => {
      socket.end();
      await new Promise((r) => peer.once('end', r));
      return Buffer.concat(chunks);
    },
  };
}

function bytes(n: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = (i * 7 + seed) % 256;
  return b;
}

describe('NetTransport.write', () => {
  it('writes a small batch of pieces with one socket write, in order', async () => {
    const { transport, received } = await pair();
    const write = vi.spyOn(transport.socket, 'write');
    const pieces = [bytes(14, 1), bytes(6, 2), bytes(300, 3), bytes(1, 4)];
    expect(transport.write(pieces)).toBe(true);
    expect(write).toHaveBeenCalledTimes(1);
    expect((await received()).equals(Buffer.concat(pieces))).toBe(true);
  });

  it('writes a large batch corked (one writev), in order, without copying it', async () => {
    const { transport, received } = await pair();
    const cork = vi.spyOn(transport.socket, 'cork');
    const uncork = vi.spyOn(transport.socket, 'uncork');
    const pieces = [bytes(40_000, 1), bytes(6, 2), bytes(30_000, 3)];
    transport.write(pieces);
    expect(cork).toHaveBeenCalledTimes(1);
    expect(uncork).toHaveBeenCalledTimes(1);
    expect((await received()).equals(Buffer.concat(pieces))).toBe(true);
  });

  it.each([
    ['copied', 8_000],
    ['corked', 40_000],
  ])(
    'reports backpressure of a %s batch once the socket buffer is past its high-water mark',
    async (_, size) => {
      const { transport } = await pair();
      const piece = bytes(size / 2, 5);
      // Whatever the kernel takes at once, enough batches fill it while the event loop is held.
      let ok = true;
      for (let i = 0; i < 10_000 && ok; i++) ok = transport.write([piece, piece]);
      expect(ok).toBe(false);
      expect(transport.pendingBytes).toBeGreaterThanOrEqual(transport.socket.writableHighWaterMark);
    },
  );
});

// The thinnest proxy over switchyard's own socket layer (src/transport): each
// client connection relayed byte for byte to its own upstream connection,
// with the same backpressure as the session. Under Bun it runs on Bun's
// native sockets, under Node on node:net: the floor of a proxy on that
// runtime's transport, measured beside switchyard on the same runtime.
//
//   bun bench/transport-forwarder.ts LISTEN_PORT UPSTREAM_HOST UPSTREAM_PORT
import { BUN_SOCKETS, bunSockets } from '../src/transport/bun.ts';
import { NODE_SOCKETS } from '../src/transport/net.ts';
import type { Transport } from '../src/transport/transport.ts';

const [listenPort, upstreamHost, upstreamPort] = process.argv.slice(2);
if (!listenPort || !upstreamHost || !upstreamPort) {
  process.stderr.write('usage: transport-forwarder.ts LISTEN_PORT UPSTREAM_HOST UPSTREAM_PORT\n');
  process.exit(2);
}
const layer = bunSockets ? BUN_SOCKETS : NODE_SOCKETS;

function relay(to: Transport, from: Transport, chunk: Buffer): void {
  if (!to.write([chunk]) && !from.paused) {
    from.pause();
    to.onceDrain(() => from.resume());
  }
}

await layer.listen(
  '127.0.0.1',
  Number(listenPort),
  (client) => {
    // Bytes before the upstream is connected wait, copied (the chunk's memory may be reused).
    const early: Buffer[] = [];
    let upstream: Transport | undefined;
    let done = false;
    const close = () => {
      if (done) return;
      done = true;
      client.destroy();
      upstream?.destroy();
    };
    client.bind({
      data: (chunk) => {
        if (upstream) relay(upstream, client, chunk);
        else early.push(Buffer.from(chunk));
      },
      closed: close,
    });
    layer.connect({ host: upstreamHost, port: Number(upstreamPort) }).then((up) => {
      if (done) return up.destroy();
      upstream = up;
      up.bind({ data: (chunk) => relay(client, up, chunk), closed: close });
      if (early.length > 0) up.write(early.splice(0));
    }, close);
  },
  () => {},
);
process.stdout.write(`ready (${layer.name})\n`);
process.on('SIGTERM', () => process.exit(0));

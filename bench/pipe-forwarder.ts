// The thinnest possible proxy in Node: every client socket piped to its own
// upstream socket and back, no framing, no inspection. Its cost is the floor
// any Node proxy pays (event loop, syscalls, buffers), so switchyard is
// measured against it in the same run.
//
//   node --import tsx bench/pipe-forwarder.ts LISTEN_PORT UPSTREAM_HOST UPSTREAM_PORT
import net from 'node:net';

const [listenPort, upstreamHost, upstreamPort] = process.argv.slice(2);
if (!listenPort || !upstreamHost || !upstreamPort) {
  process.stderr.write('usage: pipe-forwarder.ts LISTEN_PORT UPSTREAM_HOST UPSTREAM_PORT\n');
  process.exit(2);
}

const server = net.createServer({ noDelay: true }, (client) => {
  const upstream = net.connect({ host: upstreamHost, port: Number(upstreamPort), noDelay: true });
  client.pipe(upstream);
  upstream.pipe(client);
  const done = () => {
    client.destroy();
    upstream.destroy();
  };
  client.on('error', done);
  upstream.on('error', done);
  client.on('close', done);
  upstream.on('close', done);
});
server.listen(Number(listenPort), '127.0.0.1', () => process.stdout.write('ready\n'));
process.on('SIGTERM', () => process.exit(0));

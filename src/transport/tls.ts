// TLS on both sides of the proxy, over the node:net transport.
import { readFileSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import type { Config } from '../config/schema.ts';
import { NetTransport } from './net.ts';
import type { TlsUpgrade, Transport } from './transport.ts';

/** Server side: the client sent SSLRequest and was answered S. */
export function clientTls(conf: { cert: string; key: string }): TlsUpgrade {
  const context = tls.createSecureContext({ cert: readFileSync(conf.cert), key: readFileSync(conf.key) });
  return (t) => {
    const raw = socketOf(t);
    return new Promise((resolve, reject) => {
      const secure = new tls.TLSSocket(raw, { isServer: true, secureContext: context });
      secure.once('secure', () => resolve(new NetTransport(secure)));
      secure.once('error', reject);
      raw.once('close', () => reject(new Error('client closed during TLS handshake')));
    });
  };
}

/** Client side: SSLRequest to the upstream, then a TLS handshake per sslmode. */
export function upstreamTls(conf: Config['upstream']): TlsUpgrade | undefined {
  if (conf.sslmode === 'disable') return undefined;
  const ca = conf.ca ? readFileSync(conf.ca) : undefined;
  const verify = conf.sslmode === 'verify-full';
  return (t) => {
    const socket = socketOf(t);
    return new Promise((resolve, reject) => {
      socket.once('error', reject);
      socket.once('data', (answer: Buffer) => {
        if (answer[0] !== 0x53) {
          reject(new Error('server does not support TLS'));
          return;
        }
        const host = hostOf(conf);
        const secure = tls.connect({
          socket,
          ca,
          host,
          servername: host && net.isIP(host) === 0 ? host : undefined,
          rejectUnauthorized: verify,
          checkServerIdentity: verify ? tls.checkServerIdentity : () => undefined,
        });
        secure.once('secureConnect', () => {
          socket.off('error', reject);
          resolve(new NetTransport(secure));
        });
        secure.once('error', reject);
      });
      socket.write(Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]));
    });
  };
}

/** The socket under a transport, detached from its owner so the handshake can take it over. */
function socketOf(t: Transport): net.Socket {
  if (!(t instanceof NetTransport)) throw new Error('TLS needs a node:net transport');
  t.unbind();
  return t.socket;
}

function hostOf(conf: Config['upstream']): string | undefined {
  if (conf.url) return new URL(conf.url).hostname;
  return conf.host;
}

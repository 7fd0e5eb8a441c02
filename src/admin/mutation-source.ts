// Who may change state through the admin port. A loopback admin needs no token,
// so without this check any web page open in a browser on the host could flip
// the kill switch: a cross-site `text/plain` POST needs no CORS preflight, and a
// DNS-rebinding page even reads the answer. Browsers always name the page in
// `Origin` on a cross-site POST and cannot forge `Host`; curl and scripts send
// no Origin and the address they dialled as Host, so they keep working.
import { isIP } from 'node:net';

export interface MutationSource {
  origin: string | undefined;
  host: string | undefined;
  /** The address the connection arrived on (req.socket.localAddress). */
  localAddress: string | undefined;
}

export interface AdminAddress {
  /** The configured listen host (`admin.host`). */
  host: string;
  /** The port actually bound. */
  port: number;
}

const LOOPBACK_NAMES = ['127.0.0.1', 'localhost', '[::1]'];

function isLoopback(h: string): boolean {
  const bare = h.replace(/^\[|\]$/g, '').toLowerCase();
  if (bare === 'localhost' || bare === '::1') return true;
  return isIP(bare) === 4 && bare.startsWith('127.');
}

function isWildcard(h: string): boolean {
  return h === '' || h === '0.0.0.0' || h === '::' || h === '[::]';
}

/** An address as it appears in a Host header: IPv6 in brackets, IPv4-mapped IPv6 unwrapped. */
function hostForm(address: string): string {
  const a = address.toLowerCase().replace(/^\[|\]$/g, '');
  if (a.startsWith('::ffff:') && isIP(a.slice(7)) === 4) return a.slice(7);
  return isIP(a) === 6 ? `[${a}]` : a;
}

/**
 * The host names that are this admin's own: the listen host, the address the
 * connection arrived on (what `curl http://<pod IP>:port` sends when the port
 * listens on 0.0.0.0), and the loopback spellings when either is loopback.
 */
export function ownHostNames(admin: AdminAddress, localAddress: string | undefined): Set<string> {
  const names = new Set<string>();
  if (!isWildcard(admin.host)) names.add(hostForm(admin.host));
  if (localAddress) names.add(hostForm(localAddress));
  if ([...names].some(isLoopback)) for (const n of LOOPBACK_NAMES) names.add(n);
  return names;
}

/** A Host header value split into name and port (80 when absent: the admin speaks plain http). */
function splitHost(value: string): { name: string; port: number } | null {
  const m = /^(\[[0-9a-f:.]+\]|[^:[\]]+)(?::(\d{1,5}))?$/i.exec(value.trim());
  if (!m) return null;
  return { name: m[1].toLowerCase(), port: m[2] === undefined ? 80 : Number(m[2]) };
}

/** Why a mutation from this source is refused, or null when it may proceed. */
export function refuseMutationSource(src: MutationSource, admin: AdminAddress): string | null {
  const own = ownHostNames(admin, src.localAddress);
  const host = src.host === undefined ? null : splitHost(src.host);
  if (!host || !own.has(host.name) || host.port !== admin.port) {
    return `Host ${src.host === undefined ? '(none)' : JSON.stringify(src.host)} is not this admin's own address (${[
      ...own,
    ]
      .map((n) => `${n}:${admin.port}`)
      .join(', ')}); state changes are refused to guard against DNS rebinding`;
  }
  if (src.origin !== undefined) {
    const origins = new Set([...own].map((n) => `http://${n}:${admin.port}`));
    if (admin.port === 80) for (const n of own) origins.add(`http://${n}`);
    if (!origins.has(src.origin.trim().toLowerCase())) {
      return `Origin ${JSON.stringify(src.origin)} is not this admin's own; state changes from web pages are refused`;
    }
  }
  return null;
}

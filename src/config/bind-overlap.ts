/**
 * Whether two socket addresses a process binds take the same port, as
 * Linux sees it: the same address spelt two ways (`::1`, `0:0::1`), or an
 * unspecified address beside any address of its family (`0.0.0.0:443` takes
 * port 443 on 127.0.0.1 too), and `::` beside anything (Node binds it
 * dual-stack, so it takes the port on IPv4 as well). Port 0 (any free port)
 * never overlaps. Pure.
 */
import * as net from 'node:net';

export interface BindAddress {
  readonly host: string;
  readonly port: number;
}

/**
 * Canonical spelling of an IP literal: IPv6 compressed and lowercase (a zone
 * index `%eth0` kept as written: another zone is another address),
 * IPv4-mapped IPv6 as IPv4.
 */
function canonicalHost(host: string): string {
  if (!net.isIPv6(host)) return host;
  const zoneAt = host.indexOf('%');
  const [address, zone] = zoneAt < 0 ? [host, ''] : [host.slice(0, zoneAt), host.slice(zoneAt)];
  if (!net.isIPv6(address)) return host;
  const v6 = new URL(`http://[${address}]/`).hostname.slice(1, -1);
  if (zone !== '') return `${v6}${zone}`;
  const mapped = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(v6);
  if (mapped === null) return v6;
  const [hi, lo] = [parseInt(mapped[1] as string, 16), parseInt(mapped[2] as string, 16)];
  return `${hi >> 8}.${hi & 0xff}.${lo >> 8}.${lo & 0xff}`;
}

/** Undefined when `a` and `b` can both be bound; else why not. */
export function bindOverlap(a: BindAddress, b: BindAddress): string | undefined {
  if (a.port === 0 || b.port === 0 || a.port !== b.port) return undefined;
  const [x, y] = [canonicalHost(a.host), canonicalHost(b.host)];
  if (x === y) return 'the same address';
  for (const [any, other] of [
    [x, y],
    [y, x],
  ] as const) {
    if (any === '::') return `'::' takes the port on every IPv6 and IPv4 address, ${other} included`;
    if (any === '0.0.0.0' && net.isIPv4(other)) return `'0.0.0.0' takes the port on every IPv4 address, ${other} included`;
  }
  return undefined;
}

/**
 * The key that per-address limits (rate, handshake budget, TLS handshake
 * slots, penalty box) count a client by. An IPv4 address is itself. An
 * IPv6 address counts by its /64 prefix: one subscriber or one host gets a
 * whole /64, so counting each of its 2^64 addresses alone would let one
 * attacker through every per-address limit. An IPv4-mapped IPv6 address
 * (what a dual-stack listener reports) counts as its IPv4 address. Pure.
 */
import { isIPv4, isIPv6 } from 'node:net';

/** Hextets of an IPv6 address in canonical (WHATWG URL) form, expanded to 8 numbers; undefined if it is not one. */
function hextets(address: string): number[] | undefined {
  let canonical: string;
  try {
    // The URL parser canonicalises (lowercase, '::', embedded IPv4 as hex) and refuses what is not IPv6.
    canonical = new URL(`http://[${address}]/`).hostname.slice(1, -1);
  } catch {
    return undefined;
  }
  const [head = '', tail] = canonical.split('::');
  const left = head === '' ? [] : head.split(':');
  const right = tail === undefined || tail === '' ? [] : tail.split(':');
  const zeros = tail === undefined ? 0 : 8 - left.length - right.length;
  const all = [...left, ...Array.from({ length: zeros }, () => '0'), ...right].map((h) => Number.parseInt(h, 16));
  return all.length === 8 && all.every((n) => Number.isInteger(n) && n >= 0 && n <= 0xffff) ? all : undefined;
}

export function sourceKey(address: string): string {
  if (isIPv4(address)) return address;
  // A zone index (fe80::1%eth0) names an interface, not a different client.
  const bare = address.split('%', 1)[0] ?? address;
  if (!isIPv6(bare)) return address;
  const h = hextets(bare);
  if (h === undefined) return address;
  const [a = 0, b = 0, c = 0, d = 0, e = 0, f = 0, g = 0, i = 0] = h;
  if (a === 0 && b === 0 && c === 0 && d === 0 && e === 0 && f === 0xffff) return `${g >> 8}.${g & 0xff}.${i >> 8}.${i & 0xff}`;
  return `${[a, b, c, d].map((n) => n.toString(16)).join(':')}::/64`;
}

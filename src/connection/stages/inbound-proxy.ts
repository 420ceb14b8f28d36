/**
 * Stage: the inbound PROXY protocol header, required from (and only read
 * from) the listener's trusted load balancers. The parse decision is pure
 * (`judgeProxyHeader`); `readInboundProxy` only peeks the socket.
 */
import * as net from 'node:net';
import type { Socket } from 'node:net';
import type { InboundProxyProtocol } from '../../config/types.js';
import { parseProxyHeader, type ProxyAddresses } from '../../protocol/proxy-protocol.js';
import { peekSocket, type IncrementalParser, type PeekResult } from '../peek.js';
import { pass, refuse, type StageResult } from './result.js';

/** The client address and port a header carried; undefined: keep the TCP peer's (no header expected, or a LOCAL/UNKNOWN one). */
export type ClientEndpoint = { readonly address: string; readonly port: number } | undefined;

export interface ProxyHeaderRead {
  readonly addresses: ProxyAddresses | undefined;
  readonly version: 1 | 2;
}

/** Most bytes a PROXY header may take (v2's 4096-byte bound and its 16-byte fixed part). */
const MAX_PROXY_HEADER_BYTES = 4096 + 16;

/** Whether `address` (an IPv4-mapped IPv6 address counts as IPv4) is inside one of `cidrs`. */
export function inCidrs(address: string, cidrs: readonly string[]): boolean {
  const list = new net.BlockList();
  for (const cidr of cidrs) {
    const [ip, bits] = cidr.split('/') as [string, string | undefined];
    const type = net.isIPv6(ip) ? 'ipv6' : 'ipv4';
    list.addSubnet(ip, Number(bits ?? (type === 'ipv6' ? 128 : 32)), type);
  }
  const plain = address.startsWith('::ffff:') && net.isIPv4(address.slice(7)) ? address.slice(7) : address;
  return list.check(plain, net.isIPv6(plain) ? 'ipv6' : 'ipv4');
}

export const proxyHeaderParser: IncrementalParser<ProxyHeaderRead> = (buffered) => {
  const parsed = parseProxyHeader(buffered);
  if (parsed.status === 'incomplete') return { status: 'incomplete' };
  if (parsed.status === 'not-proxy') return { status: 'invalid', reason: 'a PROXY protocol header is required from this address' };
  if (parsed.status === 'invalid') return { status: 'invalid', reason: parsed.reason };
  return { status: 'complete', value: { addresses: parsed.header.addresses, version: parsed.version }, consumed: parsed.headerBytes };
};

/** What a peeked PROXY header means for the connection. Pure. */
export function judgeProxyHeader(peeked: PeekResult<ProxyHeaderRead>, versions: InboundProxyProtocol['versions']): StageResult<ClientEndpoint> {
  if (peeked.status === 'timeout') return refuse('proxy-header-timeout', 'no complete PROXY header in time');
  if (peeked.status === 'closed') return refuse('client-closed', 'closed before the PROXY header');
  if (peeked.status === 'invalid') return refuse('proxy-header-invalid', peeked.reason);
  const { version, addresses } = peeked.value;
  if (versions !== 'any' && `v${version}` !== versions) return refuse('proxy-header-invalid', `PROXY v${version} received, ${versions} required`);
  return pass(addresses === undefined ? undefined : { address: addresses.sourceAddress, port: addresses.sourcePort });
}

/** Read the header when the peer is a trusted load balancer; anyone else sends none and keeps its own address. */
export async function readInboundProxy(raw: Socket, peer: string, inbound: InboundProxyProtocol | undefined, timeoutMs: number): Promise<StageResult<ClientEndpoint>> {
  if (inbound === undefined || !inCidrs(peer, inbound.trustedCidrs)) return pass(undefined);
  const peeked = await peekSocket(raw, proxyHeaderParser, { maxBytes: MAX_PROXY_HEADER_BYTES, timeoutMs, unshiftAll: false });
  return judgeProxyHeader(peeked, inbound.versions);
}

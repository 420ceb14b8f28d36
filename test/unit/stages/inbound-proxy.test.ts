import { describe, expect, it } from 'vitest';
import { inCidrs, judgeProxyHeader, proxyHeaderParser, type ProxyHeaderRead } from '../../../src/connection/stages/inbound-proxy.js';
import { encodeProxyV1, encodeProxyV2 } from '../../../src/protocol/proxy-protocol.js';

const v2Read: ProxyHeaderRead = { version: 2, addresses: { family: 'tcp4', sourceAddress: '198.51.100.7', sourcePort: 40000, destinationAddress: '192.0.2.1', destinationPort: 443 } };

describe('judgeProxyHeader', () => {
  it.each([
    ['timeout', { status: 'timeout' }, 'any', { ok: false, reason: 'proxy-header-timeout', detail: 'no complete PROXY header in time' }],
    ['closed', { status: 'closed' }, 'any', { ok: false, reason: 'client-closed', detail: 'closed before the PROXY header' }],
    ['invalid', { status: 'invalid', reason: 'PROXY v2 CRC32C mismatch' }, 'any', { ok: false, reason: 'proxy-header-invalid', detail: 'PROXY v2 CRC32C mismatch' }],
    ['wrong version', { status: 'complete', value: v2Read, consumed: 28 }, 'v1', { ok: false, reason: 'proxy-header-invalid', detail: 'PROXY v2 received, v1 required' }],
    ['v2 with addresses', { status: 'complete', value: v2Read, consumed: 28 }, 'v2', { ok: true, value: { address: '198.51.100.7', port: 40000 } }],
    ['LOCAL / UNKNOWN: keep the peer', { status: 'complete', value: { version: 1, addresses: undefined }, consumed: 15 }, 'any', { ok: true, value: undefined }],
  ] as const)('%s', (_label, peeked, versions, expected) => {
    expect(judgeProxyHeader(peeked, versions)).toEqual(expected);
  });
});

describe('proxyHeaderParser', () => {
  it('reads a v1 header and its length', () => {
    const header = encodeProxyV1({ family: 'tcp4', sourceAddress: '198.51.100.7', sourcePort: 40000, destinationAddress: '192.0.2.1', destinationPort: 443 });
    const parsed = proxyHeaderParser(Buffer.concat([header, Buffer.from([22, 3, 1])]));
    expect(parsed).toMatchObject({ status: 'complete', consumed: header.length, value: { version: 1, addresses: { sourceAddress: '198.51.100.7', sourcePort: 40000 } } });
  });

  it('reads a v2 header', () => {
    const header = encodeProxyV2({ addresses: { family: 'tcp4', sourceAddress: '198.51.100.8', sourcePort: 1234, destinationAddress: '192.0.2.1', destinationPort: 443 } });
    expect(proxyHeaderParser(header)).toMatchObject({ status: 'complete', consumed: header.length, value: { version: 2, addresses: { sourceAddress: '198.51.100.8', sourcePort: 1234 } } });
  });

  it('refuses a ClientHello where a header is required, and waits on a partial header', () => {
    expect(proxyHeaderParser(Buffer.from([22, 3, 1, 0, 5, 1, 0, 0, 1, 0]))).toEqual({ status: 'invalid', reason: 'a PROXY protocol header is required from this address' });
    expect(proxyHeaderParser(Buffer.from('PROXY TCP4 198.'))).toEqual({ status: 'incomplete' });
  });
});

describe('inCidrs', () => {
  it.each([
    ['10.1.2.3', ['10.0.0.0/8'], true],
    ['11.1.2.3', ['10.0.0.0/8'], false],
    ['::ffff:10.1.2.3', ['10.0.0.0/8'], true],
    ['127.0.0.1', ['127.0.0.1'], true],
    ['2001:db8::1', ['2001:db8::/32'], true],
    ['2001:db9::1', ['2001:db8::/32', '10.0.0.0/8'], false],
    ['10.0.0.1', [], false],
  ] as const)('%s in %j: %s', (address, cidrs, expected) => {
    expect(inCidrs(address, cidrs)).toBe(expected);
  });
});

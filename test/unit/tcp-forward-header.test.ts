/**
 * The outbound PROXY v2 header's SSL TLV (issue 10, finding 8): CN is the
 * verified DANE name or absent, never certificate text; verify is 0 only for
 * an authenticated client. The end-to-end attack is in
 * test/e2e/audit8-proxy-v2-cn.test.ts.
 */
import type * as tls from 'node:tls';
import { describe, expect, it } from 'vitest';
import type { ProxyHeaderConfig } from '../../src/config/types.js';
import type { ConnectionContext } from '../../src/connection/forwarder.js';
import { parseProxyHeader, PP2_SSL_SUBTYPE } from '../../src/protocol/proxy-protocol.js';
import { buildProxyHeader } from '../../src/forward/tcp-forward.js';

const NAME = 'nas1._device.radsec.test';

/** The parts of a TLSSocket buildProxyHeader reads. */
const socket = { alpnProtocol: false, getProtocol: () => 'TLSv1.3', getCipher: () => ({ name: 'TLS_AES_128_GCM_SHA256' }) } as unknown as tls.TLSSocket;

const V2: ProxyHeaderConfig = { version: 'v2', tlvTypes: { name: 0xe4, certHash: 0xe5, tlsa: 0xe6 }, crc32c: false, maxHeaderBytes: 500 };

function context(identity: ConnectionContext['identity']): ConnectionContext {
  // Only the fields buildProxyHeader reads.
  return {
    clientAddress: '192.0.2.7',
    clientPort: 40000,
    localAddress: '192.0.2.1',
    localPort: 2083,
    hello: { serverName: 'radsec.proxy.test' },
    identity,
    status: identity ? 'authenticated' : 'no-certificate',
  } as unknown as ConnectionContext;
}

/** A leaf whose subject names somebody else: it must never be read. */
const leaf = {
  der: Buffer.from('not really a certificate'),
  get subject(): string {
    throw new Error('the PROXY header must not read the certificate subject');
  },
};

describe('buildProxyHeader: the SSL TLV tells the truth', () => {
  it('authenticated: CN = the verified DANE name, verify 0, a certificate on this connection', () => {
    const header = buildProxyHeader(socket, context({ name: NAME, leaf: leaf as never, tlsa: [3, 1, 1] }), V2);
    const parsed = parseProxyHeader(header ?? Buffer.alloc(0));
    expect(parsed.status).toBe('complete');
    if (parsed.status !== 'complete') return;
    expect(parsed.header.ssl).toMatchObject({ client: 0x07, verify: 0, cn: NAME, version: 'TLSv1.3', cipher: 'TLS_AES_128_GCM_SHA256' });
    expect(parsed.header.ssl?.subTlvs.filter((t) => t.type === PP2_SSL_SUBTYPE.CN)).toHaveLength(1);
  });

  it('unauthenticated: no CN, verify non-zero, no identity TLVs', () => {
    const header = buildProxyHeader(socket, context(undefined), V2);
    const parsed = parseProxyHeader(header ?? Buffer.alloc(0));
    expect(parsed.status).toBe('complete');
    if (parsed.status !== 'complete') return;
    expect(parsed.header.ssl?.client).toBe(0x01);
    expect(parsed.header.ssl?.verify).not.toBe(0);
    expect(parsed.header.ssl?.cn).toBeUndefined();
    expect(parsed.header.ssl?.subTlvs.map((t) => t.type)).toEqual([PP2_SSL_SUBTYPE.VERSION, PP2_SSL_SUBTYPE.CIPHER]);
    expect(parsed.header.tlvs.filter((t) => t.type >= 0xe0)).toEqual([]);
  });
});

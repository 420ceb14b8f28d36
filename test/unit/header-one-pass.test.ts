/**
 * The forwarder builds upstream request headers (upstreamHeaderList) and
 * client response headers (responseHeadersForClient) in one pass each, for
 * speed. The rules are those of the object-based functions the earlier
 * forwarder used (rewriteIdentityHeaders, the copy-and-strip
 * responseHeadersForClientByCopy): these properties check, on random
 * header lists made of the names that matter (hop-by-hop, framing, identity
 * headers of ours and of other proxies, '_' spellings, Connection and TE
 * lists naming them), that both ways give the same headers.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { HttpModeConfig } from '../../src/config/types.js';
import {
  identityHeaderTest,
  identityHeaderValues,
  responseHeadersForClient,
  responseHeadersForClientByCopy,
  rewriteIdentityHeaders,
  upstreamHeaderList,
  type ForwardedIdentity,
} from '../../src/forward/http-headers.js';
import { HTTP_DEFAULTS } from './forward-fixtures.js';

const config: HttpModeConfig = { ...HTTP_DEFAULTS, tlsaHeader: 'X-Dane-Tlsa', forwardClientCert: true };
const identity: ForwardedIdentity = {
  name: 'a._device.example.test',
  status: 'authenticated',
  certificateDer: Buffer.from([1, 2, 3]),
  certificateSha256Hex: undefined,
  certificateSubject: undefined,
  tlsa: [3, 1, 1],
  clientAddress: '192.0.2.7',
};

const NAMES = [
  'accept',
  'user-agent',
  'x-custom',
  'x_custom',
  'host',
  'content-length',
  'content_length',
  'transfer-encoding',
  'transfer_encoding',
  'expect',
  'connection',
  'keep-alive',
  'keep_alive',
  'te',
  'upgrade',
  'proxy-authorization',
  'proxy_connection',
  'x-dane-client-id',
  'X-Dane-Client-Id',
  'x_dane_client_id',
  'x-dane-status',
  'x-dane-tlsa',
  'x-dane-anything',
  'client-cert',
  'x-forwarded-for',
  'X-Forwarded-Proto',
  'forwarded',
  'x-ssl-client-cert',
  'x-amzn-mtls-clientcert',
  'x-real-ip',
  'set-cookie',
];
const TOKENS = ['keep-alive', 'close', 'x-custom', 'X_Custom', 'content-length', 'host', 'x-dane-client-id', 'trailers', 'gzip', 'accept', 'user-agent', 'upgrade'];

const value = fc.oneof(
  fc.constantFrom('v', '1', 'trailers', 'chunked'),
  fc.uniqueArray(fc.constantFrom(...TOKENS), { minLength: 1, maxLength: 3 }).map((t) => t.join(', ')),
);
/** A raw header list whose names differ ignoring case (node:http would join repeated ones; the list form keeps them apart). */
const rawList = fc.uniqueArray(fc.tuple(fc.constantFrom(...NAMES), value), { maxLength: 12, selector: ([name]) => name.toLowerCase() }).map((pairs) => pairs.flat());

/** The list as an object of lowercase names (as node:http's req.headers has them). */
function objectOf(raw: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i < raw.length; i += 2) out[(raw[i] as string).toLowerCase()] = raw[i + 1] as string;
  return out;
}

describe('upstreamHeaderList is rewriteIdentityHeaders plus our framing, in one pass', () => {
  it('gives the same headers on every list', () => {
    const isStripped = identityHeaderTest(config);
    const ours = identityHeaderValues(identity, config);
    fc.assert(
      fc.property(rawList, fc.option(fc.constantFrom('0', '5', '100')), fc.boolean(), (raw, contentLength, upgrade) => {
        const length = contentLength ?? undefined;
        // The earlier forwarder: rewrite on the parsed object, then drop the client's framing and Expect, add TE and ours.
        const old: Record<string, string | string[] | undefined> = objectOf(raw);
        const { teTrailers } = rewriteIdentityHeaders(old, identity, config);
        delete old['content-length'];
        delete old['transfer-encoding'];
        delete old.expect;
        if (teTrailers && !upgrade) old.te = 'trailers';
        if (length !== undefined) old['content-length'] = length;
        const list = upstreamHeaderList(raw, isStripped, ours, { contentLength: length, upgrade });
        expect(objectOf(list)).toEqual(old);
        // Never two copies of a name we set.
        for (const [name] of ours) expect(list.filter((n, i) => i % 2 === 0 && n === name)).toHaveLength(1);
      }),
      { numRuns: 3000, seed: 13 },
    );
  });

  it('takes an HTTP/2 request host from :authority and drops its pseudo-headers', () => {
    const list = upstreamHeaderList([':method', 'GET', ':path', '/x', ':authority', 'api.example.test', 'host', 'api.example.test', 'accept', '*/*'], identityHeaderTest(config), [], {
      contentLength: undefined,
      upgrade: false,
    });
    expect(list).toEqual(['accept', '*/*', 'host', 'api.example.test']);
  });
});

describe('responseHeadersForClient is the copy-and-strip version, in one pass', () => {
  it('gives the same headers on every response', () => {
    fc.assert(
      fc.property(rawList, (raw) => {
        const headers = objectOf(raw);
        expect(responseHeadersForClient({ ...headers })).toEqual(responseHeadersForClientByCopy({ ...headers }));
      }),
      { numRuns: 3000, seed: 13 },
    );
  });
});

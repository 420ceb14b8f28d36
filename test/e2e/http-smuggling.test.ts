/**
 * Issue 10, finding 1: request smuggling through the keep-alive upstream.
 * Raw bytes over TLS to the real proxy (HTTP mode, local TLSA file), a
 * real Node backend that records every request it receives. An attacker
 * (allowed on the default route) hides a request in a body that the
 * forwarder used to send upstream unframed:
 * - DELETE/OPTIONS with a chunked body (http-proxy's deleteLength pass set
 *   Content-Length: 0 and still piped the body);
 * - GET/HEAD whose Connection header names Content-Length,
 *   Transfer-Encoding or Host (stripHopByHop deleted the framing).
 * The hidden request is either a complete one with forged identity
 * headers for the admin route, or the head of a POST whose body would
 * swallow the next client's request (identity and all). Each shape runs
 * pipelined, followed on the same client connection, and interleaved with
 * a victim with another DANE identity. The backend must see exactly the
 * requests the clients sent, each with its sender's verified identity, and
 * each client must get only the responses to its own requests.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ADMIN_SNI, ATTACKER, ROOT, SNI, VICTIM, RawClient, startLab, type Lab, type ParsedResponse } from '../lab/http-raw-kit.js';

const ADMIN_REQUEST = `GET /admin/secret HTTP/1.1\r\nHost: ${ADMIN_SNI}\r\nX-Dane-Client-Id: ${ROOT}\r\nX-Dane-Status: authenticated\r\nX-Forwarded-For: 10.9.9.9\r\n\r\n`;
/** The head of a POST whose body is the next 60 bytes on the upstream connection: someone else's request. */
const CAPTURE_REQUEST = `POST /capture HTTP/1.1\r\nHost: ${SNI}\r\nContent-Type: text/plain\r\nContent-Length: 60\r\n\r\n`;

const chunk = (payload: string): string => `${payload.length.toString(16)}\r\n${payload}\r\n0\r\n\r\n`;

interface Attack {
  readonly label: string;
  readonly method: string;
  build(url: string, payload: string): string;
}

const ATTACKS: readonly Attack[] = [
  { label: 'DELETE with a chunked body', method: 'DELETE', build: (url, p) => `DELETE ${url} HTTP/1.1\r\nHost: ${SNI}\r\nTransfer-Encoding: chunked\r\n\r\n${chunk(p)}` },
  { label: 'OPTIONS with a chunked body', method: 'OPTIONS', build: (url, p) => `OPTIONS ${url} HTTP/1.1\r\nHost: ${SNI}\r\nTransfer-Encoding: chunked\r\n\r\n${chunk(p)}` },
  {
    label: 'GET with Connection: keep-alive, Content-Length',
    method: 'GET',
    build: (url, p) => `GET ${url} HTTP/1.1\r\nHost: ${SNI}\r\nConnection: keep-alive, Content-Length\r\nContent-Length: ${p.length}\r\n\r\n${p}`,
  },
  {
    label: 'HEAD with Connection: keep-alive, Content-Length',
    method: 'HEAD',
    build: (url, p) => `HEAD ${url} HTTP/1.1\r\nHost: ${SNI}\r\nConnection: keep-alive, Content-Length\r\nContent-Length: ${p.length}\r\n\r\n${p}`,
  },
  {
    label: 'GET with Connection: keep-alive, Transfer-Encoding',
    method: 'GET',
    build: (url, p) => `GET ${url} HTTP/1.1\r\nHost: ${SNI}\r\nConnection: keep-alive, Transfer-Encoding\r\nTransfer-Encoding: chunked\r\n\r\n${chunk(p)}`,
  },
  {
    label: 'HEAD with Connection: keep-alive, Transfer-Encoding',
    method: 'HEAD',
    build: (url, p) => `HEAD ${url} HTTP/1.1\r\nHost: ${SNI}\r\nConnection: keep-alive, Transfer-Encoding\r\nTransfer-Encoding: chunked\r\n\r\n${chunk(p)}`,
  },
  {
    label: 'GET with Connection: Host, Content-Length',
    method: 'GET',
    build: (url, p) => `GET ${url} HTTP/1.1\r\nHost: ${SNI}\r\nConnection: Host, Content-Length\r\nContent-Length: ${p.length}\r\n\r\n${p}`,
  },
];

const PAYLOADS = [
  ['a complete request with forged identity for the admin route', ADMIN_REQUEST],
  ['the head of a POST that would capture the next request', CAPTURE_REQUEST],
] as const;

interface Sent {
  readonly who: string;
  readonly method: string;
  readonly url: string;
  /** The body the client sent with it. */
  readonly body: string;
}

describe('request smuggling through the HTTP forwarder (issue 10, finding 1)', () => {
  let lab: Lab;
  const sent: Sent[] = [];
  let serial = 0;
  const nextUrl = (name: string): string => `/${name}-${++serial}`;

  beforeAll(async () => {
    lab = await startLab();
  }, 60_000);

  afterAll(async () => {
    await lab?.stop();
  });

  beforeEach(() => {
    lab.backend.requests.length = 0;
    sent.length = 0;
  });

  const plainGet = (url: string): string => `GET ${url} HTTP/1.1\r\nHost: ${SNI}\r\n\r\n`;

  /** The responses a client got must answer exactly its own requests, in order. */
  function expectOwnResponses(got: ParsedResponse[], who: string, requests: Array<{ method: string; url: string }>): void {
    expect(got.map((r) => [r.status, r.headers['x-echo']])).toEqual(requests.map((q) => [200, `${q.method} ${q.url} ${who}`]));
  }

  /** The backend saw exactly the requests sent, each once, with its sender's identity, framing and body. */
  async function expectBackendSawExactlyWhatWasSent(): Promise<void> {
    // Give a smuggled request the chance to arrive: wait until the backend is quiet.
    await waitForBackendQuiet();
    const seen = lab.backend.requests;
    for (const r of seen) {
      expect([ATTACKER, VICTIM], `forged identity reached the backend on ${r.method} ${r.url}`).toContain(r.headers['x-dane-client-id']);
      expect(r.headers['x-dane-status']).toBe('authenticated');
      expect(r.headers['x-forwarded-for']).toBe('127.0.0.1');
      expect(r.headers.host).toBe(SNI);
    }
    const key = (s: { who: string; method: string; url: string; body: string }): string => JSON.stringify([s.who, s.method, s.url, s.body]);
    expect(seen.map((r) => key({ who: String(r.headers['x-dane-client-id']), method: r.method, url: r.url, body: r.body })).sort()).toEqual(sent.map(key).sort());
  }

  async function waitForBackendQuiet(): Promise<void> {
    let last = -1;
    for (let i = 0; i < 20 && lab.backend.requests.length !== last; i++) {
      last = lab.backend.requests.length;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  describe.each(ATTACKS)('$label', (attack) => {
    it.each(PAYLOADS)('pipelined with a second request on the same connection: %s', async (_label, payload) => {
      const client = await RawClient.connect(lab, lab.clients.attacker);
      const first = nextUrl('x');
      const second = nextUrl('after');
      sent.push({ who: ATTACKER, method: attack.method, url: first, body: payload }, { who: ATTACKER, method: 'GET', url: second, body: '' });
      client.write(attack.build(first, payload) + plainGet(second));
      const got = await client.responses(2, [attack.method === 'HEAD', false]);
      client.close();
      expectOwnResponses(got.responses, ATTACKER, [
        { method: attack.method, url: first },
        { method: 'GET', url: second },
      ]);
      expect(got.rest).toBe('');
      await expectBackendSawExactlyWhatWasSent();
    });

    it.each(PAYLOADS)('then a victim with another identity on the reused upstream connection: %s', async (_label, payload) => {
      const attacker = await RawClient.connect(lab, lab.clients.attacker);
      const victim = await RawClient.connect(lab, lab.clients.victim);
      const urls: string[] = [];
      for (let round = 0; round < 3; round++) {
        const evil = nextUrl('x');
        sent.push({ who: ATTACKER, method: attack.method, url: evil, body: payload });
        attacker.write(attack.build(evil, payload));
        await attacker.responses(
          round + 1,
          Array.from({ length: round + 1 }, () => attack.method === 'HEAD'),
        );
        const mine = nextUrl('victim');
        urls.push(mine);
        sent.push({ who: VICTIM, method: 'GET', url: mine, body: '' });
        victim.write(`GET ${mine} HTTP/1.1\r\nHost: ${SNI}\r\nCookie: session=victim-secret\r\n\r\n`);
        await victim.responses(round + 1);
      }
      const a = await attacker.responses(
        3,
        [true, true, true].map(() => attack.method === 'HEAD'),
        500,
      );
      const v = await victim.responses(3, [], 500);
      attacker.close();
      victim.close();
      expectOwnResponses(
        v.responses,
        VICTIM,
        urls.map((url) => ({ method: 'GET', url })),
      );
      expect(a.responses.map((r) => r.headers['x-echo']?.endsWith(ATTACKER))).toEqual([true, true, true]);
      expect(a.responses.some((r) => r.body.includes('victim'))).toBe(false);
      await expectBackendSawExactlyWhatWasSent();
      // The victim's requests reached the backend only as the victim's, never inside a body.
      expect(lab.backend.requests.filter((r) => r.body.includes('victim-secret') || r.body.includes('/victim-'))).toEqual([]);
    });

    it.each(PAYLOADS)('interleaved with a victim, concurrently: %s', async (_label, payload) => {
      const attacker = await RawClient.connect(lab, lab.clients.attacker);
      const victim = await RawClient.connect(lab, lab.clients.victim);
      const attackerUrls: Array<{ method: string; url: string }> = [];
      const victimUrls: Array<{ method: string; url: string }> = [];
      for (let round = 0; round < 4; round++) {
        const evil = nextUrl('x');
        const mine = nextUrl('victim');
        attackerUrls.push({ method: attack.method, url: evil });
        victimUrls.push({ method: 'GET', url: mine });
        sent.push({ who: ATTACKER, method: attack.method, url: evil, body: payload }, { who: VICTIM, method: 'GET', url: mine, body: '' });
        attacker.write(attack.build(evil, payload));
        victim.write(plainGet(mine));
        await Promise.all([
          attacker.responses(
            round + 1,
            attackerUrls.map((q) => q.method === 'HEAD'),
          ),
          victim.responses(round + 1),
        ]);
      }
      const a = await attacker.responses(
        4,
        attackerUrls.map((q) => q.method === 'HEAD'),
        500,
      );
      const v = await victim.responses(4, [], 500);
      attacker.close();
      victim.close();
      expectOwnResponses(a.responses, ATTACKER, attackerUrls);
      expectOwnResponses(v.responses, VICTIM, victimUrls);
      await expectBackendSawExactlyWhatWasSent();
    });
  });

  it('Connection cannot remove framing or Host: the backend gets them as Node parsed them', async () => {
    const client = await RawClient.connect(lab, lab.clients.attacker);
    const url = nextUrl('framing');
    const body = 'x'.repeat(10);
    sent.push({ who: ATTACKER, method: 'POST', url, body });
    client.write(
      `POST ${url} HTTP/1.1\r\nHost: ${SNI}\r\nConnection: keep-alive, Content-Length, Host, Transfer-Encoding, X-Dane-Client-Id\r\nContent-Length: 10\r\nX-Dane-Client-Id: ${ROOT}\r\n\r\n${body}`,
    );
    const got = await client.responses(1);
    client.close();
    expectOwnResponses(got.responses, ATTACKER, [{ method: 'POST', url }]);
    await expectBackendSawExactlyWhatWasSent();
    const seen = lab.backend.requests[0];
    expect(seen?.headers['content-length']).toBe('10');
    expect(seen?.headers.connection).not.toMatch(/content-length|host|x-dane/i);
  });

  it('hop-by-hop headers are removed both ways', async () => {
    const client = await RawClient.connect(lab, lab.clients.victim);
    const url = nextUrl('hop');
    sent.push({ who: VICTIM, method: 'GET', url, body: '' });
    client.write(
      `GET ${url} HTTP/1.1\r\nHost: ${SNI}\r\nConnection: keep-alive, X-Secret-Hop\r\nX-Secret-Hop: 1\r\nKeep-Alive: timeout=99\r\nProxy-Authorization: Basic eDp5\r\nProxy-Foo: bar\r\nTE: trailers, deflate\r\nUpgrade: h2c\r\n\r\n`,
    );
    const got = await client.responses(1);
    client.close();
    expectOwnResponses(got.responses, VICTIM, [{ method: 'GET', url }]);
    await expectBackendSawExactlyWhatWasSent();
    const h = lab.backend.requests[0]?.headers ?? {};
    expect([h['x-secret-hop'], h['keep-alive'], h['proxy-authorization'], h['proxy-foo'], h.upgrade]).toEqual([undefined, undefined, undefined, undefined, undefined]);
    expect(h.te).toBe('trailers');
    const back = got.responses[0]?.headers ?? {};
    expect([back['x-internal'], back['proxy-authenticate']]).toEqual([undefined, undefined]);
    // Node sets its own Keep-Alive for the client's connection; the backend's must not come through.
    expect(back['keep-alive']).not.toMatch(/timeout=1(,|$)/);
  });

  it('an HTTP/1.0 keep-alive client (ab, old devices) keeps its connection across requests', async () => {
    const client = await RawClient.connect(lab, lab.clients.victim);
    const urls = [nextUrl('old'), nextUrl('old')];
    for (const url of urls) {
      sent.push({ who: VICTIM, method: 'GET', url, body: '' });
      client.write(`GET ${url} HTTP/1.0\r\nHost: ${SNI}\r\nConnection: Keep-Alive\r\n\r\n`);
      await client.responses(sent.length);
    }
    const got = await client.responses(2);
    expect(client.isClosed).toBe(false);
    client.close();
    expectOwnResponses(
      got.responses,
      VICTIM,
      urls.map((url) => ({ method: 'GET', url })),
    );
    expect(got.responses.map((r) => r.headers.connection)).toEqual(['keep-alive', 'keep-alive']);
    await expectBackendSawExactlyWhatWasSent();
  });
});

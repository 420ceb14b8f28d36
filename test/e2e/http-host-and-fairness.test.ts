/**
 * Issue 10, findings 9 and 10, against the real proxy (HTTP mode, default
 * limits, local TLSA file) with raw bytes over TLS:
 * - 9: a Host that is not strictly host[:digits] is 400, a Host that
 *   names another route (however it is spelt) is 421, on the default
 *   route's SNI; none reaches the backend.
 * - 10: one authenticated client holding many stalled uploads cannot pin
 *   the route's upstream pool: past its cap its requests get 503 +
 *   Retry-After at once, and another identity is still served; with
 *   every upstream connection held, a request waits at most
 *   http.upstreamQueueTimeoutMs, then gets 503 + Retry-After.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ADMIN_SNI, SNI, VICTIM, RawClient, startLab, type Lab } from '../lab/http-raw-kit.js';

/** dancegate's default cap of upstream requests per identity (README, http.upstreamMaxPerClient). */
const DEFAULT_PER_CLIENT = 64;

describe('strict Host parsing for the route check (issue 10, finding 9)', () => {
  let lab: Lab;
  beforeAll(async () => {
    lab = await startLab();
  }, 60_000);
  afterAll(async () => {
    await lab?.stop();
  });
  beforeEach(() => {
    lab.backend.requests.length = 0;
  });

  async function send(hostLines: string): Promise<{ status: number; body: string }> {
    const client = await RawClient.connect(lab, lab.clients.attacker);
    client.write(`GET /secret HTTP/1.1\r\n${hostLines}\r\n`);
    const got = await client.responses(1);
    client.close();
    const first = got.responses[0];
    return { status: first?.status ?? 0, body: first?.body ?? '' };
  }

  it.each([
    [`Host: ${ADMIN_SNI}.\r\n`, 421, 'Misdirected Request: the Host header does not belong to the TLS server name of this connection\n'],
    [`Host: ${ADMIN_SNI.toUpperCase()}:443\r\n`, 421, 'Misdirected Request: the Host header does not belong to the TLS server name of this connection\n'],
    [`Host: ${ADMIN_SNI}:x\r\n`, 400, 'Bad Request: invalid Host header: the port must be 1 to 5 digits\n'],
    [`Host: ${ADMIN_SNI}:443:443\r\n`, 400, 'Bad Request: invalid Host header: the port must be 1 to 5 digits\n'],
    [`Host: x@${ADMIN_SNI}\r\n`, 400, "Bad Request: invalid Host header: label 1 of the host name contains '@'; only letters, digits, '-' and '_' are allowed\n"],
    [`Host: ${ADMIN_SNI}..\r\n`, 400, 'Bad Request: invalid Host header: label 4 of the host name is empty\n'],
    [`Host: ${SNI}\r\nHost: ${ADMIN_SNI}\r\n`, 400, 'Bad Request: more than one Host header\n'],
  ])('%j on the default route -> %i', async (hostLines, status, body) => {
    expect(await send(hostLines)).toEqual({ status, body });
    expect(lab.backend.requests).toEqual([]);
  });

  it.each([[`Host: ${SNI}\r\n`], [`Host: ${SNI}.:443\r\n`], [`Host: ${SNI.toUpperCase()}\r\n`]])('%j is served', async (hostLines) => {
    expect((await send(hostLines)).status).toBe(200);
    expect(lab.backend.requests.map((r) => r.url)).toEqual(['/secret']);
  });
});

describe('one client cannot pin the upstream pool (issue 10, finding 10)', () => {
  let lab: Lab;
  beforeAll(async () => {
    lab = await startLab();
  }, 60_000);
  afterAll(async () => {
    await lab?.stop();
  });

  it(`stalled uploads past ${DEFAULT_PER_CLIENT} per identity get 503 + Retry-After; another identity is served meanwhile`, async () => {
    const stalls = DEFAULT_PER_CLIENT + 6;
    const clients: RawClient[] = [];
    try {
      for (let i = 0; i < stalls; i++) {
        const c = await RawClient.connect(lab, lab.clients.attacker);
        // Announce a megabyte, send ten bytes, then nothing: the upload stalls, holding its upstream request.
        c.write(`POST /upload-${i} HTTP/1.1\r\nHost: ${SNI}\r\nContent-Type: application/octet-stream\r\nContent-Length: 1000000\r\n\r\n0123456789`);
        clients.push(c);
      }
      // Every stalled request is either at the backend (upload in progress) or answered.
      const answered = async (): Promise<number> => (await Promise.all(clients.map((c) => c.responses(1, [], 1)))).filter((r) => r.responses.length > 0).length;
      for (let i = 0; i < 100 && lab.backend.uploading() + (await answered()) < stalls; i++) await new Promise((resolve) => setTimeout(resolve, 100));

      const victim = await RawClient.connect(lab, lab.clients.victim);
      victim.write(`GET /victim HTTP/1.1\r\nHost: ${SNI}\r\n\r\n`);
      const served = await victim.responses(1, [], 10_000);
      victim.close();
      expect(served.responses.map((r) => [r.status, r.headers['x-echo']])).toEqual([[200, `GET /victim ${VICTIM}`]]);

      const results = await Promise.all(clients.map((c) => c.responses(1, [], 1)));
      const refused = results.filter((r) => r.responses.length > 0);
      expect(refused.map((r) => [r.responses[0]?.status, r.responses[0]?.headers['retry-after'], r.responses[0]?.body])).toEqual(
        Array.from({ length: stalls - DEFAULT_PER_CLIENT }, () => [503, '1', 'Service Unavailable: the upstream is busy (client-limit)\n']),
      );
      expect(lab.backend.uploading()).toBe(DEFAULT_PER_CLIENT);
    } finally {
      for (const c of clients) c.close();
    }
  }, 60_000);
});

describe('a bounded wait for an upstream connection (issue 10, finding 10)', () => {
  let lab: Lab;
  beforeAll(async () => {
    lab = await startLab({ http: '{ upstreamConnections: 2, upstreamQueueTimeoutMs: 200 }' });
  }, 60_000);
  afterAll(async () => {
    await lab?.stop();
  });

  it('with every upstream connection held, a request gets 503 + Retry-After once upstreamQueueTimeoutMs has passed, and is served once one is free', async () => {
    const stalled = [await RawClient.connect(lab, lab.clients.attacker), await RawClient.connect(lab, lab.clients.attacker)];
    for (const [i, c] of stalled.entries()) c.write(`POST /upload-${i} HTTP/1.1\r\nHost: ${SNI}\r\nContent-Length: 1000\r\n\r\n0123456789`);
    for (let i = 0; i < 100 && lab.backend.uploading() < 2; i++) await new Promise((resolve) => setTimeout(resolve, 50));
    expect(lab.backend.uploading()).toBe(2);

    const victim = await RawClient.connect(lab, lab.clients.victim);
    victim.write(`GET /waits HTTP/1.1\r\nHost: ${SNI}\r\n\r\n`);
    const refused = await victim.responses(1, [], 10_000);
    victim.close();
    expect(refused.responses.map((r) => [r.status, r.headers['retry-after'], r.body])).toEqual([[503, '1', 'Service Unavailable: the upstream is busy (wait-timeout)\n']]);

    // One upload finishes: its connection is free again and the next request is served.
    stalled[0]?.write('x'.repeat(990));
    expect((await stalled[0]?.responses(1))?.responses.map((r) => r.status)).toEqual([200]);
    const next = await RawClient.connect(lab, lab.clients.victim);
    next.write(`GET /served HTTP/1.1\r\nHost: ${SNI}\r\n\r\n`);
    const served = await next.responses(1, [], 10_000);
    next.close();
    for (const c of stalled) c.close();
    expect(served.responses.map((r) => [r.status, r.headers['x-echo']])).toEqual([[200, `GET /served ${VICTIM}`]]);
  });
});

/**
 * Issue 10, found by a review of the undici forwarder, against the real
 * proxy with raw bytes over TLS:
 * - headers other proxies set for the client address, certificate or the
 *   original URL (X-Real-IP, X-SSL-Client-Verify, X-Original-URL, …) never
 *   reach the backend as the client sent them;
 * - a request target starting with `//` or `/\` (a network-path reference,
 *   which `new URL(target, base)` reads as a host) is 400;
 * - a transfer coding other than `chunked` alone is 501: Node de-chunks
 *   `gzip, chunked` and the backend would get a gzipped body it cannot tell.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ADMIN_SNI, SNI, RawClient, startLab, type Lab } from '../lab/http-raw-kit.js';

describe('forwarder review findings', () => {
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

  async function send(request: string): Promise<{ status: number; body: string }> {
    const client = await RawClient.connect(lab, lab.clients.attacker);
    client.write(request);
    const got = await client.responses(1);
    client.close();
    const first = got.responses[0];
    return { status: first?.status ?? 0, body: first?.body ?? '' };
  }

  const forged: ReadonlyArray<readonly [string, string]> = [
    ['X-Real-IP', '10.9.9.9'],
    ['True-Client-IP', '10.9.9.9'],
    ['X-Client-IP', '10.9.9.9'],
    ['CF-Connecting-IP', '10.9.9.9'],
    ['X-Original-URL', '/admin/secret'],
    ['X-Rewrite-URL', '/admin/secret'],
    ['X-Forwarded-Prefix', '/admin'],
    ['X-Forwarded-Server', ADMIN_SNI],
    ['X-Forwarded-Ssl', 'on'],
    ['Front-End-Https', 'on'],
    ['X-SSL-Client-Verify', 'SUCCESS'],
    ['X-SSL-Client-S-DN', 'CN=root._device.smuggle.test'],
    ['X_SSL_Client_Verify', 'SUCCESS'],
    ['X-Client-Cert', 'forged'],
    ['X-Client-Verify', 'SUCCESS'],
    ['X-ARR-ClientCert', 'forged'],
    ['X-Amzn-Mtls-Clientcert', 'forged'],
    ['X-Dane-Anything', 'forged'],
  ];

  it('strips what other proxies set for client address, certificate and URL', async () => {
    const lines = forged.map(([name, value]) => `${name}: ${value}\r\n`).join('');
    const answer = await send(`GET /headers HTTP/1.1\r\nHost: ${SNI}\r\n${lines}X-Kept: yes\r\n\r\n`);
    expect(answer.status).toBe(200);
    expect(lab.backend.requests.map((r) => r.url)).toEqual(['/headers']);
    const seen = lab.backend.requests[0]?.headers ?? {};
    for (const [name] of forged) expect(seen[name.toLowerCase()], name).toBeUndefined();
    expect(Object.values(seen).join('\n')).not.toContain('10.9.9.9');
    expect(Object.values(seen).join('\n')).not.toContain('SUCCESS');
    // Ordinary headers still pass.
    expect(seen['x-kept']).toBe('yes');
  });

  it.each([[`//${ADMIN_SNI}/admin/secret`], [`/\\${ADMIN_SNI}/admin/secret`]])('a target %j is 400 and never reaches the backend', async (target) => {
    expect(await send(`GET ${target} HTTP/1.1\r\nHost: ${SNI}\r\n\r\n`)).toEqual({
      status: 400,
      body: 'Bad Request: a request target may not start with // or /\\\n',
    });
    expect(lab.backend.requests).toEqual([]);
  });

  it.each([['gzip, chunked'], ['deflate,chunked'], ['identity, chunked']])('Transfer-Encoding: %s is 501 and never reaches the backend', async (coding) => {
    const body = '5\r\nhello\r\n0\r\n\r\n';
    expect(await send(`POST /upload HTTP/1.1\r\nHost: ${SNI}\r\nTransfer-Encoding: ${coding}\r\n\r\n${body}`)).toEqual({
      status: 501,
      body: 'Not Implemented: only the chunked transfer coding is accepted\n',
    });
    expect(lab.backend.requests).toEqual([]);
  });

  it('Transfer-Encoding: chunked alone is forwarded with the de-chunked body', async () => {
    const answer = await send(`POST /upload HTTP/1.1\r\nHost: ${SNI}\r\nTransfer-Encoding: Chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n`);
    expect(answer.status).toBe(200);
    expect(lab.backend.requests.map((r) => [r.method, r.url, r.body])).toEqual([['POST', '/upload', 'hello']]);
  });
});

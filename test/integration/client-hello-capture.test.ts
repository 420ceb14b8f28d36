/**
 * ClientHellos captured from real clients (node:tls, openssl s_client, curl
 * and the C client that sends dane_clientid) parse to what each was told to
 * send, and every mutation of them is handled without an internal error.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCertificate } from '../../certs/pki.js';
import { INTERNAL_ERROR_PREFIX, parseClientHello, type ClientHelloInfo } from '../../src/protocol/client-hello.js';
import { runDaneClientIdClient } from '../lab/c-client.js';

/** Listen once, collect bytes until the parser says complete (or invalid), close, return the bytes. */
async function capture(connect: (port: number) => void): Promise<{ bytes: Buffer; hello: ClientHelloInfo }> {
  return new Promise((resolve, reject) => {
    const server = net.createServer((socket) => {
      let bytes = Buffer.alloc(0);
      socket.on('data', (chunk: Buffer) => {
        bytes = Buffer.concat([bytes, chunk]);
        const parsed = parseClientHello(bytes);
        if (parsed.status === 'incomplete') return;
        socket.destroy();
        server.close();
        if (parsed.status === 'invalid') reject(new Error(parsed.reason));
        else resolve({ bytes, hello: parsed.hello });
      });
      socket.on('error', () => undefined);
    });
    server.listen(0, '127.0.0.1', () => connect((server.address() as net.AddressInfo).port));
  });
}

function spawnQuietly(command: string, args: string[]): void {
  const child = execFile(command, args, { timeout: 10_000 }, () => undefined);
  child.stdin?.end();
}

describe('ClientHellos from real clients', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dancegate-hello-'));
    const client = await createCertificate({ commonName: 'c', dnsNames: ['c.example.test'] });
    await writeFile(join(dir, 'c.pem'), client.certPem);
    await writeFile(join(dir, 'c.key'), client.keyPem);
  });
  afterAll(async () => rm(dir, { recursive: true, force: true }));

  const captured: Buffer[] = [];

  it('node:tls, TLS 1.3 with ALPN', async () => {
    const { bytes, hello } = await capture((port) => {
      tls.connect({ port, host: '127.0.0.1', servername: 'API.Example.Test', ALPNProtocols: ['h2', 'http/1.1'] }).on('error', () => undefined);
    });
    captured.push(bytes);
    expect(hello).toMatchObject({ serverName: 'api.example.test', alpn: ['h2', 'http/1.1'], offersTls13: true, daneClientId: { present: false }, recordBytes: bytes.length });
  });

  it('node:tls limited to TLS 1.2 offers no supported_versions 1.3', async () => {
    const { hello } = await capture((port) => {
      tls.connect({ port, host: '127.0.0.1', servername: 'a.example.test', maxVersion: 'TLSv1.2' }).on('error', () => undefined);
    });
    expect(hello.offersTls13).toBe(false);
    expect(hello.serverName).toBe('a.example.test');
  });

  it('openssl s_client', async () => {
    const { bytes, hello } = await capture((port) => spawnQuietly('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-servername', 'radsec.example.test', '-alpn', 'radius/1.1']));
    captured.push(bytes);
    expect(hello).toMatchObject({ serverName: 'radsec.example.test', alpn: ['radius/1.1'], offersTls13: true });
  });

  it('curl', async () => {
    const { bytes, hello } = await capture((port) => spawnQuietly('curl', ['-sk', '--max-time', '5', '--resolve', `api.example.test:${port}:127.0.0.1`, `https://api.example.test:${port}/`]));
    captured.push(bytes);
    expect(hello.serverName).toBe('api.example.test');
    expect(hello.alpn).toContain('http/1.1');
  });

  it.each([
    ['a name', 'c.example.test', 'c.example.test'],
    ['the empty extension', '', ''],
  ])('the C client sending dane_clientid with %s', async (_label, sent, name) => {
    const { bytes, hello } = await capture((port) => {
      void runDaneClientIdClient({ port, sni: 'iot.example.test', extensionType: 65500, name: sent, certFile: join(dir, 'c.pem'), keyFile: join(dir, 'c.key') });
    });
    captured.push(bytes);
    expect(hello).toMatchObject({ serverName: 'iot.example.test', daneClientId: { present: true, name }, offersTls13: false, legacyVersion: 0x0303 });
    expect(hello.extensionTypes).toContain(65500);
  });

  it('every single-byte change and truncation of the captured hellos is handled without an internal error', () => {
    expect(captured.length).toBe(5);
    let outcomes = 0;
    for (const original of captured) {
      for (let i = 0; i < original.length; i++) {
        const truncated = parseClientHello(original.subarray(0, i));
        expect(truncated.status).not.toBe('complete');
        for (const value of [0x00, 0xff, (original[i] ?? 0) ^ 0x01]) {
          const copy = Buffer.from(original);
          copy[i] = value;
          const result = parseClientHello(copy);
          if (result.status === 'invalid') expect(result.reason.startsWith(INTERNAL_ERROR_PREFIX)).toBe(false);
          outcomes++;
        }
      }
    }
    expect(outcomes).toBeGreaterThan(1000);
  });
});

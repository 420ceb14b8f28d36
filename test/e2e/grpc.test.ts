/**
 * gRPC through dancegate end to end: a real @grpc/grpc-js server on an
 * h2c:// upstream, a real grpc-js client that reaches dancegate over TLS
 * with a DANE client certificate (a local TLSA file), unary and
 * bidirectional streaming calls. The server reads the verified identity from
 * the call's metadata (a forged one sent by the client never arrives);
 * trailers (grpc-status, grpc-message, custom trailing metadata) come back
 * intact, a non-OK status with its message too; a refused client gets
 * PERMISSION_DENIED (dancegate's HTTP/2 403).
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCertificate, type IssuedCertificate } from '../../certs/pki.js';
import { loadConfig } from '../../src/config/load.js';
import { parseCertificateDer } from '../../src/dane/certificate.js';
import { formatTlsaRdata, tlsaRecordForCertificate } from '../../src/dane/tlsa.js';
import { startProxy, type RunningProxy } from '../../src/process/running-proxy.js';
import { freePort } from '../lab/dnssec-lab.js';

const SNI = 'grpc.api.test';
const CLIENT = 'billing._device.grpc.test';
const STRANGER = 'stranger._device.grpc.test';

/** Messages are raw bytes: no protobuf, the same (de)serialisation both ends. */
const bytes = (b: Buffer): Buffer => b;
function method(name: string, streaming: boolean): grpc.MethodDefinition<Buffer, Buffer> {
  return {
    path: `/dancegate.test.Echo/${name}`,
    requestStream: streaming,
    responseStream: streaming,
    requestSerialize: bytes,
    requestDeserialize: bytes,
    responseSerialize: bytes,
    responseDeserialize: bytes,
  };
}
const SERVICE = { Echo: method('Echo', false), Fail: method('Fail', false), Chat: method('Chat', true) };

const FAIL_MESSAGE = 'quota exhausted: 0 left (ü, 100%)';

/** What the server saw of each call's identity metadata. */
const identities: string[][] = [];
const identityOf = (metadata: grpc.Metadata): string => {
  const values = metadata.get('x-dane-client-id').map(String);
  identities.push(values);
  return values.join(',');
};

const echo: grpc.handleUnaryCall<Buffer, Buffer> = (call, callback) => {
  const trailer = new grpc.Metadata();
  trailer.set('x-trailer', 'kept');
  callback(null, Buffer.concat([Buffer.from(`${identityOf(call.metadata)}|`), call.request]), trailer);
};
const fail: grpc.handleUnaryCall<Buffer, Buffer> = (call, callback) => {
  identityOf(call.metadata);
  callback({ code: grpc.status.RESOURCE_EXHAUSTED, details: FAIL_MESSAGE });
};
const chat: grpc.handleBidiStreamingCall<Buffer, Buffer> = (call) => {
  const who = identityOf(call.metadata);
  let n = 0;
  call.on('data', (message: Buffer) => call.write(Buffer.from(`${who}#${++n}:${message.toString()}`)));
  call.on('end', () => call.end());
};

let dir: string;
let proxy: RunningProxy;
let server: grpc.Server;
let port: number;
let serverCa: IssuedCertificate;
let client: IssuedCertificate;
let stranger: IssuedCertificate;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'dancegate-grpc-'));
  serverCa = await createCertificate({ commonName: 'grpc server CA', isCA: true });
  const serverCert = await createCertificate({ commonName: SNI, dnsNames: [SNI], issuer: serverCa, extendedKeyUsage: 'server' });
  client = await createCertificate({ commonName: CLIENT, dnsNames: [CLIENT] });
  stranger = await createCertificate({ commonName: STRANGER, dnsNames: [STRANGER] });
  await writeFile(join(dir, 'server.pem'), serverCert.certPem);
  await writeFile(join(dir, 'server.key'), serverCert.keyPem);
  const record = (c: IssuedCertificate): string => formatTlsaRdata(tlsaRecordForCertificate(parseCertificateDer(c.der), 3, 1, 1));
  await writeFile(join(dir, 'tlsa.txt'), `${CLIENT} IN TLSA ${record(client)}\n${STRANGER} IN TLSA ${record(stranger)}\n`);

  server = new grpc.Server();
  server.addService(SERVICE, { Echo: echo, Fail: fail, Chat: chat });
  const upstreamPort = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))));

  port = await freePort();
  await writeFile(
    join(dir, 'dancegate.yaml'),
    `resolver:
  localTlsaFile: tlsa.txt
listeners:
  - name: grpc
    listen: 127.0.0.1:${port}
    mode: http
    tls:
      certificates:
        - certFile: server.pem
          keyFile: server.key
    routes:
      - upstream: h2c://127.0.0.1:${upstreamPort}
        allow: [${CLIENT}]
`,
  );
  proxy = await startProxy(await loadConfig(join(dir, 'dancegate.yaml')), { log: () => undefined });
}, 120_000);

afterAll(async () => {
  await proxy?.close();
  server?.forceShutdown();
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
});

const clients: grpc.Client[] = [];
afterAll(() => {
  for (const c of clients) c.close();
});

function connect(who: IssuedCertificate): grpc.Client {
  const c = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createSsl(Buffer.from(serverCa.certPem), Buffer.from(who.keyPem), Buffer.from(who.certPem)), {
    'grpc.ssl_target_name_override': SNI,
    'grpc.default_authority': SNI,
  });
  clients.push(c);
  return c;
}

interface UnaryOutcome {
  readonly error: grpc.ServiceError | null;
  readonly value: Buffer | undefined;
  readonly status: grpc.StatusObject;
}

function unary(c: grpc.Client, name: 'Echo' | 'Fail', request: Buffer, metadata = new grpc.Metadata()): Promise<UnaryOutcome> {
  return new Promise((resolve) => {
    let error: grpc.ServiceError | null = null;
    let value: Buffer | undefined;
    const call = c.makeUnaryRequest(SERVICE[name].path, bytes, bytes, request, metadata, { deadline: Date.now() + 10_000 }, (err, v) => {
      error = err;
      value = v;
    });
    call.on('status', (status: grpc.StatusObject) => setImmediate(() => resolve({ error, value, status })));
  });
}

describe('gRPC through dancegate (h2c upstream)', () => {
  it('unary: the server reads the verified identity from metadata (a forged one never arrives); trailers intact', async () => {
    identities.length = 0;
    const forged = new grpc.Metadata();
    forged.set('x-dane-client-id', 'admin._device.grpc.test');
    const got = await unary(connect(client), 'Echo', Buffer.from('hello'), forged);
    expect(got.error).toBe(null);
    expect(got.value?.toString()).toBe(`${CLIENT}|hello`);
    expect(got.status.code).toBe(grpc.status.OK);
    expect(got.status.metadata.get('x-trailer')).toEqual(['kept']);
    expect(identities).toEqual([[CLIENT]]);
  });

  it('unary with a 1 MiB message each way (flow control through both HTTP/2 hops)', async () => {
    const big = Buffer.alloc(1024 * 1024, 'a');
    const got = await unary(connect(client), 'Echo', big);
    expect(got.error).toBe(null);
    expect(got.value?.length).toBe(big.length + `${CLIENT}|`.length);
    expect(got.value?.subarray(-16).toString()).toBe('a'.repeat(16));
  });

  it('a non-OK status keeps its code and message (grpc-status, grpc-message trailers)', async () => {
    const got = await unary(connect(client), 'Fail', Buffer.from('x'));
    expect(got.error?.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(got.error?.details).toBe(FAIL_MESSAGE);
    expect(got.status.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(got.status.details).toBe(FAIL_MESSAGE);
  });

  it('bidirectional streaming: each message is answered before the next is sent, then OK', async () => {
    identities.length = 0;
    const call = connect(client).makeBidiStreamRequest(SERVICE.Chat.path, bytes, bytes, new grpc.Metadata(), { deadline: Date.now() + 10_000 });
    const status = new Promise<grpc.StatusObject>((resolve) => call.on('status', resolve));
    // A failed call also ends in 'status' (asserted below); its 'error' must not go unhandled.
    call.on('error', () => undefined);
    const replies: string[] = [];
    const next = (): Promise<string> => new Promise((resolve) => call.once('data', (m: Buffer) => resolve(m.toString())));
    for (const word of ['one', 'two', 'three', 'four', 'five']) {
      const reply = next();
      call.write(Buffer.from(word));
      replies.push(await reply);
    }
    call.end();
    expect(replies).toEqual([`${CLIENT}#1:one`, `${CLIENT}#2:two`, `${CLIENT}#3:three`, `${CLIENT}#4:four`, `${CLIENT}#5:five`]);
    expect((await status).code).toBe(grpc.status.OK);
    expect(identities).toEqual([[CLIENT]]);
  });

  it('a client whose identity the route does not allow gets PERMISSION_DENIED (HTTP/2 403), the server never sees the call', async () => {
    identities.length = 0;
    const got = await unary(connect(stranger), 'Echo', Buffer.from('let me in'));
    expect(got.error?.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(identities).toEqual([]);
  });
});

import { describe, expect, it } from 'vitest';
import { clientHelloParser, judgeClientHello } from '../../../src/connection/stages/client-hello.js';
import type { ClientHelloInfo } from '../../../src/protocol/client-hello.js';
import { daneClientIdExtension, helloMessage, records, sniExtension } from '../../lab/client-hello-builder.js';

const buildClientHello = (o: { serverName: string; daneClientId?: string }): Buffer =>
  records(helloMessage({ extensions: [sniExtension(o.serverName), ...(o.daneClientId === undefined ? [] : [daneClientIdExtension(o.daneClientId)])] }));

const hello = { serverName: 'api.example.test' } as ClientHelloInfo; // only compared by identity

describe('judgeClientHello', () => {
  it.each([
    [{ status: 'timeout' }, { ok: false, reason: 'client-hello-timeout', detail: 'no complete ClientHello within 2500 ms' }],
    [{ status: 'closed' }, { ok: false, reason: 'client-closed', detail: 'closed before a complete ClientHello' }],
    [
      { status: 'invalid', reason: 'plain HTTP request on a TLS port' },
      { ok: false, reason: 'client-hello-invalid', detail: 'plain HTTP request on a TLS port' },
    ],
    [
      { status: 'complete', value: hello, consumed: 100 },
      { ok: true, value: hello },
    ],
  ] as const)('%j', (peeked, expected) => {
    expect(judgeClientHello(peeked, 2500)).toEqual(expected);
  });
});

describe('clientHelloParser', () => {
  const parse = clientHelloParser({ daneClientIdType: 65500, maxClientHelloBytes: 16384 });

  it('completes on a whole ClientHello, consuming its records, with SNI and dane_clientid', () => {
    const bytes = buildClientHello({ serverName: 'api.example.test', daneClientId: 'sensor1._device.example.test' });
    const parsed = parse(bytes);
    expect(parsed.status).toBe('complete');
    if (parsed.status !== 'complete') return;
    expect(parsed.consumed).toBe(bytes.length);
    expect(parsed.value.serverName).toBe('api.example.test');
    expect(parsed.value.daneClientId).toEqual({ present: true, name: 'sensor1._device.example.test' });
  });

  it('asks for more on a partial one and refuses a non-TLS start', () => {
    const bytes = buildClientHello({ serverName: 'api.example.test' });
    expect(parse(bytes.subarray(0, 20))).toEqual({ status: 'incomplete' });
    expect(parse(Buffer.from('GET / HTTP/1.1\r\n\r\n')).status).toBe('invalid');
  });
});

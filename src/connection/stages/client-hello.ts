/**
 * Stage: the ClientHello, read by us (bounded in bytes and time) and handed
 * unchanged to node:tls. The judgement of what was read is pure
 * (`judgeClientHello`); `readClientHello` only peeks the socket.
 */
import type { Socket } from 'node:net';
import { parseClientHello, type ClientHelloInfo } from '../../protocol/client-hello.js';
import { peekSocket, type IncrementalParser, type PeekResult } from '../peek.js';
import { pass, refuse, type StageResult } from './result.js';

/** TLS record header bytes: the peek bound is the ClientHello bound plus one header. */
const RECORD_HEADER_BYTES = 5;

export interface ClientHelloLimits {
  readonly daneClientIdType: number;
  readonly maxClientHelloBytes: number;
  readonly clientHelloTimeoutMs: number;
}

export function clientHelloParser(limits: Pick<ClientHelloLimits, 'daneClientIdType' | 'maxClientHelloBytes'>): IncrementalParser<ClientHelloInfo> {
  return (buffered) => {
    const parsed = parseClientHello(buffered, { daneClientIdType: limits.daneClientIdType, maxBytes: limits.maxClientHelloBytes });
    if (parsed.status === 'complete') return { status: 'complete', value: parsed.hello, consumed: parsed.hello.recordBytes };
    return parsed;
  };
}

/** What a peeked ClientHello means for the connection. Pure. */
export function judgeClientHello(peeked: PeekResult<ClientHelloInfo>, timeoutMs: number): StageResult<ClientHelloInfo> {
  if (peeked.status === 'timeout') return refuse('client-hello-timeout', `no complete ClientHello within ${timeoutMs} ms`);
  if (peeked.status === 'closed') return refuse('client-closed', 'closed before a complete ClientHello');
  if (peeked.status === 'invalid') return refuse('client-hello-invalid', peeked.reason);
  return pass(peeked.value);
}

/** Read the ClientHello; every byte is pushed back for node:tls. */
export async function readClientHello(raw: Socket, limits: ClientHelloLimits): Promise<StageResult<ClientHelloInfo>> {
  const peeked = await peekSocket(raw, clientHelloParser(limits), {
    maxBytes: limits.maxClientHelloBytes + RECORD_HEADER_BYTES,
    timeoutMs: limits.clientHelloTimeoutMs,
    unshiftAll: true,
  });
  return judgeClientHello(peeked, limits.clientHelloTimeoutMs);
}

/**
 * The MQTT gate of a TCP route: read the client's CONNECT from its decided
 * (paused) TLS connection, bind it to the verified name (mqtt-connect.ts)
 * and hand back what the upstream must get first, before any upstream is
 * opened. A refused client gets its CONNACK and a closed connection (TLS
 * close_notify, then destroyed after a short flush); a client that sends
 * anything but a CONNECT we accept, too much, nothing in time, or leaves is
 * destroyed without a CONNACK (MQTT: the server closes the connection).
 *
 * Bounded: at most maxConnectBytes are waited for (plus what the last read
 * brought), one timer, and the bytes are joined only when the CONNECT's
 * length is reached, so a client sending a byte at a time costs linear work.
 */
import type { SecureSocket } from '../tls/secure-socket.js';
import { applyMqttPolicy, readConnect, type MqttPolicy, type MqttRefusalReason } from '../protocol/mqtt-connect.js';

/** How long a refused client has to take its CONNACK and close_notify before the connection is destroyed. */
export const MQTT_CONNACK_FLUSH_MS = 2000;

export interface MqttGateOptions {
  /** The verified DANE name. */
  readonly name: string;
  readonly policy: MqttPolicy;
  /** The largest CONNECT accepted, fixed header included. */
  readonly maxConnectBytes: number;
  /** How long the client has to send its whole CONNECT. */
  readonly timeoutMs: number;
  /** How long a refused client's CONNACK may take to flush before the connection is destroyed; default MQTT_CONNACK_FLUSH_MS. */
  readonly flushMs?: number;
}

/** Why the gate closed the connection: a policy refusal (answered with a CONNACK), or one of these (no CONNACK). */
export type MqttGateReason = MqttRefusalReason | 'connect-timeout' | 'connect-too-large' | 'connect-invalid' | 'client-closed';

export type MqttGateResult =
  /**
   * `first`: the CONNECT to forward followed by any bytes the client already sent after it; the socket is
   * paused with nothing else read, and every listener the gate added is removed. `clientId`: the one forwarded.
   */
  | { readonly ok: true; readonly first: Buffer; readonly clientId: string; readonly changes: readonly string[] }
  /** The connection is closed (or closing, after its CONNACK). `clientId`: the one the client sent, when a CONNECT was read. */
  | { readonly ok: false; readonly reason: MqttGateReason; readonly detail: string; readonly clientId: string | undefined };

/**
 * Read and judge the client's CONNECT. The socket arrives paused and, on
 * success, is left paused for the forwarder. The caller keeps its own
 * 'error' listener on the socket (the pipeline's): the gate's are gone once
 * it answers.
 */
export function readMqttConnect(client: SecureSocket, options: MqttGateOptions): Promise<MqttGateResult> {
  const { maxConnectBytes, timeoutMs } = options;
  if (!Number.isSafeInteger(maxConnectBytes) || maxConnectBytes < 1) throw new RangeError(`maxConnectBytes must be a positive integer, got ${maxConnectBytes}`);
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) throw new RangeError(`timeoutMs must be a positive number, got ${timeoutMs}`);
  const flushMs = options.flushMs ?? MQTT_CONNACK_FLUSH_MS;
  return new Promise((resolve) => {
    if (client.destroyed || client.readableEnded) {
      client.destroy();
      resolve({ ok: false, reason: 'client-closed', detail: 'the client had closed before its CONNECT', clientId: undefined });
      return;
    }
    let chunks: Buffer[] = [];
    let buffered = 0;
    /** The CONNECT's full length once its fixed header is read: nothing is joined or parsed before that many bytes. */
    let packetBytes: number | undefined;
    let settled = false;

    const stopReading = (): void => {
      settled = true;
      clearTimeout(timer);
      client.pause();
      client.removeListener('data', onData);
      client.removeListener('end', onEnd);
      client.removeListener('close', onClose);
      client.removeListener('error', onError);
    };
    /** No CONNACK: MQTT closes the connection on anything malformed. */
    const drop = (reason: MqttGateReason, detail: string, clientId?: string): void => {
      stopReading();
      // A late error of the destroyed socket must not be unhandled.
      client.on('error', ignore);
      client.destroy();
      resolve({ ok: false, reason, detail, clientId });
    };
    /** The CONNACK, then close_notify; destroyed once the client closes too, or after flushMs. */
    const answer = (connack: Buffer, reason: MqttRefusalReason, detail: string, clientId: string): void => {
      stopReading();
      const flush = setTimeout(() => client.destroy(), flushMs);
      flush.unref();
      client.on('error', ignore);
      client.once('close', () => clearTimeout(flush));
      // Whatever else the client sends is read and discarded, so that its close is seen.
      client.once('end', () => client.destroy());
      client.write(connack);
      client.end();
      client.resume();
      resolve({ ok: false, reason, detail, clientId });
    };

    const onData = (chunk: Buffer): void => {
      if (settled) return;
      chunks.push(chunk);
      buffered += chunk.length;
      if (packetBytes !== undefined && buffered < packetBytes) return;
      const bytes = chunks.length === 1 && chunks[0] !== undefined ? chunks[0] : Buffer.concat(chunks, buffered);
      chunks = [bytes];
      try {
        judge(bytes);
      } catch (err) {
        // Neither module throws on client bytes; should one ever, the connection fails closed rather than the process.
        if (!settled) drop('connect-invalid', `the CONNECT could not be judged: ${err instanceof Error ? err.message : String(err)}`);
      }
    };
    const judge = (bytes: Buffer): void => {
      const read = readConnect(bytes, maxConnectBytes);
      if (read.status === 'incomplete') {
        packetBytes = read.packetBytes;
        return;
      }
      if (read.status === 'invalid') return drop(read.tooLarge ? 'connect-too-large' : 'connect-invalid', read.reason);
      const decision = applyMqttPolicy(read.connect, options.name, options.policy);
      if (!decision.ok) return answer(decision.connack, decision.reason, decision.detail, read.connect.clientId);
      stopReading();
      const rest = bytes.subarray(read.bytes);
      resolve({ ok: true, first: rest.length > 0 ? Buffer.concat([decision.bytes, rest]) : decision.bytes, clientId: decision.connect.clientId, changes: decision.changes });
    };
    const onEnd = (): void => drop('client-closed', `the client closed its side after ${buffered} bytes, before a whole CONNECT`);
    const onClose = (): void => drop('client-closed', `the connection closed after ${buffered} bytes, before a whole CONNECT`);
    const onError = (err: Error): void => drop('client-closed', `the connection failed after ${buffered} bytes, before a whole CONNECT: ${err.message}`);
    const timer = setTimeout(() => drop('connect-timeout', `no whole CONNECT within ${timeoutMs} ms (${buffered} bytes received)`), timeoutMs);
    timer.unref();

    client.on('data', onData);
    client.on('end', onEnd);
    client.on('close', onClose);
    client.on('error', onError);
    client.resume();
  });
}

function ignore(): void {}

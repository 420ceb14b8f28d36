/**
 * A TLS connection driven by the native engine, as a stream.Duplex that
 * forwarders and node:http can use like a TLSSocket: plaintext in and out,
 * ciphertext on the raw TCP socket underneath.
 *
 * - A server handshake that reaches certificate verification pauses: the
 *   socket emits 'verify' with what the client showed and gives the engine
 *   nothing more until decide() is called: what the client sends meanwhile
 *   is held, about HELD_BYTES_MAX (then the raw socket is paused), so a
 *   client that resets the connection is noticed while its lookup runs
 *   (the socket closes, no error). A FIN is a half-close (a TLS 1.3 client
 *   may send its request and close_notify before we decide): it is taken
 *   after the decision, once what came before it is read. Nothing is
 *   readable before the handshake is done, and a refused handshake never
 *   becomes readable.
 * - end() before the handshake is done sends close_notify once it is.
 * - 'secure' is emitted once the handshake is done (after the decision).
 * - The engine's output is always written, including the alert of a failed
 *   handshake; the raw socket is then ended and destroyed after a short
 *   flush time.
 * - Back-pressure: plaintext the reader does not take stops the raw socket;
 *   writes complete when the raw socket has taken their ciphertext.
 */
import type { Socket } from 'node:net';
import { Duplex } from 'node:stream';
import type { NativeConnection, NativeResult, NativeState, NativeTlsVersion } from './native-binding.js';

/** How long the last records (an alert) may take to flush, and the peer to close, before the raw socket is destroyed. */
const ALERT_FLUSH_MS = 1000;
/** How long to wait before asking again when the cap on paused handshakes is reached. */
const BUSY_RETRY_MS = 5;
/**
 * Bytes read from the peer and held (not given to the engine) while the
 * handshake is paused, past which the raw socket is paused: enough for a TLS
 * 1.3 client's first request after its Finished, so that the raw socket keeps
 * being read and a client that resets is noticed at once. The check follows
 * each read, so at most this plus one read (64 KiB) is held.
 */
const HELD_BYTES_MAX = 16 * 1024;

/** A failed handshake or connection, with the alerts that went each way. */
export class NativeTlsError extends Error {
  constructor(
    message: string,
    readonly alertSent: number | undefined,
    readonly alertReceived: number | undefined,
  ) {
    super(message);
    this.name = 'NativeTlsError';
  }
}

export class NativeTlsSocket extends Duplex {
  readonly encrypted = true;
  /** As TLSSocket: the ALPN protocol chosen, false when none, null before the handshake is done. */
  alpnProtocol: string | false | null = null;
  /** The TLS alert we sent / received, when there was one. */
  alertSent: number | undefined;
  alertReceived: number | undefined;
  /** Times the engine said 'busy' (the cap on paused handshakes was reached). */
  busyRetries = 0;
  private state: NativeState = 'handshake';
  private protocol: NativeTlsVersion | null = null;
  private cipher: string | null = null;
  /** Set by _read when the reader wants more and by decide(); raw reading stops while false. */
  private wantsMore = true;
  private readonly pendingWrites: { chunk: Buffer; callback: (error?: Error | null) => void }[] = [];
  private busyTimer: NodeJS.Timeout | undefined;
  private engineFreed = false;
  private fed = 0;
  /** Bytes read while paused (verify or busy), fed once the engine may take them. */
  private held: Buffer[] = [];
  private heldBytes = 0;
  /** The peer's FIN came while the handshake was paused: taken after the decision and what was held. */
  private peerEnded = false;
  /** end() before the handshake was done: its close_notify is sent once it is. */
  private pendingFinal: ((error?: Error | null) => void) | undefined;

  constructor(
    readonly raw: Socket,
    private readonly engine: NativeConnection,
  ) {
    super({ allowHalfOpen: true });
    // Each write is a whole TLS record: never hold one back for Nagle (with a delayed ACK at the peer, a kept-alive
    // HTTP response waited ~40 ms: 700 requests/s against node:tls's 6,000 in bench/compare).
    raw.setNoDelay(true);
    raw.on('data', (chunk: Buffer) => this.onRawData(chunk));
    raw.on('end', () => this.onRawEnd());
    raw.on('error', (err: Error) => this.onRawError(err));
    raw.on('close', () => this.destroy());
    raw.on('timeout', () => this.emit('timeout'));
  }

  /** Start: a client sends its ClientHello; a server reads what the raw socket has (and was given back by a peek). */
  start(): this {
    this.apply(this.call(() => this.engine.feed()));
    if (!this.destroyed) this.raw.resume();
    return this;
  }

  /** Whether the handshake is paused for decide(). */
  get verifying(): boolean {
    return this.state === 'verify';
  }

  /** The end of a verification pause: accept completes the handshake, refuse fails it with handshake_failure. */
  decide(accept: boolean): void {
    if (this.state !== 'verify' || this.destroyed) return;
    this.apply(this.call(() => this.engine.decide(accept)));
    this.flow();
  }

  getProtocol(): string | null {
    return this.protocol;
  }

  getCipher(): { name: string; standardName: string; version: string } | undefined {
    if (this.cipher === null) return undefined;
    return { name: this.cipher, standardName: this.cipher, version: this.protocol ?? '' };
  }

  get remoteAddress(): string | undefined {
    return this.raw.remoteAddress;
  }

  get remotePort(): number | undefined {
    return this.raw.remotePort;
  }

  get remoteFamily(): string | undefined {
    return this.raw.remoteFamily;
  }

  get localAddress(): string | undefined {
    return this.raw.localAddress;
  }

  get localPort(): number | undefined {
    return this.raw.localPort;
  }

  /** Ciphertext bytes, as net.Socket counts them (the byte meters read these). */
  get bytesRead(): number {
    return this.raw.bytesRead;
  }

  get bytesWritten(): number {
    return this.raw.bytesWritten;
  }

  setTimeout(ms: number, callback?: () => void): this {
    this.raw.setTimeout(ms);
    if (callback !== undefined) this.once('timeout', callback);
    return this;
  }

  setNoDelay(noDelay?: boolean): this {
    this.raw.setNoDelay(noDelay);
    return this;
  }

  setKeepAlive(enable?: boolean, initialDelay?: number): this {
    this.raw.setKeepAlive(enable, initialDelay);
    return this;
  }

  /** As net.Socket: end, and destroy once the end is written. */
  destroySoon(): void {
    if (this.writable) this.end();
    if (this.writableFinished) this.destroy();
    else this.once('finish', () => this.destroy());
  }

  override _read(): void {
    this.wantsMore = true;
    this.flow();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    // 'closed': the peer sent close_notify; our direction stays open (half-close) until we end.
    if (this.state !== 'open' && this.state !== 'closed') {
      // A client may write before its handshake is done (as with TLSSocket): sent once it is.
      if (this.state === 'handshake' || this.state === 'verify' || this.state === 'busy') this.pendingWrites.push({ chunk, callback });
      else callback(new Error(`cannot write: the TLS connection is ${this.state}`));
      return;
    }
    const result = this.call(() => this.engine.write(chunk));
    if (result.state === 'error') {
      this.apply(result);
      callback(this.failure(result));
      return;
    }
    if (result.out === null) callback();
    else this.raw.write(result.out, (err) => callback(err ?? null));
  }

  /**
   * Corked writes (node:http corks a response's head and body) go out as one
   * plaintext buffer: one SSL_write, one raw write, instead of a TLS record and a
   * syscall each.
   */
  override _writev(chunks: Array<{ chunk: Buffer; encoding: BufferEncoding }>, callback: (error?: Error | null) => void): void {
    const only = chunks.length === 1 ? chunks[0] : undefined;
    this._write(only !== undefined ? only.chunk : Buffer.concat(chunks.map((c) => c.chunk)), 'binary', callback);
  }

  override _final(callback: (error?: Error | null) => void): void {
    if (this.state === 'handshake' || this.state === 'verify' || this.state === 'busy') {
      // Ended before the handshake is done (a client with nothing, or nothing more, to send): a FIN now
      // would cut the handshake short; close_notify and FIN go once it is done (writes before it were sent first).
      this.pendingFinal = callback;
      return;
    }
    this.finish(callback);
  }

  /** Our direction's end: close_notify when the connection is open, then FIN. */
  private finish(callback: (error?: Error | null) => void): void {
    if (this.state === 'open' || this.state === 'closed') {
      const result = this.call(() => this.engine.shutdown());
      if (result.out !== null) this.raw.write(result.out);
    }
    this.raw.end();
    callback();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    clearTimeout(this.busyTimer);
    this.pendingFinal = undefined;
    this.freeEngine();
    for (const pending of this.pendingWrites.splice(0)) pending.callback(error ?? new Error('the TLS connection was destroyed'));
    this.held = [];
    this.heldBytes = 0;
    if (!this.raw.destroyed) {
      if (this.raw.writable) {
        // End, not reset: destroying with the peer's unread bytes in the kernel's buffer sends RST,
        // which can overtake our alert or last records. What the peer still sends is read and
        // dropped (the engine is gone) until it closes or the flush time is up.
        this.raw.end();
        this.raw.resume();
        setTimeout(() => this.raw.destroy(), ALERT_FLUSH_MS).unref();
      } else this.raw.destroy();
    }
    callback(error);
  }

  private freeEngine(): void {
    if (this.engineFreed) return;
    this.engineFreed = true;
    this.engine.destroy();
  }

  /** An engine call; a throw (a bug or a destroyed connection) becomes an error result. */
  private call(step: () => NativeResult): NativeResult {
    if (this.engineFreed) return { state: 'error', out: null, plaintext: null, error: 'the TLS connection was destroyed' };
    try {
      return step();
    } catch (err) {
      return { state: 'error', out: null, plaintext: null, error: (err as Error).message };
    }
  }

  private onRawError(err: Error): void {
    // The peer reset the connection while its handshake is paused (it stopped waiting for our decision):
    // a client gone, nothing it sent can be answered; not a failed handshake.
    if (this.state === 'verify' || this.state === 'busy') this.destroy();
    else this.destroy(err);
  }

  /** Bytes given to the engine so far (with the verify result's pendingInput: how much of them it had processed). */
  get bytesFed(): number {
    return this.fed;
  }

  private feed(chunk: Buffer): void {
    this.fed += chunk.length;
    this.apply(this.call(() => this.engine.feed(chunk)));
  }

  private onRawData(chunk: Buffer): void {
    if (this.destroyed || this.engineFreed) return;
    if (this.state === 'verify' || this.state === 'busy') {
      this.held.push(chunk);
      this.heldBytes += chunk.length;
      this.flow();
      return;
    }
    this.feed(chunk);
    this.flow();
  }

  /** What was held while paused, now that the engine may take it. */
  private feedHeld(): void {
    while (this.held.length > 0 && !this.destroyed && this.state !== 'verify' && this.state !== 'busy') {
      const chunk = this.held.shift() as Buffer;
      this.heldBytes -= chunk.length;
      this.feed(chunk);
    }
  }

  private onRawEnd(): void {
    if (this.destroyed) return;
    if (this.state === 'verify' || this.state === 'busy') {
      // A FIN is a half-close, not a client gone: a TLS 1.3 client is done before we decide, and may have sent
      // its request and close_notify (in the engine's buffer already, or held). It is taken once they are read.
      this.peerEnded = true;
      return;
    }
    if (this.state === 'open') {
      // The peer's FIN without close_notify: the stream ends all the same (as node:tls does).
      this.push(null);
      return;
    }
    if (this.state === 'closed') return;
    // Gone before the handshake was done (or while it was paused): nothing to report but the close.
    this.destroy();
  }

  /** Read the raw socket only when the engine (or the held buffer, while paused) may take bytes and the reader wants them. */
  private flow(): void {
    if (this.destroyed) return;
    this.feedHeld();
    if (this.destroyed) return;
    if (this.peerEnded && this.held.length === 0 && this.state !== 'verify' && this.state !== 'busy') {
      this.peerEnded = false;
      this.onRawEnd();
      if (this.destroyed) return;
    }
    const pausedFull = (this.state === 'verify' || this.state === 'busy') && this.heldBytes >= HELD_BYTES_MAX;
    const readerFull = (this.state === 'open' || this.state === 'closed') && !this.wantsMore;
    if (pausedFull || readerFull) this.raw.pause();
    else this.raw.resume();
  }

  private apply(result: NativeResult): void {
    if (result.out !== null && !this.raw.destroyed) this.raw.write(result.out);
    if (result.alertSent !== undefined) this.alertSent = result.alertSent;
    if (result.alertReceived !== undefined) this.alertReceived = result.alertReceived;
    const before = this.state;
    this.state = result.state;
    if (result.established !== undefined) {
      this.protocol = result.established.protocol;
      this.cipher = result.established.cipher;
      this.alpnProtocol = result.established.alpn ?? false;
    }
    if (result.state === 'error') {
      this.destroy(this.failure(result));
      return;
    }
    if (result.established !== undefined) {
      this.emit('secure');
      for (const pending of this.pendingWrites.splice(0)) this._write(pending.chunk, 'binary', pending.callback);
      // The stream calls _final only once every write is done, so nothing is queued before it.
      const final = this.pendingFinal;
      this.pendingFinal = undefined;
      if (final !== undefined) this.finish(final);
    }
    if (result.plaintext !== null && result.plaintext.length > 0 && !this.push(result.plaintext)) this.wantsMore = false;
    if (result.verify !== undefined) this.emit('verify', result.verify);
    if (result.state === 'busy' && before !== 'busy') this.retryWhenFree();
    if (result.state === 'closed') this.push(null);
  }

  private retryWhenFree(): void {
    this.busyRetries++;
    this.busyTimer = setTimeout(() => {
      if (this.destroyed) return;
      this.state = 'handshake';
      // apply() schedules the next retry when the engine is still busy.
      this.apply(this.call(() => this.engine.feed()));
      this.flow();
    }, BUSY_RETRY_MS);
  }

  private failure(result: NativeResult): NativeTlsError {
    const alerts = [result.alertSent !== undefined ? `alert sent ${result.alertSent}` : '', result.alertReceived !== undefined ? `alert received ${result.alertReceived}` : ''].filter((s) => s !== '');
    return new NativeTlsError(`${result.error ?? 'TLS error'}${alerts.length > 0 ? ` (${alerts.join(', ')})` : ''}`, this.alertSent, this.alertReceived);
  }
}

/**
 * The one TLSA lookup of a connection: started as soon as the name is
 * claimed (during the handshake for a dane_clientid name), awaited by the
 * authenticate stage. Never rejects: a failure is a value, so a lookup that
 * fails while the handshake is still running is not an unhandled rejection.
 */
import { performance } from 'node:perf_hooks';
import type { CachedLookup, TlsaCache } from '../../lookup/cache.js';

export type TlsaLookupSource = Pick<TlsaCache, 'lookup'>;

export type LookupSettled = { readonly ok: true; readonly value: CachedLookup; readonly ms: number } | { readonly ok: false; readonly error: unknown; readonly ms: number };

/** A started lookup: `settled` resolves once, with the answer or the failure, and how long it took (the DNS time of the record). */
export interface StartedLookup {
  readonly name: string;
  readonly settled: Promise<LookupSettled>;
}

export function startLookup(cache: TlsaLookupSource, name: string, signal: AbortSignal | undefined, now: () => number = () => performance.now()): StartedLookup {
  const started = now();
  const settled = cache.lookup(name, signal).then(
    (value): LookupSettled => ({ ok: true, value, ms: now() - started }),
    (error: unknown): LookupSettled => ({ ok: false, error, ms: now() - started }),
  );
  return { name, settled };
}

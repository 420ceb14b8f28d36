/** Which TLS engine a listener gets, against what loaded (pure). */
import { describe, expect, it } from 'vitest';
import { IDENTITY_SOURCE_NAMES, type IdentitySourceName, type TlsEngineChoice } from '../../src/config/types.js';
import { chooseEngine, TlsEngineError } from '../../src/connection/tls-engine.js';
import type { NativeBinding } from '../../src/tls/native-binding.js';
import type { NativeEngineLoad } from '../../src/tls/native-engine.js';

const binding = { opensslVersion: () => 'OpenSSL 3.0.19' } as unknown as NativeBinding;
const loaded: NativeEngineLoad = { ok: true, binding, openssl: 'OpenSSL 3.0.19', path: '/x/dancegate_tls.node' };
const missing: NativeEngineLoad = { ok: false, reason: 'disabled by DANCEGATE_NATIVE=0' };

const route = (sources: readonly IdentitySourceName[], strict = false) => ({ identity: { sources, strict } }) as never;
const listener = (engine: TlsEngineChoice, routes = [route(IDENTITY_SOURCE_NAMES)]) => ({ name: 'api', engine, routes });

describe('chooseEngine', () => {
  it.each([
    ['node, engine loaded', listener('node'), loaded, { name: 'node', fallback: undefined }],
    ['node, engine missing', listener('node'), missing, { name: 'node', fallback: undefined }],
    ['auto, engine loaded', listener('auto'), loaded, { name: 'native', binding }],
    ['auto, engine missing: node:tls with the reason', listener('auto'), missing, { name: 'node', fallback: 'disabled by DANCEGATE_NATIVE=0' }],
    ['native, engine loaded', listener('native'), loaded, { name: 'native', binding }],
    ['auto, engine missing, a route without the Certificate source', listener('auto', [route(['san'])]), missing, { name: 'node', fallback: 'disabled by DANCEGATE_NATIVE=0' }],
  ] as const)('%s', (_label, config, load, expected) => {
    expect(chooseEngine(config, load)).toEqual(expected);
  });

  it.each([
    ['native, engine missing', listener('native'), 'listener api: tls.engine is native, but the native TLS engine is unavailable: disabled by DANCEGATE_NATIVE=0'],
    [
      'auto, engine missing, a strict route',
      listener('auto', [route(IDENTITY_SOURCE_NAMES), route(['certificate-extension'], true)]),
      'listener api: routes[1] takes names only from the TLS 1.3 Certificate message (draft -13), which needs the native TLS engine, and it is unavailable: disabled by DANCEGATE_NATIVE=0',
    ],
    [
      'auto, engine missing, the Certificate extension as the only source',
      listener('auto', [route(['certificate-extension'])]),
      'listener api: routes[0] takes names only from the TLS 1.3 Certificate message (draft -13), which needs the native TLS engine, and it is unavailable: disabled by DANCEGATE_NATIVE=0',
    ],
  ] as const)('refused: %s', (_label, config, message) => {
    expect(() => chooseEngine(config, missing)).toThrow(new TlsEngineError(message));
  });
});

/**
 * Loading the native TLS engine (native/tls-engine): optional by design. The
 * answer is the binding, or the reason it cannot be used, in words an
 * operator can act on; `tls.engine: auto` then falls back to node:tls and
 * says why (log, /status, metric), `native` refuses to start.
 *
 * The addon is linked with `-z now` against the OpenSSL inside the running
 * node, so a node whose OpenSSL lacks a symbol it uses fails here, at load,
 * not mid-handshake.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type { NativeBinding } from './native-binding.js';

/** Node majors the addon is built and tested for (N-API 8 and OpenSSL 3.x). */
export const SUPPORTED_NODE_MAJORS = { min: 20, max: 26 } as const;

export const ADDON_RELATIVE_PATH = join('native', 'tls-engine', 'build', 'dancegate_tls.node');

export type NativeEngineLoad = { readonly ok: true; readonly binding: NativeBinding; readonly openssl: string; readonly path: string } | { readonly ok: false; readonly reason: string };

export interface LoadEnvironment {
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly versions: Readonly<Record<string, string | undefined>>;
  /** Where to look for the addon: the package root is found by walking up from here. */
  readonly from: string;
}

const REQUIRED_FUNCTIONS = ['opensslVersion', 'limitPausedHandshakes', 'createContext', 'Connection'] as const;

/** Why this runtime cannot use the addon, or undefined when it may try. Pure. */
export function runtimeRefusal(env: LoadEnvironment['env'], versions: LoadEnvironment['versions']): string | undefined {
  if (env.DANCEGATE_NATIVE === '0') return 'disabled by DANCEGATE_NATIVE=0';
  const major = Number((versions.node ?? '').split('.')[0]);
  if (!Number.isInteger(major) || major < SUPPORTED_NODE_MAJORS.min || major > SUPPORTED_NODE_MAJORS.max) {
    return `node ${versions.node ?? '(unknown)'} is outside the supported range ${SUPPORTED_NODE_MAJORS.min}–${SUPPORTED_NODE_MAJORS.max}`;
  }
  if (!/^3\./.test(versions.openssl ?? '')) return `node's OpenSSL is ${versions.openssl ?? '(none)'}; the engine needs OpenSSL 3.x`;
  // Written as !(n >= 8) so that a version that is not a number (NaN) is refused too.
  if (!(Number(versions.napi ?? 0) >= 8)) return `node's N-API version is ${versions.napi ?? '(none)'}; the engine needs 8 or later`;
  return undefined;
}

/** The addon file: DANCEGATE_NATIVE_ADDON, or the package's own build (src/ and dist/src/ sit at different depths). */
export function findAddon(env: LoadEnvironment['env'], from: string): string | undefined {
  const explicit = env.DANCEGATE_NATIVE_ADDON;
  if (explicit !== undefined && explicit !== '') return explicit;
  let dir = from;
  for (let depth = 0; depth < 5; depth++) {
    const candidate = join(dir, ADDON_RELATIVE_PATH);
    if (existsSync(candidate)) return candidate;
    const up = dirname(dir);
    if (up === dir) break;
    dir = up;
  }
  return undefined;
}

function loadUncached(where: LoadEnvironment): NativeEngineLoad {
  const refusal = runtimeRefusal(where.env, where.versions);
  if (refusal !== undefined) return { ok: false, reason: refusal };
  const path = findAddon(where.env, where.from);
  if (path === undefined) return { ok: false, reason: `the addon is not built (no ${ADDON_RELATIVE_PATH}; run \`node native/tls-engine/build.mjs\`, which needs gcc and make)` };
  let loaded: Partial<NativeBinding>;
  try {
    loaded = createRequire(import.meta.url)(path) as Partial<NativeBinding>;
  } catch (err) {
    return { ok: false, reason: `${path} did not load: ${(err as Error).message.split('\n')[0]}` };
  }
  const missing = REQUIRED_FUNCTIONS.filter((name) => typeof loaded[name] !== 'function');
  if (missing.length > 0) return { ok: false, reason: `${path} lacks ${missing.join(', ')} (an addon of another version?)` };
  const binding = loaded as NativeBinding;
  return { ok: true, binding, openssl: binding.opensslVersion(), path };
}

let cached: NativeEngineLoad | undefined;

/** The engine of this process (loaded once), or why not. */
export function loadNativeEngine(where?: LoadEnvironment): NativeEngineLoad {
  if (where !== undefined) return loadUncached(where);
  cached ??= loadUncached({ env: process.env, versions: process.versions, from: import.meta.dirname });
  return cached;
}

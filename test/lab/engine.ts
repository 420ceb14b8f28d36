/**
 * The TLS engine the tests' listeners run on (tls.engine defaults to auto):
 * the native engine when it is built and loads, node:tls otherwise or with
 * DANCEGATE_NATIVE=0 (CI runs the e2e suites both ways). Tests whose
 * expectations differ by engine read this.
 */
import { loadNativeEngine } from '../../src/tls/native-engine.js';

export const TEST_ENGINE: 'native' | 'node' = loadNativeEngine().ok ? 'native' : 'node';

/** The value for this engine. */
export const byEngine = <T>(values: { readonly native: T; readonly node: T }): T => values[TEST_ENGINE];

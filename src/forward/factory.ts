/**
 * The forwarder of a listener, by its mode: what the top of the program
 * injects into the connection pipeline (see connection/forwarder.ts). With
 * the config loader, the one place that looks at a listener's mode.
 */
import type { ListenerConfig } from '../config/types.js';
import type { Forwarder } from '../connection/forwarder.js';
import { HttpForwarder } from './http-forward.js';
import { TcpForwarder } from './tcp-forward.js';

export function createForwarder(listener: ListenerConfig): Forwarder {
  return listener.mode === 'http' ? new HttpForwarder(listener) : new TcpForwarder(listener);
}

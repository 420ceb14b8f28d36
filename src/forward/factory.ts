/**
 * The forwarder of a listener, by its mode: what the top of the program
 * injects into the connection pipeline (see connection/forwarder.ts).
 */
import type { ListenerConfig } from '../config/types.js';
import type { ForwardingObserver } from '../connection/listener.js';
import type { Forwarder } from '../connection/forwarder.js';
import { REASONS } from '../reasons.js';
import { HttpForwarder } from './http-forward.js';
import { forwardTcp } from './tcp-forward.js';

export function createForwarder(listener: ListenerConfig, observer?: ForwardingObserver): Forwarder {
  if (listener.mode === 'http') {
    const http = new HttpForwarder(listener.http, listener.idleTimeoutMs, observer, listener.name);
    return {
      alpn: ['http/1.1'],
      forwardsUnauthenticated: listener.policy === 'optional',
      accept: (socket, context) => http.accept(socket, context),
      refuse: (socket, reason) => (listener.http.refuseWith403 ? http.refuse(socket, reason, REASONS[reason].temporary) : socket.destroy()),
      drain: () => http.startDraining(),
      close: () => http.close(),
    };
  }
  return {
    alpn: undefined,
    forwardsUnauthenticated: false,
    accept: (socket, context) => forwardTcp(socket, context, observer),
    refuse: (socket) => socket.destroy(),
    drain: () => undefined,
    close: () => undefined,
  };
}

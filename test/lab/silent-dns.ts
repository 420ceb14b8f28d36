/**
 * The one allowed fake: a DNS server that never answers (or answers late),
 * standing in for a black-holed or slow authoritative server or resolver,
 * which the real parts cannot be made to be on demand.
 */
import { once } from 'node:events';
import * as dgram from 'node:dgram';
import * as net from 'node:net';
import * as dnsPacket from 'dns-packet';
import { freePort } from './dnssec-lab.js';

export interface SilentDns {
  readonly host: '127.0.0.1';
  readonly port: number;
  udpQueriesSeen(): number;
  tcpConnectionsSeen(): number;
  stop(): Promise<void>;
}

/** 'drop': never answer. { delayMs }: answer NOERROR/NODATA (unsigned) after the delay. */
export async function startSilentDns(mode: 'drop' | { delayMs: number }): Promise<SilentDns> {
  const port = await freePort();
  const udp = dgram.createSocket('udp4');
  const tcp = net.createServer();
  const sockets = new Set<net.Socket>();
  const timers = new Set<NodeJS.Timeout>();
  let udpQueries = 0;
  let tcpConnections = 0;
  udp.on('message', (msg, rinfo) => {
    udpQueries++;
    if (mode === 'drop') return;
    const timer = setTimeout(() => {
      timers.delete(timer);
      try {
        const query = dnsPacket.decode(msg);
        const reply = dnsPacket.encode({
          type: 'response',
          id: query.id,
          flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE,
          questions: query.questions,
        });
        udp.send(reply, rinfo.port, rinfo.address);
      } catch {
        // not a query: stay silent
      }
    }, mode.delayMs);
    timers.add(timer);
  });
  tcp.on('connection', (socket) => {
    tcpConnections++;
    sockets.add(socket);
    socket.on('data', () => undefined);
    socket.on('error', () => undefined);
    socket.on('close', () => sockets.delete(socket));
  });
  udp.bind(port, '127.0.0.1');
  tcp.listen(port, '127.0.0.1');
  await Promise.all([once(udp, 'listening'), once(tcp, 'listening')]);
  return {
    host: '127.0.0.1',
    port,
    udpQueriesSeen: () => udpQueries,
    tcpConnectionsSeen: () => tcpConnections,
    async stop() {
      for (const t of timers) clearTimeout(t);
      for (const s of sockets) s.destroy();
      udp.close();
      await new Promise<void>((resolve) => tcp.close(() => resolve()));
    },
  };
}

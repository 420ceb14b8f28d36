/**
 * The proxy under attack, in its own process so that its RSS and event-loop
 * delay are its own: loads the configuration given as argv[2], starts
 * dancegate, and answers the parent's IPC requests for figures.
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { loadConfig } from '../src/config/load.js';
import { startProxy } from '../src/process/running-proxy.js';

interface Request {
  readonly type: 'stats' | 'reset' | 'stop';
}

const configPath = process.argv[2];
if (configPath === undefined || process.send === undefined) throw new Error('usage: fork(attack-proxy.js, [config.yaml]) with an IPC channel');
const send = process.send.bind(process);

const proxy = await startProxy(await loadConfig(configPath), { log: () => undefined });
// 1 ms sampling: reported delays include that period.
const delay = monitorEventLoopDelay({ resolution: 1 });
delay.enable();
let peakRss = process.memoryUsage().rss;
const sampler = setInterval(() => {
  peakRss = Math.max(peakRss, process.memoryUsage().rss);
}, 100);

process.on('message', (message: Request) => {
  if (message.type === 'reset') {
    delay.reset();
    peakRss = process.memoryUsage().rss;
    send({ type: 'reset' });
  } else if (message.type === 'stats') {
    send({
      type: 'stats',
      rssMb: process.memoryUsage().rss / 1048576,
      peakRssMb: peakRss / 1048576,
      eventLoopDelayMs: { p50: delay.percentile(50) / 1e6, p99: delay.percentile(99) / 1e6, max: delay.max / 1e6 },
      gate: proxy.gate?.stats(),
      handshakesInProgress: proxy.admission.handshakesInProgress,
      decisions: proxy.counters.snapshot(),
    });
  } else {
    clearInterval(sampler);
    void proxy.close().then(() => process.exit(0));
  }
});
send({ type: 'ready', port: proxy.listeners[0]?.port });

/** Helpers for the real daemons tests and benchmarks start (NSD, Unbound, HAProxy, nginx, dancegate). */
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import * as net from 'node:net';

/** SIGTERM, then SIGKILL after `graceMs`; resolves once the process has exited. */
export async function stopProcess(child: ChildProcess, graceMs = 3_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}

/** Wait until something accepts TCP connections on 127.0.0.1:`port`; throws naming `what` after `timeoutMs`. */
export async function waitForTcpPort(port: number, what = `port ${port}`, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => {
        s.destroy();
        resolve(true);
      });
      s.on('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`${what} did not start listening on ${port}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

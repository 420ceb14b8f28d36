/**
 * The admin listener (loopback by default): GET /metrics (Prometheus text),
 * /healthz (the process is alive; a cluster primary: a worker is up), /readyz (listeners bound and the
 * resolver answering; 503 otherwise), /status (JSON). Nothing else.
 */
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface Readiness {
  readonly ready: boolean;
  readonly checks: Readonly<Record<string, { readonly ok: boolean; readonly detail: string }>>;
}

export interface AdminSource {
  metrics(): Promise<{ contentType: string; body: string }>;
  readiness(): Promise<Readiness>;
  status(): Promise<object>;
  /** /healthz: the process can serve (a cluster primary: at least one worker up); default always ok. */
  health?(): { ok: boolean; detail: string };
}

export interface AdminServer {
  readonly host: string;
  readonly port: number;
  close(): Promise<void>;
}

function json(res: http.ServerResponse, status: number, value: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' }).end(`${JSON.stringify(value, null, 2)}\n`);
}

export async function startAdminServer(host: string, port: number, source: AdminSource): Promise<AdminServer> {
  const server = http.createServer({ requestTimeout: 10_000, headersTimeout: 5_000 }, (req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    const fail = (err: unknown): void => {
      if (!res.headersSent) json(res, 500, { error: err instanceof Error ? err.message : String(err) });
    };
    switch (path) {
      case '/healthz': {
        const health = source.health?.() ?? { ok: true, detail: 'ok' };
        res.writeHead(health.ok ? 200 : 503, { 'content-type': 'text/plain; charset=utf-8' }).end(`${health.detail}\n`);
        return;
      }
      case '/metrics':
        source.metrics().then(({ contentType, body }) => res.writeHead(200, { 'content-type': contentType }).end(body), fail);
        return;
      case '/readyz':
        source.readiness().then((r) => json(res, r.ready ? 200 : 503, r), fail);
        return;
      case '/status':
        source.status().then((s) => json(res, 200, s), fail);
        return;
      default:
        res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' }).end('not found: /metrics /healthz /readyz /status\n');
    }
  });
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  return {
    host: address.address,
    port: address.port,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

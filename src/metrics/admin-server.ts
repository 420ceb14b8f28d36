/**
 * The admin listener (loopback by default; never expose it): GET /metrics
 * (Prometheus text), /healthz (the process is alive; a cluster primary: a
 * worker is up), /readyz (listeners bound and the resolver validating; 503
 * otherwise), /status (JSON), and POST /penalty-box/unban?address=IP (lift
 * an address's ban). Nothing else.
 */
import * as http from 'node:http';
import { isIP, type AddressInfo } from 'node:net';

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
  /** POST /penalty-box/unban?address=IP: lift the address's ban; answers what was lifted (JSON). */
  unban?(address: string): Promise<object>;
}

const UNBAN_PATH = '/penalty-box/unban';

/** The address of an unban request's query string, or what is wrong with it. Pure. */
export function unbanAddress(url: string): { ok: true; address: string } | { ok: false; error: string } {
  const query = new URLSearchParams(url.includes('?') ? url.slice(url.indexOf('?') + 1) : '');
  const all = query.getAll('address');
  if (all.length !== 1) return { ok: false, error: `address: give exactly one, as in POST ${UNBAN_PATH}?address=192.0.2.7 (got ${all.length})` };
  const address = (all[0] ?? '').trim();
  if (isIP(address) === 0) return { ok: false, error: `address: expected an IPv4 or IPv6 address, got '${address.slice(0, 100)}'` };
  return { ok: true, address };
}

/**
 * Why a state-changing admin request must be refused, or undefined. The
 * admin listener has no credentials, so a web page in a browser on the same
 * host must not be able to use it: a request that a browser sent (it says
 * where from: `Origin`, `Sec-Fetch-Site`) is refused, and so is one whose
 * Host is a DNS name other than localhost (DNS rebinding: a page whose name
 * now points at 127.0.0.1). curl and scripts send neither. Pure.
 */
export function browserRequestRefusal(headers: http.IncomingHttpHeaders): string | undefined {
  if (headers.origin !== undefined || headers['sec-fetch-site'] !== undefined)
    return 'refused: a request from a web browser (Origin or Sec-Fetch-Site present); use curl or a script on the admin host';
  const host = headers.host;
  if (host === undefined) return undefined;
  const hostname = host.startsWith('[') ? host.slice(1, host.indexOf(']')) : host.replace(/:\d*$/, '');
  if (isIP(hostname) === 0 && hostname.toLowerCase() !== 'localhost') return `refused: Host '${host.slice(0, 100)}' is neither an IP address nor localhost`;
  return undefined;
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
    const fail = (err: unknown): void => {
      if (!res.headersSent) json(res, 500, { error: err instanceof Error ? err.message : String(err) });
    };
    if (path === UNBAN_PATH && source.unban !== undefined) {
      if (req.method !== 'POST') {
        res.writeHead(405, { allow: 'POST' }).end();
        return;
      }
      // The body is not read: everything is in the query string.
      req.resume();
      const refusal = browserRequestRefusal(req.headers);
      if (refusal !== undefined) return json(res, 403, { error: refusal });
      const wanted = unbanAddress(req.url ?? '');
      if (!wanted.ok) return json(res, 400, { error: wanted.error });
      source.unban(wanted.address).then((answer) => json(res, 200, answer), fail);
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
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
        res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' }).end(`not found: /metrics /healthz /readyz /status${source.unban ? ` (POST ${UNBAN_PATH}?address=IP)` : ''}\n`);
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

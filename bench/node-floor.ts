/**
 * What Node's own TLS and HTTP stack can do, without dancegate, as the floor
 * that bench/compare measures dancegate against: node:https with requestCert
 * (no verification) on WORKERS cluster workers that accept connections
 * themselves, either answering "ok" itself (`self`) or forwarding every
 * request with http.request over a keep-alive agent (`proxy`), the least a
 * Node HTTP proxy does.
 *
 *   node node-floor.js self|proxy PORT CERT KEY WORKERS [UPSTREAM_PORT]
 */
import cluster from 'node:cluster';
import { readFileSync } from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';

const [mode, port, certFile, keyFile, workers, upstreamPort] = process.argv.slice(2);
if ((mode !== 'self' && mode !== 'proxy') || !port || !certFile || !keyFile || !workers || (mode === 'proxy' && !upstreamPort)) {
  console.error('usage: node-floor self|proxy PORT CERT KEY WORKERS [UPSTREAM_PORT]');
  process.exit(2);
}

cluster.schedulingPolicy = cluster.SCHED_NONE;
if (cluster.isPrimary) {
  for (let i = 0; i < Number(workers); i++) cluster.fork();
  process.on('SIGTERM', () => {
    for (const worker of Object.values(cluster.workers ?? {})) worker?.kill();
    process.exit(0);
  });
} else {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
  const server = https.createServer({ cert: readFileSync(certFile), key: readFileSync(keyFile), requestCert: true, rejectUnauthorized: false }, (req, res) => {
    // An explicit Content-Length: without it Node answers an HTTP/1.0 keep-alive request (ab's) with Connection: close.
    if (mode === 'self') {
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '2' }).end('ok');
      return;
    }
    const upstream = http.request({ host: '127.0.0.1', port: Number(upstreamPort), path: req.url, method: req.method, headers: { host: req.headers.host ?? 'localhost' }, agent }, (answer) => {
      const length = answer.headers['content-length'];
      res.writeHead(answer.statusCode ?? 502, { 'content-type': answer.headers['content-type'] ?? 'text/plain', ...(length === undefined ? {} : { 'content-length': length }) });
      answer.pipe(res);
    });
    upstream.on('error', () => {
      res.statusCode = 502;
      res.end();
    });
    req.pipe(upstream);
  });
  server.listen(Number(port), '127.0.0.1');
}

// Smoke test of the built addon: one accepted and one refused handshake
// between an engine server and an engine client, in memory (no sockets).
//   node test/smoke.mjs [path/to/addon.node]
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import assert from 'node:assert/strict';

const here = dirname(fileURLToPath(import.meta.url));
const addon = resolve(process.argv[2] ?? join(here, '..', 'build', 'dancegate_tls.node'));
const b = createRequire(import.meta.url)(addon);
const pki = mkdtempSync(join(tmpdir(), 'dg-smoke-'));
try {
  execFileSync(join(here, 'gen-pki.sh'), [pki]);
  const read = (f) => readFileSync(join(pki, f), 'utf8');
  const base = { extensionType: 65280, minVersion: 'TLSv1.2', maxVersion: 'TLSv1.3', alpn: ['http/1.1'] };
  const sctx = b.createContext({ ...base, role: 'server', certPem: read('server-chain.pem'), keyPem: read('server.key') });
  const cctx = b.createContext({ ...base, role: 'client', certPem: read('client-chain.pem'), keyPem: read('client.key'), caPem: read('ca.pem') });

  function run(accept) {
    const s = new b.Connection(sctx, { requireCertificate: true, pauseForVerify: true });
    const c = new b.Connection(cctx, { serverName: 'localhost', verifyHost: 'localhost', clientName: 'sensor7._device.example.com', clientNameForm: 'certificate' });
    let cr = c.feed();
    let sr;
    let verify;
    let serverEstablished;
    let clientEstablished;
    for (let i = 0; i < 10; i++) {
      sr = s.feed(cr.out);
      if (sr.state === 'verify') {
        verify = sr.verify;
        const out1 = sr.out;
        sr = s.decide(accept);
        sr = { ...sr, out: Buffer.concat([out1 ?? Buffer.alloc(0), sr.out ?? Buffer.alloc(0)]) };
      }
      serverEstablished ??= sr.established;
      cr = c.feed(sr.out);
      clientEstablished ??= cr.established;
      if (cr.state === 'error' || (cr.state === 'open' && sr.state === 'open') || sr.state === 'error') break;
    }
    assert.ok(verify, 'server paused');
    assert.equal(verify.clientName.toString(), 'sensor7._device.example.com');
    assert.equal(verify.certificates.length, 2);
    assert.equal(verify.protocol, 'TLSv1.3');
    if (accept) {
      assert.equal(sr.state, 'open');
      assert.deepEqual(serverEstablished, { protocol: 'TLSv1.3', alpn: 'http/1.1', cipher: serverEstablished.cipher });
      assert.equal(clientEstablished.alpn, 'http/1.1');
      const w = c.write(Buffer.from('ping'));
      const r = s.feed(w.out);
      assert.equal(r.plaintext.toString(), 'ping');
      const w2 = s.write(Buffer.from('pong'));
      assert.equal(c.feed(w2.out).plaintext.toString(), 'pong');
      const sd = c.shutdown();
      assert.equal(s.feed(sd.out).state, 'closed');
    } else {
      assert.equal(sr.state, 'error');
      assert.equal(sr.alertSent, 40);
      // TLS 1.3: the client finished first; the alert arrives on its next read.
      if (cr.state !== 'error') cr = c.feed(sr.out);
      assert.equal(cr.state, 'error');
      assert.equal(cr.alertReceived, 40);
      assert.equal(cr.plaintext, null);
    }
    s.destroy();
    c.destroy();
    assert.throws(() => s.feed(), /connection destroyed/);
    s.destroy(); // idempotent
  }
  run(true);
  run(false);

  // Argument validation: TypeError/RangeError naming the option.
  const server = { ...base, role: 'server', certPem: read('server-chain.pem'), keyPem: read('server.key') };
  assert.throws(() => b.createContext({ ...server, extensionType: 65536 }), { name: 'RangeError', message: 'extensionType must be an integer 0..65535' });
  assert.throws(() => b.createContext({ ...server, extensionType: '65280' }), { name: 'TypeError', message: 'extensionType must be an integer 0..65535' });
  assert.throws(() => b.createContext({ ...server, alpn: [''] }), { name: 'RangeError', message: 'alpn entries must be 1..255 bytes' });
  assert.throws(() => b.createContext({ ...server, alpn: ['x'.repeat(256)] }), { name: 'RangeError', message: 'alpn entries must be 1..255 bytes' });
  assert.throws(() => b.createContext({ ...server, certPem: undefined }), { name: 'TypeError', message: 'certPem and keyPem are required for a server context' });
  assert.throws(() => b.createContext({ ...server, keyPem: read('other.key') }), { name: 'RangeError', message: 'certificate and private key do not match' });
  assert.throws(() => b.createContext({ ...server, groups: 'P-256:bogus' }), { name: 'RangeError', message: 'groups: OpenSSL refused "P-256:bogus"' });
  assert.throws(() => b.createContext({ ...server, ciphers: 'BOGUS' }), { name: 'RangeError', message: /^ciphers: OpenSSL refused/ });
  assert.throws(() => b.createContext({ ...server, sigalgs: 'bogus' }), { name: 'RangeError', message: /^sigalgs: OpenSSL refused/ });
  assert.throws(() => b.createContext({ ...server, ciphersuites: 'BOGUS' }), { name: 'RangeError', message: /^ciphersuites: OpenSSL refused/ });
  assert.throws(() => b.createContext({ ...server, minVersion: 'TLSv1.1' }), { name: 'RangeError', message: "minVersion must be 'TLSv1.2' or 'TLSv1.3'" });
  assert.throws(() => b.createContext({ ...server, role: 'proxy' }), { name: 'TypeError', message: "role must be 'server' or 'client'" });
  assert.throws(() => b.createContext({ ...server, maxCertListBytes: 0 }), { name: 'RangeError', message: /^maxCertListBytes/ });
  assert.throws(() => new b.Connection({}, {}), { name: 'TypeError', message: 'context must be a value returned by createContext()' });
  assert.throws(() => new b.Connection(cctx, { clientName: '' }), { name: 'RangeError', message: 'clientName must be 1..255 bytes' });
  assert.throws(() => new b.Connection(cctx, { clientNameForm: 'header' }), { name: 'RangeError', message: "clientNameForm must be 'certificate' or 'clienthello'" });
  assert.throws(() => new b.Connection(sctx, { pauseForVerify: 1 }), { name: 'TypeError', message: 'pauseForVerify must be a boolean' });
  const fresh = new b.Connection(sctx, {});
  assert.throws(() => fresh.decide(true), { name: 'Error', message: "decide() is only valid in state 'verify' (state is 'handshake')" });
  assert.throws(() => fresh.write(Buffer.from('x')), { name: 'Error', message: /^write\(\) is only valid in state 'open'/ });
  assert.throws(() => fresh.feed('text'), { name: 'TypeError', message: 'data must be a Buffer' });
  assert.equal(b.limitPausedHandshakes(1000), false); // this thread already ran paused handshakes
  assert.throws(() => b.limitPausedHandshakes(0), { name: 'RangeError' });
  fresh.destroy();

  // Connections left paused for the garbage collector: the finalizers finish their jobs.
  if (typeof globalThis.gc === 'function') {
    for (let i = 0; i < 50; i++) {
      const s = new b.Connection(sctx, { requireCertificate: true });
      const c = new b.Connection(cctx, { clientName: 'gc.example' });
      let cr = c.feed();
      let sr = s.feed(cr.out);
      cr = c.feed(sr.out);
      sr = s.feed(cr.out);
      assert.equal(sr.state, 'verify');
    }
    globalThis.gc();
    await new Promise((r) => setImmediate(r));
    globalThis.gc();
  }
  console.log(`smoke: accept + refuse OK on ${b.opensslVersion()}`);
} finally {
  rmSync(pki, { recursive: true, force: true });
}

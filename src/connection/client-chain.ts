/**
 * Limits on the certificate chain a client presents (issue 10, finding 6).
 *
 * With `requestCert` and `rejectUnauthorized: false`, OpenSSL still checks
 * every signature of the chain the client sends, as soon as its Certificate
 * message arrives and before any proof that the client holds a key, and
 * node:tls exposes no way to stop it (its verify callback always answers
 * "continue"; no verify depth, no max_cert_list). A chain of RSA-3072 keys
 * with 3070-bit public exponents costs ~8 ms per certificate, up to ~0.5 s
 * for the ~73 certificates that fit OpenSSL's 100 KB message limit. What we
 * can do is judge the chain the moment the handshake ends (or fails), and
 * make sure an address pays that price once: a chain over these limits is a
 * `chain-over-limits` refusal and its address goes to the penalty box (see
 * Admission.banAddress). The checks cost microseconds (no rendering of the
 * certificates: node:crypto X509Certificate objects, keys read from them).
 */
import type { KeyObject, X509Certificate } from 'node:crypto';
import type { TLSSocket } from 'node:tls';
import { keyPolicyViolation } from '../dane/key-policy.js';

/** What the limits look at in one presented certificate. */
export interface ChainEntry {
  readonly subject: string;
  /** Throws when OpenSSL cannot give the key (an algorithm it parsed but cannot use). */
  readonly publicKey: KeyObject;
}

/**
 * The certificates the client sent, leaf first, in the order it sent them
 * (at most `max + 1`, so that one too many can be told). Read through
 * getPeerX509Certificate(), the cheapest view node:tls has.
 *
 * Caveat (Node 20): getPeerX509Certificate() consumes the SSL object's peer
 * chain: afterwards getPeerCertificate(true) shows the leaf alone. So read
 * the chain once, here, and use these certificates for everything else.
 */
export function presentedChain(socket: TLSSocket, max: number): X509Certificate[] {
  const chain: X509Certificate[] = [];
  let cert: X509Certificate | undefined = socket.getPeerX509Certificate();
  while (cert !== undefined && chain.length <= max) {
    chain.push(cert);
    cert = cert.issuerCertificate;
  }
  return chain;
}

function firstLine(subject: string): string {
  const line = subject.split('\n')[0] ?? '';
  return line.length > 80 ? `${line.slice(0, 80)}…` : line;
}

/**
 * Why the presented chain is over the limits, or undefined: more than
 * `maxCertificates` certificates, or a certificate whose public key
 * src/dane/key-policy.ts would not verify a signature with (RSA moduli of
 * 1024..8192 bits with exponents of at most 32 bits; EC, Ed25519, Ed448; no
 * DSA). Any key in the chain counts, not only issuers': the leaf's signs
 * the handshake (CertificateVerify), which OpenSSL checks too.
 */
export function chainLimitViolation(chain: readonly ChainEntry[], maxCertificates: number): string | undefined {
  if (chain.length > maxCertificates) return `the client sent more than ${maxCertificates} certificates (limits.handshakes.maxClientCertificates)`;
  for (const [i, cert] of chain.entries()) {
    let why: string | undefined;
    try {
      why = keyPolicyViolation(cert.publicKey);
    } catch (err) {
      why = `its public key cannot be read (${(err as Error).message.slice(0, 100)})`;
    }
    if (why !== undefined) return `certificate ${i + 1} of ${chain.length} (${firstLine(cert.subject)}): ${why}`;
  }
  return undefined;
}

/** Why `bytes` sent between the ClientHello and the end of the handshake are over the limit, or undefined. */
export function flightViolation(bytes: number, maxFlightBytes: number): string | undefined {
  if (bytes <= maxFlightBytes) return undefined;
  return `the client sent ${bytes} bytes of handshake after its ClientHello; at most ${maxFlightBytes} are accepted (limits.handshakes.maxClientFlightBytes)`;
}

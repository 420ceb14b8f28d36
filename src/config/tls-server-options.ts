/**
 * OpenSSL options every server-side secure context of dancegate gets (the
 * listeners' and the one config loading builds to check a certificate/key
 * pair), so what is validated is what runs. Pure constants.
 */
import { constants } from 'node:crypto';

/**
 * - SSL_OP_NO_RENEGOTIATION: a TLS 1.2 client's renegotiation request is
 *   refused by OpenSSL itself (a no_renegotiation alert). node:tls's
 *   `disableRenegotiation()` does nothing on a TLSSocket built outside
 *   tls.Server (its error is swallowed), and neither does its 3-per-10-minutes
 *   limit, so this option is the only thing that stops renegotiation here.
 * - SSL_OP_NO_TICKET: no session tickets (a resumed session shows only the
 *   leaf certificate; every connection is verified in full).
 */
export const SERVER_SECURE_OPTIONS = constants.SSL_OP_NO_RENEGOTIATION | constants.SSL_OP_NO_TICKET;

/**
 * Signature algorithms offered (in CertificateRequest) and accepted for the
 * client's CertificateVerify, and used for our own: ECDSA on the three NIST
 * curves, EdDSA, RSA-PSS and PKCS#1 v1.5 with SHA-2 (256/384/512). Left out:
 * SHA-1 and SHA-224, DSA, brainpool, GOST. This governs the one signature
 * the client makes in the handshake, not the signatures inside its chain,
 * which OpenSSL checks whatever their algorithm (see the client chain limits).
 */
export const SERVER_SIGALGS = [
  'ecdsa_secp256r1_sha256',
  'ecdsa_secp384r1_sha384',
  'ecdsa_secp521r1_sha512',
  'ed25519',
  'ed448',
  'rsa_pss_rsae_sha256',
  'rsa_pss_rsae_sha384',
  'rsa_pss_rsae_sha512',
  'rsa_pss_pss_sha256',
  'rsa_pss_pss_sha384',
  'rsa_pss_pss_sha512',
  'rsa_pkcs1_sha256',
  'rsa_pkcs1_sha384',
  'rsa_pkcs1_sha512',
].join(':');

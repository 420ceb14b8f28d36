/*
 * dancegate native TLS engine: the OpenSSL-only core (see engine.h).
 *
 * What it adds to a plain OpenSSL server:
 *  - the dane_clientid extension (draft-ietf-dance-client-auth-13): sent
 *    empty in the TLS 1.3 CertificateRequest, read from the end-entity entry
 *    of the client's Certificate message;
 *  - a pause inside certificate verification, so the caller (JavaScript) can
 *    do its asynchronous allowlist / DNS lookup / TLSA match and then accept
 *    or refuse within the handshake, with a real TLS alert.
 *
 * How the pause works. The server's certificate-verify callback
 * (SSL_CTX_set_cert_verify_callback) runs synchronously inside
 * tls_process_client_certificate(); the server state machine has no
 * "come back later" path there. So the handshake runs inside an OpenSSL
 * ASYNC job (SSL_MODE_ASYNC, a fibre with its own small stack), and the
 * callback loops on ASYNC_pause_job() until dg_conn_decide() records a
 * decision. SSL_do_handshake() then returns SSL_ERROR_WANT_ASYNC (state
 * 'verify'); calling it again resumes the fibre inside the callback, which
 * returns 1 (accept) or 0 with X509_V_ERR_APPLICATION_VERIFICATION, which
 * OpenSSL turns into a fatal handshake_failure (40) alert.
 *
 * TRAP, never do this: SSL_set_retry_verify() looks like the obvious way to
 * pause verification, but it is honoured only on a client (OpenSSL 3.0 and
 * 3.5: only statem_clnt.c has the retry path). On a server it is ignored:
 * the callback's return value stands, and a callback that "pauses" by
 * returning 1 after SSL_set_retry_verify() lets the handshake COMPLETE, so a
 * client the caller later refuses has already been served (fail-open).
 * test/test_engine.c ("refuse really refuses") guards this.
 *
 * SSL_MODE_ASYNC is set only after our first flight has been written, so
 * ClientHello processing, key exchange and our signature run on the normal
 * stack; the fibre (32 KiB stack) only runs the client's second flight. It is
 * cleared again once the handshake is done, so application data never runs
 * in a job. Every callback here only writes to the C structs: none of them
 * may call into JavaScript, since it may be running on the fibre stack.
 *
 * Each public function clears the thread's OpenSSL error queue on entry and
 * exit: node:tls shares that queue and must never see our errors.
 */
#include "engine.h"

#include <openssl/async.h>
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <openssl/x509_vfy.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { DEC_NONE = 0, DEC_ACCEPT = 1, DEC_REFUSE = 2 };

/* Plaintext is read straight into the connection's buffer in steps of one record. */
#define READ_STEP 16384

struct dg_ctx {
  SSL_CTX *ssl_ctx;
  dg_role role;
  unsigned int ext_type;
  int min_version;
  int max_version;
  unsigned char *alpn; /* server: accepted protocols, wire format, most preferred first */
  size_t alpn_len;
  long refs; /* one per handle (the caller's) and one per connection */
};

struct dg_conn {
  dg_ctx *ctx;
  SSL *ssl;
  BIO *rbio, *wbio; /* owned by ssl */
  dg_state state;
  int pause_for_verify;
  int omit_name_request;
  int async_armed; /* SSL_MODE_ASYNC currently set */
  int paused;      /* parked inside verify_cb (ASYNC job paused) */
  int decision;
  int sent_shutdown;
  int verify_seen, verify_reported;
  int established_pending;
  /* server: the ClientName from the end-entity Certificate entry */
  unsigned char name[255];
  size_t name_len;
  /* server: the client's certificates, leaf first, DER */
  unsigned char **chain;
  size_t *chain_len;
  size_t chain_n;
  /* plaintext decrypted since the caller last took it */
  unsigned char *pt;
  size_t pt_len, pt_cap;
  int alert_sent, alert_received;
  /* client: the dane_clientid body to send (length byte + name) */
  unsigned char client_ext[256];
  size_t client_ext_len;
  dg_name_form form;
  char error[256];
};

/* Whether this thread's ASYNC pool was sized or used (ASYNC_init_thread may run only once, before any job). */
static _Thread_local int tl_async_touched;

const char *dg_openssl_version(void) { return OpenSSL_version(OPENSSL_VERSION); }

int dg_limit_paused(size_t max) {
  ERR_clear_error();
  if (tl_async_touched) return 0;
  int ok = ASYNC_init_thread(max, 0);
  if (ok) tl_async_touched = 1;
  ERR_clear_error();
  return ok;
}

const char *dg_state_name(dg_state s) {
  switch (s) {
    case DG_ST_HANDSHAKE: return "handshake";
    case DG_ST_VERIFY: return "verify";
    case DG_ST_BUSY: return "busy";
    case DG_ST_OPEN: return "open";
    case DG_ST_CLOSED: return "closed";
    case DG_ST_ERROR: return "error";
  }
  return "error";
}

int dg_parse_client_name(const unsigned char *in, size_t inlen, const unsigned char **name, size_t *name_len) {
  /* opaque ClientName<0..255>: exactly one length byte, then exactly that many bytes. */
  if (in == NULL || inlen < 1 || (size_t)in[0] != inlen - 1) return 0;
  *name = in + 1;
  *name_len = inlen - 1;
  return 1;
}

/* ------------------------------------------------------------------------ */
/* OpenSSL callbacks: no allocation beyond the C structs, never any JavaScript. */

static void info_cb(const SSL *s, int where, int ret) {
  if ((where & SSL_CB_ALERT) == 0) return;
  dg_conn *c = SSL_get_app_data(s);
  if (c == NULL) return;
  int desc = ret & 0xff;
  if (desc == SSL_AD_CLOSE_NOTIFY) return; /* an orderly close is not an alert worth reporting */
  if (where & SSL_CB_WRITE)
    c->alert_sent = desc;
  else
    c->alert_received = desc;
}

static int server_ext_add(SSL *s, unsigned int ext_type, unsigned int context, const unsigned char **out,
                          size_t *outlen, X509 *x, size_t chainidx, int *al, void *arg) {
  (void)ext_type, (void)x, (void)chainidx, (void)al, (void)arg;
  const dg_conn *c = SSL_get_app_data(s);
  /* Not asked when the caller says so: a client that sent the name in its
   * ClientHello knows the type only there, and RFC 8446 §4.2 makes it abort
   * (illegal_parameter) on meeting it in a CertificateRequest. */
  if (context == SSL_EXT_TLS1_3_CERTIFICATE_REQUEST && c != NULL && !c->omit_name_request) {
    /* Empty: "send me your dane_clientid in your Certificate". */
    *out = NULL;
    *outlen = 0;
    return 1;
  }
  return 0; /* never in our own Certificate */
}

static int server_ext_parse(SSL *s, unsigned int ext_type, unsigned int context, const unsigned char *in,
                            size_t inlen, X509 *x, size_t chainidx, int *al, void *arg) {
  (void)ext_type, (void)x, (void)arg;
  dg_conn *c = SSL_get_app_data(s);
  /* The ClientHello form (tls-clientid) is read by the caller from the raw
   * ClientHello; it is registered here only so OpenSSL accepts it there
   * (an extension in a message outside its registered contexts is fatal). */
  if (c == NULL || context != SSL_EXT_TLS1_3_CERTIFICATE) return 1;
  if (chainidx != 0) return 1; /* only the end-entity entry carries the name; others are ignored */
  const unsigned char *name;
  size_t len;
  if (!dg_parse_client_name(in, inlen, &name, &len)) {
    *al = SSL_AD_DECODE_ERROR;
    return 0;
  }
  memcpy(c->name, name, len); /* len <= 255 == sizeof c->name */
  c->name_len = len;
  return 1;
}

static int client_ext_add(SSL *s, unsigned int ext_type, unsigned int context, const unsigned char **out,
                          size_t *outlen, X509 *x, size_t chainidx, int *al, void *arg) {
  (void)ext_type, (void)x, (void)al, (void)arg;
  dg_conn *c = SSL_get_app_data(s);
  if (c == NULL || c->client_ext_len == 0) return 0;
  int send = (context == SSL_EXT_CLIENT_HELLO && c->form == DG_FORM_CLIENTHELLO) ||
             (context == SSL_EXT_TLS1_3_CERTIFICATE && c->form == DG_FORM_CERTIFICATE && chainidx == 0);
  if (!send) return 0;
  *out = c->client_ext; /* lives as long as the connection, so no free callback */
  *outlen = c->client_ext_len;
  return 1;
}

static int client_ext_parse(SSL *s, unsigned int ext_type, unsigned int context, const unsigned char *in,
                            size_t inlen, X509 *x, size_t chainidx, int *al, void *arg) {
  (void)s, (void)ext_type, (void)context, (void)in, (void)x, (void)chainidx, (void)arg;
  /* CertificateRequest, or a server's echo of the ClientHello form: both are empty. */
  if (inlen != 0) {
    *al = SSL_AD_DECODE_ERROR;
    return 0;
  }
  return 1;
}

/* Server preference: the first of our protocols that the client offered. */
static int alpn_select(SSL *s, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
                       unsigned int inlen, void *arg) {
  (void)s;
  const dg_ctx *ctx = arg;
  for (size_t i = 0; i < ctx->alpn_len; i += 1 + (size_t)ctx->alpn[i]) {
    const unsigned char *ours = ctx->alpn + i + 1;
    size_t ours_len = ctx->alpn[i];
    for (size_t j = 0; j < inlen;) {
      size_t theirs_len = in[j];
      if (theirs_len == 0 || j + 1 + theirs_len > inlen) break; /* malformed list: stop reading it */
      if (theirs_len == ours_len && memcmp(in + j + 1, ours, ours_len) == 0) {
        *out = ours; /* points into the context, which outlives the handshake */
        *outlen = (unsigned char)ours_len;
        return SSL_TLSEXT_ERR_OK;
      }
      j += 1 + theirs_len;
    }
  }
  return SSL_TLSEXT_ERR_ALERT_FATAL; /* no_application_protocol (120) */
}

static void free_chain(dg_conn *c) {
  for (size_t i = 0; i < c->chain_n; i++) OPENSSL_free(c->chain[i]);
  free(c->chain);
  free(c->chain_len);
  c->chain = NULL;
  c->chain_len = NULL;
  c->chain_n = 0;
}

/* The peer's certificates as sent, leaf first. The session's peer certificate
 * is set only after verification, so they come from the store context. */
static int capture_chain(dg_conn *c, X509_STORE_CTX *xs) {
  free_chain(c);
  STACK_OF(X509) *sent = X509_STORE_CTX_get0_untrusted(xs);
  X509 *leaf = X509_STORE_CTX_get0_cert(xs);
  int n = sent != NULL ? sk_X509_num(sent) : 0;
  size_t count = n > 0 ? (size_t)n : (leaf != NULL ? 1 : 0);
  if (count == 0) return 1;
  c->chain = calloc(count, sizeof *c->chain);
  c->chain_len = calloc(count, sizeof *c->chain_len);
  if (c->chain == NULL || c->chain_len == NULL) return 0;
  for (size_t i = 0; i < count; i++) {
    X509 *x = n > 0 ? sk_X509_value(sent, (int)i) : leaf;
    unsigned char *der = NULL;
    int len = i2d_X509(x, &der);
    if (len <= 0) return 0;
    c->chain[i] = der;
    c->chain_len[i] = (size_t)len;
    c->chain_n = i + 1;
  }
  return 1;
}

/* Replaces OpenSSL's chain verification on a server: the caller decides (DANE), not a CA store. */
static int verify_cb(X509_STORE_CTX *xs, void *arg) {
  (void)arg;
  SSL *s = X509_STORE_CTX_get_ex_data(xs, SSL_get_ex_data_X509_STORE_CTX_idx());
  dg_conn *c = s != NULL ? SSL_get_app_data(s) : NULL;
  if (c == NULL) {
    X509_STORE_CTX_set_error(xs, X509_V_ERR_APPLICATION_VERIFICATION);
    return 0;
  }
  if (!capture_chain(c, xs)) {
    free_chain(c);
    X509_STORE_CTX_set_error(xs, X509_V_ERR_OUT_OF_MEM);
    return 0;
  }
  c->verify_seen = 1;
  if (!c->pause_for_verify) {
    c->decision = DEC_ACCEPT;
  } else if (ASYNC_get_current_job() == NULL) {
    /* Not inside a job, so we cannot wait for the caller: fail closed. */
    c->decision = DEC_REFUSE;
  } else {
    while (c->decision == DEC_NONE) {
      c->paused = 1;
      if (!ASYNC_pause_job()) {
        c->decision = DEC_REFUSE;
        break;
      }
    }
    c->paused = 0;
  }
  if (c->decision == DEC_ACCEPT) {
    X509_STORE_CTX_set_error(xs, X509_V_OK);
    return 1;
  }
  /* Mapped by OpenSSL to a fatal handshake_failure (40), as draft -13 asks for every DANE failure. */
  X509_STORE_CTX_set_error(xs, X509_V_ERR_APPLICATION_VERIFICATION);
  return 0;
}

static int no_password(char *buf, int size, int rwflag, void *u) {
  (void)buf, (void)size, (void)rwflag, (void)u;
  return 0; /* encrypted keys are refused rather than prompting on a terminal */
}

/* ------------------------------------------------------------------------ */
/* Contexts */

static void set_err(char *err, size_t errlen, const char *fmt, const char *what) {
  if (err != NULL && errlen > 0) snprintf(err, errlen, fmt, what);
}

/* OpenSSL's reason for the most recent error, or a fallback. */
static const char *last_reason(const char *fallback) {
  unsigned long e = ERR_peek_last_error();
  const char *r = e != 0 ? ERR_reason_error_string(e) : NULL;
  return r != NULL ? r : fallback;
}

static int load_cert_and_key(SSL_CTX *sc, const dg_ctx_options *o, dg_status *status, char *err, size_t errlen) {
  int ok = 0;
  X509 *leaf = NULL;
  EVP_PKEY *key = NULL;
  if (o->cert_len > INT_MAX || o->key_len > INT_MAX) {
    *status = DG_ERR_RANGE;
    set_err(err, errlen, "%s", "certPem and keyPem must be under 2 GiB");
    return 0;
  }
  BIO *cb = BIO_new_mem_buf(o->cert_pem, (int)o->cert_len);
  BIO *kb = BIO_new_mem_buf(o->key_pem, (int)o->key_len);
  if (cb == NULL || kb == NULL) {
    *status = DG_ERR_INTERNAL;
    set_err(err, errlen, "%s", "out of memory");
    goto done;
  }
  *status = DG_ERR_RANGE;
  leaf = PEM_read_bio_X509(cb, NULL, no_password, NULL);
  if (leaf == NULL) {
    set_err(err, errlen, "certPem holds no PEM certificate (%s)", last_reason("no certificate"));
    goto done;
  }
  if (SSL_CTX_use_certificate(sc, leaf) != 1) {
    set_err(err, errlen, "certPem: OpenSSL refused the certificate (%s)", last_reason("unknown"));
    goto done;
  }
  for (;;) {
    X509 *extra = PEM_read_bio_X509(cb, NULL, no_password, NULL);
    if (extra == NULL) break;
    if (SSL_CTX_add0_chain_cert(sc, extra) != 1) { /* add0 takes ownership only on success */
      X509_free(extra);
      set_err(err, errlen, "certPem: OpenSSL refused a chain certificate (%s)", last_reason("unknown"));
      goto done;
    }
  }
  ERR_clear_error(); /* the loop ends on a "no start line" error */
  key = PEM_read_bio_PrivateKey(kb, NULL, no_password, NULL);
  if (key == NULL) {
    set_err(err, errlen, "keyPem holds no unencrypted PEM private key (%s)", last_reason("no key"));
    goto done;
  }
  if (SSL_CTX_use_PrivateKey(sc, key) != 1 || SSL_CTX_check_private_key(sc) != 1) {
    set_err(err, errlen, "%s", "certificate and private key do not match");
    goto done;
  }
  ok = 1;
  *status = DG_OK;
done:
  X509_free(leaf);
  EVP_PKEY_free(key);
  BIO_free(cb);
  BIO_free(kb);
  return ok;
}

static int load_ca(SSL_CTX *sc, const dg_ctx_options *o, dg_status *status, char *err, size_t errlen) {
  if (o->ca_pem == NULL) {
    if (SSL_CTX_set_default_verify_paths(sc) != 1) {
      *status = DG_ERR_INTERNAL;
      set_err(err, errlen, "cannot load the system's default CA paths (%s)", last_reason("unknown"));
      return 0;
    }
    return 1;
  }
  if (o->ca_len > INT_MAX) {
    *status = DG_ERR_RANGE;
    set_err(err, errlen, "%s", "caPem must be under 2 GiB");
    return 0;
  }
  BIO *b = BIO_new_mem_buf(o->ca_pem, (int)o->ca_len);
  X509_STORE *store = SSL_CTX_get_cert_store(sc);
  if (b == NULL || store == NULL) {
    BIO_free(b);
    *status = DG_ERR_INTERNAL;
    set_err(err, errlen, "%s", "out of memory");
    return 0;
  }
  int n = 0, ok = 1;
  for (;;) {
    X509 *x = PEM_read_bio_X509(b, NULL, no_password, NULL);
    if (x == NULL) break;
    if (X509_STORE_add_cert(store, x) != 1) ok = 0;
    X509_free(x);
    if (!ok) break;
    n++;
  }
  BIO_free(b);
  ERR_clear_error();
  if (!ok || n == 0) {
    *status = DG_ERR_RANGE;
    set_err(err, errlen, "%s", ok ? "caPem holds no PEM certificate" : "caPem: OpenSSL refused a certificate");
    return 0;
  }
  return 1;
}

static int valid_version(int v) { return v == DG_TLS12 || v == DG_TLS13; }

/* Checks ALPN wire format: entries of 1..255 bytes, nothing left over. */
static int valid_alpn_wire(const unsigned char *w, size_t len) {
  if (w == NULL || len == 0 || len > 65535) return 0;
  for (size_t i = 0; i < len; i += 1 + (size_t)w[i])
    if (w[i] == 0 || i + 1 + (size_t)w[i] > len) return 0;
  return 1;
}

dg_ctx *dg_ctx_new(const dg_ctx_options *o, dg_status *status, char *err, size_t errlen) {
  dg_status st_local;
  if (status == NULL) status = &st_local;
  *status = DG_ERR_RANGE;
  if (err != NULL && errlen > 0) err[0] = 0;
  ERR_clear_error();
  if (o->role != DG_ROLE_SERVER && o->role != DG_ROLE_CLIENT) {
    set_err(err, errlen, "%s", "role must be 'server' or 'client'");
    return NULL;
  }
  if (o->extension_type > 65535) {
    set_err(err, errlen, "%s", "extensionType must be an integer 0..65535");
    return NULL;
  }
  if (!valid_version(o->min_version) || !valid_version(o->max_version) || o->min_version > o->max_version) {
    set_err(err, errlen, "%s", "minVersion and maxVersion must be 'TLSv1.2' or 'TLSv1.3', minVersion <= maxVersion");
    return NULL;
  }
  if (o->alpn_wire != NULL && !valid_alpn_wire(o->alpn_wire, o->alpn_wire_len)) {
    set_err(err, errlen, "%s", "alpn entries must be 1..255 bytes");
    return NULL;
  }
  int server = o->role == DG_ROLE_SERVER;
  if (server && (o->cert_pem == NULL || o->key_pem == NULL)) {
    set_err(err, errlen, "%s", "certPem and keyPem are required for a server context");
    return NULL;
  }
  if ((o->cert_pem == NULL) != (o->key_pem == NULL)) {
    set_err(err, errlen, "%s", "certPem and keyPem must be given together");
    return NULL;
  }
  if (o->max_cert_list < 0) {
    set_err(err, errlen, "%s", "maxCertListBytes must be a positive integer");
    return NULL;
  }

  dg_ctx *ctx = calloc(1, sizeof *ctx);
  if (ctx == NULL) {
    *status = DG_ERR_INTERNAL;
    set_err(err, errlen, "%s", "out of memory");
    return NULL;
  }
  ctx->role = o->role;
  ctx->ext_type = o->extension_type;
  ctx->min_version = o->min_version;
  ctx->max_version = o->max_version;
  ctx->refs = 1;
  SSL_CTX *sc = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
  ctx->ssl_ctx = sc;
  if (sc == NULL) {
    *status = DG_ERR_INTERNAL;
    set_err(err, errlen, "SSL_CTX_new failed (%s)", last_reason("unknown"));
    goto fail;
  }

  /* No resumption (every connection is authenticated afresh), no renegotiation, no compression. */
  SSL_CTX_set_options(sc, SSL_OP_NO_TICKET | SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
  SSL_CTX_set_num_tickets(sc, 0);
  SSL_CTX_set_session_cache_mode(sc, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_info_callback(sc, info_cb);
  if (SSL_CTX_set_min_proto_version(sc, o->min_version) != 1 ||
      SSL_CTX_set_max_proto_version(sc, o->max_version) != 1) {
    set_err(err, errlen, "minVersion/maxVersion: OpenSSL refused them (%s)", last_reason("unknown"));
    goto fail;
  }
  if (o->sigalgs != NULL && SSL_CTX_set1_sigalgs_list(sc, o->sigalgs) != 1) {
    set_err(err, errlen, "sigalgs: OpenSSL refused \"%s\"", o->sigalgs);
    goto fail;
  }
  if (o->ciphers != NULL && SSL_CTX_set_cipher_list(sc, o->ciphers) != 1) {
    set_err(err, errlen, "ciphers: OpenSSL refused \"%s\"", o->ciphers);
    goto fail;
  }
  if (o->ciphersuites != NULL && SSL_CTX_set_ciphersuites(sc, o->ciphersuites) != 1) {
    set_err(err, errlen, "ciphersuites: OpenSSL refused \"%s\"", o->ciphersuites);
    goto fail;
  }
  if (o->groups != NULL && SSL_CTX_set1_groups_list(sc, o->groups) != 1) {
    set_err(err, errlen, "groups: OpenSSL refused \"%s\"", o->groups);
    goto fail;
  }
  if (o->max_cert_list > 0) SSL_CTX_set_max_cert_list(sc, o->max_cert_list);
  if (o->cert_pem != NULL && !load_cert_and_key(sc, o, status, err, errlen)) goto fail;
  *status = DG_ERR_RANGE;

  if (o->alpn_wire != NULL) {
    ctx->alpn = malloc(o->alpn_wire_len);
    if (ctx->alpn == NULL) {
      *status = DG_ERR_INTERNAL;
      set_err(err, errlen, "%s", "out of memory");
      goto fail;
    }
    memcpy(ctx->alpn, o->alpn_wire, o->alpn_wire_len);
    ctx->alpn_len = o->alpn_wire_len;
    if (server) {
      SSL_CTX_set_alpn_select_cb(sc, alpn_select, ctx);
    } else if (SSL_CTX_set_alpn_protos(sc, ctx->alpn, (unsigned int)ctx->alpn_len) != 0) { /* 0 is success here */
      *status = DG_ERR_INTERNAL;
      set_err(err, errlen, "alpn: OpenSSL refused the list (%s)", last_reason("unknown"));
      goto fail;
    }
  }

  int added;
  if (server) {
    /* Ask for the certificate (requireCertificate decides per connection whether one is mandatory);
     * chain verification is replaced by verify_cb. */
    SSL_CTX_set_verify(sc, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_cert_verify_callback(sc, verify_cb, ctx);
    added = SSL_CTX_add_custom_ext(sc, o->extension_type,
                                   SSL_EXT_CLIENT_HELLO | SSL_EXT_TLS1_3_CERTIFICATE_REQUEST |
                                       SSL_EXT_TLS1_3_CERTIFICATE,
                                   server_ext_add,
                                   NULL, NULL, server_ext_parse, NULL);
  } else {
    SSL_CTX_set_verify(sc, o->verify_peer ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
    if (o->verify_peer && !load_ca(sc, o, status, err, errlen)) goto fail;
    /* One registration covers both forms; client_ext_add picks per connection.
     * The ServerHello/EncryptedExtensions contexts accept a server's echo of the ClientHello form. */
    added = SSL_CTX_add_custom_ext(sc, o->extension_type,
                                   SSL_EXT_CLIENT_HELLO | SSL_EXT_TLS1_2_SERVER_HELLO |
                                       SSL_EXT_TLS1_3_ENCRYPTED_EXTENSIONS | SSL_EXT_TLS1_3_CERTIFICATE_REQUEST |
                                       SSL_EXT_TLS1_3_CERTIFICATE,
                                   client_ext_add, NULL, NULL, client_ext_parse, NULL);
  }
  if (added != 1) {
    *status = DG_ERR_RANGE;
    char msg[96];
    snprintf(msg, sizeof msg, "%u", o->extension_type);
    set_err(err, errlen, "extensionType %s is an extension OpenSSL handles itself; choose another", msg);
    goto fail;
  }
  ERR_clear_error();
  *status = DG_OK;
  return ctx;

fail:
  ERR_clear_error();
  SSL_CTX_free(ctx->ssl_ctx);
  free(ctx->alpn);
  free(ctx);
  return NULL;
}

dg_role dg_ctx_role(const dg_ctx *ctx) { return ctx->role; }

void dg_ctx_ref(dg_ctx *ctx) { __atomic_add_fetch(&ctx->refs, 1, __ATOMIC_RELAXED); }

void dg_ctx_unref(dg_ctx *ctx) {
  if (ctx == NULL) return;
  if (__atomic_sub_fetch(&ctx->refs, 1, __ATOMIC_ACQ_REL) != 0) return;
  SSL_CTX_free(ctx->ssl_ctx);
  free(ctx->alpn);
  free(ctx);
  ERR_clear_error();
}

/* ------------------------------------------------------------------------ */
/* Connections */

dg_conn *dg_conn_new(dg_ctx *ctx, const dg_conn_options *o, dg_status *status, char *err, size_t errlen) {
  dg_status st_local;
  if (status == NULL) status = &st_local;
  *status = DG_ERR_RANGE;
  if (err != NULL && errlen > 0) err[0] = 0;
  ERR_clear_error();
  int server = ctx->role == DG_ROLE_SERVER;
  if (server && o->min_version != 0 && !valid_version(o->min_version)) {
    set_err(err, errlen, "%s", "minVersion must be 'TLSv1.2' or 'TLSv1.3'");
    return NULL;
  }
  if (server && o->min_version > ctx->max_version) {
    set_err(err, errlen, "%s", "minVersion is above the context's maxVersion");
    return NULL;
  }
  if (!server && o->client_name != NULL && (o->client_name_len < 1 || o->client_name_len > 255)) {
    set_err(err, errlen, "%s", "clientName must be 1..255 bytes");
    return NULL;
  }
  if (!server && o->client_name_form != DG_FORM_CERTIFICATE && o->client_name_form != DG_FORM_CLIENTHELLO) {
    set_err(err, errlen, "%s", "clientNameForm must be 'certificate' or 'clienthello'");
    return NULL;
  }

  *status = DG_ERR_INTERNAL;
  dg_conn *c = calloc(1, sizeof *c);
  if (c == NULL) {
    set_err(err, errlen, "%s", "out of memory");
    return NULL;
  }
  c->alert_sent = c->alert_received = -1;
  c->ssl = SSL_new(ctx->ssl_ctx);
  c->rbio = BIO_new(BIO_s_mem());
  c->wbio = BIO_new(BIO_s_mem());
  if (c->ssl == NULL || c->rbio == NULL || c->wbio == NULL) {
    BIO_free(c->rbio);
    BIO_free(c->wbio);
    SSL_free(c->ssl);
    free(c);
    ERR_clear_error();
    set_err(err, errlen, "%s", "out of memory");
    return NULL;
  }
  /* An empty memory BIO means "no more yet", never end of file. */
  BIO_set_mem_eof_return(c->rbio, -1);
  BIO_set_mem_eof_return(c->wbio, -1);
  SSL_set_bio(c->ssl, c->rbio, c->wbio); /* the SSL owns both from here */
  SSL_set_app_data(c->ssl, c);
  SSL_set_mode(c->ssl, SSL_MODE_RELEASE_BUFFERS); /* no 16 KiB record buffers while idle */
  dg_ctx_ref(ctx);
  c->ctx = ctx;

  int ok = 1;
  if (server) {
    SSL_set_accept_state(c->ssl);
    c->pause_for_verify = o->pause_for_verify != 0;
    c->omit_name_request = o->omit_name_request != 0;
    SSL_set_verify(c->ssl, SSL_VERIFY_PEER | (o->require_certificate ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0), NULL);
    if (o->min_version > ctx->min_version && SSL_set_min_proto_version(c->ssl, o->min_version) != 1) ok = 0;
  } else {
    SSL_set_connect_state(c->ssl);
    if (o->server_name != NULL && SSL_set_tlsext_host_name(c->ssl, o->server_name) != 1) {
      *status = DG_ERR_RANGE;
      set_err(err, errlen, "%s", "serverName: OpenSSL refused it");
      ok = 0;
    }
    if (ok && o->verify_host != NULL) {
      SSL_set_hostflags(c->ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
      if (SSL_set1_host(c->ssl, o->verify_host) != 1) {
        *status = DG_ERR_RANGE;
        set_err(err, errlen, "%s", "verifyHost: OpenSSL refused it");
        ok = 0;
      }
    }
    if (o->client_name != NULL) {
      c->client_ext[0] = (unsigned char)o->client_name_len;
      memcpy(c->client_ext + 1, o->client_name, o->client_name_len);
      c->client_ext_len = 1 + o->client_name_len;
    }
    c->form = o->client_name_form;
  }
  if (!ok) {
    if (err != NULL && errlen > 0 && err[0] == 0) set_err(err, errlen, "%s", "OpenSSL refused the connection options");
    dg_conn_free(c);
    return NULL;
  }
  ERR_clear_error();
  *status = DG_OK;
  return c;
}

/* Records a fatal error with OpenSSL's reason. */
static void fail_conn(dg_conn *c, const char *fallback) {
  c->state = DG_ST_ERROR;
  snprintf(c->error, sizeof c->error, "%s", last_reason(fallback));
}

static int plaintext_reserve(dg_conn *c, size_t more) {
  if (c->pt_cap - c->pt_len >= more) return 1;
  if (c->pt_len > SIZE_MAX / 2 - more) return 0;
  size_t cap = c->pt_cap != 0 ? c->pt_cap : READ_STEP;
  while (cap - c->pt_len < more) cap *= 2;
  unsigned char *p = realloc(c->pt, cap);
  if (p == NULL) return 0;
  c->pt = p;
  c->pt_cap = cap;
  return 1;
}

/* Server: enter the ASYNC job only once our first flight is out, i.e. while
 * waiting for the client's Certificate, so that the ClientHello, the key
 * exchange and our signature never run on the job's small stack (32 KiB, no
 * guard page). TLS 1.3: our Finished has been written (not yet after a
 * HelloRetryRequest). TLS 1.2: our flight (ServerHello to ServerHelloDone) is
 * waiting in the out buffer. Told by functions, not by SSL_get_state(): the
 * values of OSSL_HANDSHAKE_STATE moved between OpenSSL 3.0 and 3.5, so an
 * addon built on Node 20's headers read the wrong states on Node 22+ and
 * never paused (it then refused every client: fail-closed, but useless). */
static void arm_async(dg_conn *c) {
  if (c->ctx->role != DG_ROLE_SERVER || !c->pause_for_verify || c->async_armed) return;
  int version = SSL_version(c->ssl);
  if (version == TLS1_3_VERSION) {
    unsigned char finished[EVP_MAX_MD_SIZE];
    if (SSL_get_finished(c->ssl, finished, sizeof finished) == 0) return;
  } else if (version == TLS1_2_VERSION) {
    if (BIO_ctrl_pending(c->wbio) == 0) return;
  } else {
    return; /* not negotiated yet */
  }
  SSL_set_mode(c->ssl, SSL_MODE_ASYNC);
  c->async_armed = 1;
  tl_async_touched = 1; /* the thread's job pool exists from the first job on */
}

static void disarm_async(dg_conn *c) {
  if (!c->async_armed) return;
  SSL_clear_mode(c->ssl, SSL_MODE_ASYNC);
  c->async_armed = 0;
}

static void read_plaintext(dg_conn *c) {
  for (;;) {
    if (!plaintext_reserve(c, READ_STEP)) {
      c->state = DG_ST_ERROR;
      snprintf(c->error, sizeof c->error, "out of memory");
      return;
    }
    size_t n = 0;
    int r = SSL_read_ex(c->ssl, c->pt + c->pt_len, READ_STEP, &n);
    if (r == 1) {
      c->pt_len += n;
      continue;
    }
    int e = SSL_get_error(c->ssl, 0);
    if (e == SSL_ERROR_WANT_READ) return;
    if (e == SSL_ERROR_ZERO_RETURN) {
      c->state = DG_ST_CLOSED;
      return;
    }
    fail_conn(c, "read failed");
    return;
  }
}

static void advance(dg_conn *c) {
  if (c->state == DG_ST_HANDSHAKE || c->state == DG_ST_BUSY ||
      (c->state == DG_ST_VERIFY && c->decision != DEC_NONE)) {
    int r = SSL_do_handshake(c->ssl);
    if (r == 1) {
      disarm_async(c); /* application data never runs in a job */
      c->state = DG_ST_OPEN;
      c->established_pending = 1;
    } else {
      int e = SSL_get_error(c->ssl, r);
      switch (e) {
        case SSL_ERROR_WANT_READ:
        case SSL_ERROR_WANT_WRITE: /* a memory BIO never refuses a write; listed for completeness */
          c->state = DG_ST_HANDSHAKE;
          arm_async(c);
          break;
        case SSL_ERROR_WANT_ASYNC:
          if (c->paused) {
            c->state = DG_ST_VERIFY;
          } else {
            c->state = DG_ST_ERROR;
            snprintf(c->error, sizeof c->error, "handshake paused outside certificate verification");
          }
          break;
        case SSL_ERROR_WANT_ASYNC_JOB:
          /* The thread's job pool is at its cap: the input stays buffered; feed() again later. */
          c->state = DG_ST_BUSY;
          break;
        case SSL_ERROR_ZERO_RETURN:
          c->state = DG_ST_ERROR;
          snprintf(c->error, sizeof c->error, "peer closed during the handshake");
          break;
        default:
          fail_conn(c, "handshake failed");
          break;
      }
    }
  }
  if (c->state == DG_ST_OPEN) read_plaintext(c);
}

int dg_conn_feed(dg_conn *c, const unsigned char *data, size_t len) {
  ERR_clear_error();
  int ok = 1;
  if (c->state == DG_ST_ERROR || c->state == DG_ST_CLOSED) {
    ERR_clear_error();
    return 1; /* nothing more is valid from the peer: drop it */
  }
  while (len > 0) {
    int chunk = len > INT_MAX ? INT_MAX : (int)len;
    int w = BIO_write(c->rbio, data, chunk);
    if (w != chunk) {
      c->state = DG_ST_ERROR;
      snprintf(c->error, sizeof c->error, "out of memory");
      ok = 0;
      break;
    }
    data += chunk;
    len -= (size_t)chunk;
  }
  if (ok && c->state != DG_ST_VERIFY) advance(c);
  ERR_clear_error();
  return ok;
}

int dg_conn_decide(dg_conn *c, int accept) {
  ERR_clear_error();
  if (c->state != DG_ST_VERIFY || c->decision != DEC_NONE) return 0;
  c->decision = accept ? DEC_ACCEPT : DEC_REFUSE;
  advance(c);
  ERR_clear_error();
  return 1;
}

int dg_conn_write(dg_conn *c, const unsigned char *data, size_t len) {
  ERR_clear_error();
  if (!(c->state == DG_ST_OPEN || (c->state == DG_ST_CLOSED && !c->sent_shutdown)) || c->sent_shutdown) return 0;
  size_t off = 0;
  while (off < len) {
    size_t w = 0;
    if (SSL_write_ex(c->ssl, data + off, len - off, &w) != 1) {
      fail_conn(c, "write failed");
      break;
    }
    off += w;
  }
  ERR_clear_error();
  return 1;
}

void dg_conn_shutdown(dg_conn *c) {
  ERR_clear_error();
  if ((c->state == DG_ST_OPEN || c->state == DG_ST_CLOSED) && !c->sent_shutdown) {
    c->sent_shutdown = 1;
    (void)SSL_shutdown(c->ssl); /* writes close_notify into the out buffer */
  }
  ERR_clear_error();
}

void dg_conn_free(dg_conn *c) {
  if (c == NULL) return;
  ERR_clear_error();
  if (c->ssl != NULL) {
    if (c->paused) {
      /* Let the parked job run to its end, refusing; else its fibre and
       * X509_STORE_CTX stay behind. Whatever it writes (the alert) is dropped. */
      c->decision = DEC_REFUSE;
      (void)SSL_do_handshake(c->ssl);
      c->paused = 0;
    }
    SSL_free(c->ssl); /* frees both BIOs */
  }
  free_chain(c);
  free(c->pt);
  dg_ctx_unref(c->ctx);
  free(c);
  ERR_clear_error();
}

dg_state dg_conn_state(const dg_conn *c) { return c->state; }

size_t dg_conn_out_pending(dg_conn *c) { return BIO_ctrl_pending(c->wbio); }

size_t dg_conn_in_pending(dg_conn *c) { return BIO_ctrl_pending(c->rbio); }

size_t dg_conn_out_read(dg_conn *c, unsigned char *buf, size_t cap) {
  size_t done = 0;
  while (done < cap) {
    size_t n = 0;
    if (BIO_read_ex(c->wbio, buf + done, cap - done, &n) != 1 || n == 0) break;
    done += n;
  }
  ERR_clear_error();
  return done;
}

const unsigned char *dg_conn_plaintext(const dg_conn *c, size_t *len) {
  *len = c->pt_len;
  return c->pt_len > 0 ? c->pt : NULL;
}

void dg_conn_clear_plaintext(dg_conn *c) {
  /* Freed, not kept: an idle connection holds no plaintext buffer. */
  free(c->pt);
  c->pt = NULL;
  c->pt_len = c->pt_cap = 0;
}

int dg_conn_take_verify_report(dg_conn *c) {
  if (!c->verify_seen || c->verify_reported) return 0;
  if (c->state != DG_ST_VERIFY && c->state != DG_ST_OPEN) return 0;
  c->verify_reported = 1;
  return 1;
}

const unsigned char *dg_conn_client_name(const dg_conn *c, size_t *len) {
  *len = c->name_len;
  return c->name_len > 0 ? c->name : NULL;
}

size_t dg_conn_chain_count(const dg_conn *c) { return c->chain_n; }

const unsigned char *dg_conn_chain_der(const dg_conn *c, size_t i, size_t *len) {
  if (i >= c->chain_n) {
    *len = 0;
    return NULL;
  }
  *len = c->chain_len[i];
  return c->chain[i];
}

int dg_conn_take_established_report(dg_conn *c) {
  if (!c->established_pending) return 0;
  c->established_pending = 0;
  return 1;
}

const char *dg_conn_protocol(const dg_conn *c) {
  return SSL_version(c->ssl) == TLS1_3_VERSION ? "TLSv1.3" : "TLSv1.2";
}

const unsigned char *dg_conn_alpn(const dg_conn *c, size_t *len) {
  const unsigned char *p = NULL;
  unsigned int n = 0;
  SSL_get0_alpn_selected(c->ssl, &p, &n);
  *len = n;
  return n > 0 ? p : NULL;
}

const char *dg_conn_cipher(const dg_conn *c) {
  const SSL_CIPHER *ciph = SSL_get_current_cipher(c->ssl);
  return ciph != NULL ? SSL_CIPHER_get_name(ciph) : "";
}

int dg_conn_alert_sent(const dg_conn *c) { return c->alert_sent; }
int dg_conn_alert_received(const dg_conn *c) { return c->alert_received; }
const char *dg_conn_error(const dg_conn *c) { return c->error; }

/*
 * dancegate native TLS engine: the OpenSSL-only core.
 *
 * No N-API in here, so the same code is unit-tested and fuzzed in plain C
 * (test/, fuzz/) and wrapped for JavaScript by napi.c. All I/O goes through
 * memory BIOs: the caller feeds ciphertext from the peer and sends whatever
 * the engine leaves in its out buffer.
 *
 * Threading: a context and its connections belong to one thread at a time
 * (a JavaScript thread). Paused handshakes live in that thread's OpenSSL
 * ASYNC job pool, so a paused connection must be resumed (decide) or freed
 * on the thread that paused it.
 */
#ifndef DANCEGATE_TLS_ENGINE_H
#define DANCEGATE_TLS_ENGINE_H

#include <stddef.h>
#include <stdint.h>

typedef struct dg_ctx dg_ctx;
typedef struct dg_conn dg_conn;

typedef enum { DG_ROLE_SERVER = 0, DG_ROLE_CLIENT = 1 } dg_role;

/* Protocol versions, as OpenSSL numbers them (TLS1_2_VERSION, TLS1_3_VERSION). */
#define DG_TLS12 0x0303
#define DG_TLS13 0x0304

typedef enum {
  DG_ST_HANDSHAKE = 0, /* needs more bytes from the peer */
  DG_ST_VERIFY,        /* server: paused in certificate verification; call dg_conn_decide() */
  DG_ST_BUSY,          /* server: the thread's paused-handshake cap is reached; nothing consumed; feed again later */
  DG_ST_OPEN,          /* handshake done, application data flows */
  DG_ST_CLOSED,        /* close_notify received */
  DG_ST_ERROR          /* fatal; see dg_conn_error() and the alerts */
} dg_state;

typedef enum { DG_FORM_CERTIFICATE = 0, DG_FORM_CLIENTHELLO = 1 } dg_name_form;

/* Result of an option check: 0 ok; otherwise the message names the option. */
typedef enum { DG_OK = 0, DG_ERR_RANGE = 1, DG_ERR_INTERNAL = 2 } dg_status;

typedef struct {
  dg_role role;
  const char *cert_pem; /* leaf then chain; required for a server */
  size_t cert_len;
  const char *key_pem;
  size_t key_len;
  unsigned int extension_type; /* 0..65535 */
  int min_version;             /* DG_TLS12 / DG_TLS13 */
  int max_version;
  /* ALPN in wire format (length-prefixed entries); NULL: no ALPN. */
  const unsigned char *alpn_wire;
  size_t alpn_wire_len;
  const char *sigalgs;      /* NULL: OpenSSL's default */
  const char *ciphers;      /* TLS 1.2 */
  const char *ciphersuites; /* TLS 1.3 */
  const char *groups;
  long max_cert_list; /* 0: OpenSSL's default */
  const char *ca_pem; /* client: NULL = the system's default verify paths */
  size_t ca_len;
  int verify_peer; /* client: verify the server's certificate */
} dg_ctx_options;

typedef struct {
  int require_certificate; /* server */
  int min_version;         /* server: 0 = the context's; else raises it */
  int pause_for_verify;    /* server */
  int omit_name_request;   /* server: do not send dane_clientid in the TLS 1.3 CertificateRequest (0: send it, empty) */
  const char *server_name; /* client: SNI, NUL-terminated; NULL = none */
  const char *verify_host; /* client: SSL_set1_host; NULL = no name check */
  const unsigned char *client_name; /* client: the name sent in dane_clientid; NULL = none */
  size_t client_name_len;           /* 1..255 */
  dg_name_form client_name_form;
} dg_conn_options;

/* OpenSSL_version(OPENSSL_VERSION) of the library linked at run time. */
const char *dg_openssl_version(void);

/* ASYNC_init_thread(max, 0), once per thread and only before this thread's
 * first paused handshake. Returns 1 when applied, 0 when too late or already set. */
int dg_limit_paused(size_t max);

/* New context with one reference. On failure returns NULL, *status says
 * whether the options were at fault (DG_ERR_RANGE) and err holds a message
 * naming the option. */
dg_ctx *dg_ctx_new(const dg_ctx_options *o, dg_status *status, char *err, size_t errlen);
void dg_ctx_ref(dg_ctx *ctx);
/* Drops a reference; the SSL_CTX is freed with the last one (connections hold one each). */
void dg_ctx_unref(dg_ctx *ctx);
dg_role dg_ctx_role(const dg_ctx *ctx);

/* New connection holding a reference on ctx. NULL on failure (message in err). */
dg_conn *dg_conn_new(dg_ctx *ctx, const dg_conn_options *o, dg_status *status, char *err, size_t errlen);
/* Frees the connection in any state; a paused handshake is finished first (refused, output discarded). */
void dg_conn_free(dg_conn *c);

/* Append ciphertext from the peer (may be empty) and advance: handshake, or
 * read all plaintext available. In 'verify', 'error' and 'closed' the bytes are
 * buffered (verify) or dropped (error/closed) and nothing advances. Returns 0
 * on allocation failure (the connection is then in 'error'). */
int dg_conn_feed(dg_conn *c, const unsigned char *data, size_t len);
/* Only in 'verify': accept (1) or refuse (0, handshake_failure). Returns 0 if not paused. */
int dg_conn_decide(dg_conn *c, int accept);
/* Only in 'open' (or 'closed' before our own close_notify): encrypt. Returns 0 if not allowed now. */
int dg_conn_write(dg_conn *c, const unsigned char *data, size_t len);
/* Send close_notify once the handshake is done; otherwise nothing. */
void dg_conn_shutdown(dg_conn *c);

dg_state dg_conn_state(const dg_conn *c);
const char *dg_state_name(dg_state s);

/* Ciphertext to send to the peer. */
/* Bytes fed and not yet processed (e.g. what followed the client's Certificate message when it paused). */
size_t dg_conn_in_pending(dg_conn *c);
size_t dg_conn_out_pending(dg_conn *c);
/* Copies up to cap bytes of it out (and removes them); returns the count. */
size_t dg_conn_out_read(dg_conn *c, unsigned char *buf, size_t cap);

/* Plaintext decrypted since the last dg_conn_clear_plaintext(). */
const unsigned char *dg_conn_plaintext(const dg_conn *c, size_t *len);
void dg_conn_clear_plaintext(dg_conn *c);

/* Verify info: set once the client's certificate was seen (server). Returns 1
 * exactly once (the result that enters 'verify', or 'open' when not paused). */
int dg_conn_take_verify_report(dg_conn *c);
/* The ClientName from the end-entity Certificate entry; NULL when absent or empty. */
const unsigned char *dg_conn_client_name(const dg_conn *c, size_t *len);
size_t dg_conn_chain_count(const dg_conn *c);
const unsigned char *dg_conn_chain_der(const dg_conn *c, size_t i, size_t *len);

/* Established info: returns 1 exactly once, on the call that completed the handshake. */
int dg_conn_take_established_report(dg_conn *c);
/* "TLSv1.2" / "TLSv1.3" (the negotiated or, before that, the current version). */
const char *dg_conn_protocol(const dg_conn *c);
/* The ALPN protocol chosen, or NULL. */
const unsigned char *dg_conn_alpn(const dg_conn *c, size_t *len);
const char *dg_conn_cipher(const dg_conn *c);

/* Last alert description sent / received (close_notify excluded), -1 none. */
int dg_conn_alert_sent(const dg_conn *c);
int dg_conn_alert_received(const dg_conn *c);
/* State 'error': what went wrong. */
const char *dg_conn_error(const dg_conn *c);

/*
 * The dane_clientid content in a Certificate entry: opaque ClientName<0..255>,
 * one length byte then exactly that many bytes. Pure; exposed for the fuzzer.
 * Returns 1 and sets *name and *name_len (len 0 = absent) when well-formed, 0 when not.
 */
int dg_parse_client_name(const unsigned char *in, size_t inlen, const unsigned char **name, size_t *name_len);

#endif

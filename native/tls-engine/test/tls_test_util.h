/* Test helpers: a test PKI and an in-memory OpenSSL client (system libssl,
 * memory BIOs) to drive an engine server connection. */
#ifndef DG_TLS_TEST_UTIL_H
#define DG_TLS_TEST_UTIL_H

#include <openssl/ssl.h>
#include <stddef.h>

#include "engine.h"

enum { TC_FORM_NONE = 0, TC_FORM_CERTIFICATE = 1, TC_FORM_CLIENTHELLO = 2 };

typedef struct {
  int min_version, max_version; /* 0: OpenSSL's defaults */
  const char *cert_file, *key_file; /* NULL: no client certificate */
  unsigned int ext_type;
  const unsigned char *ext; /* raw dane_clientid body to send */
  size_t ext_len;
  int form;
  const unsigned char *alpn; /* wire format; NULL: none */
  size_t alpn_len;
} tclient_opts;

typedef struct {
  SSL_CTX *ctx;
  SSL *ssl;
  BIO *rbio, *wbio;
  unsigned char ext[300];
  size_t ext_len;
  int form;
  int handshake_done;   /* SSL_do_handshake returned 1 */
  int handshake_failed; /* SSL_do_handshake failed fatally */
  int read_failed;      /* SSL_read failed fatally */
  int closed;           /* close_notify received */
  int alert_received, alert_sent;
  int tickets;          /* NewSessionTicket messages seen */
  int asked_for_name;   /* the server's CertificateRequest carried dane_clientid */
  unsigned char app[65536];
  size_t app_len;
} tclient;

/* Generates the PKI into a fresh temporary directory; returns its path (static buffer). */
const char *pki_dir(void);
/* pki_dir()/name (static rotating buffers). */
const char *pki_path(const char *name);
/* Reads a whole file (malloc'd, NUL-terminated). Aborts on failure. */
char *read_file(const char *path, size_t *len);
void pki_cleanup(void);

tclient *tc_new(const tclient_opts *o);
void tc_free(tclient *c);
/* Advances the client: handshake, or read application data. */
void tc_step(tclient *c);
/* Encrypts application data into the client's out BIO. Returns 1 on success. */
int tc_write(tclient *c, const char *data, size_t len);

/* Moves bytes both ways until nothing moves; *saw_open set if the server was ever 'open'. */
void pump(dg_conn *s, tclient *c, int *saw_open);
/* Moves the server's pending out bytes to the client. Returns the count. */
size_t move_server_to_client(dg_conn *s, tclient *c);
/* Moves the client's pending out bytes into the server (feed). Returns the count. */
size_t move_client_to_server(tclient *c, dg_conn *s);
/* Moves bytes between two engine connections until nothing moves. */
void pump_engines(dg_conn *server, dg_conn *client);

/* A server context from the test PKI; pass NULL alpn for none. */
dg_ctx *server_ctx(int min_version, const unsigned char *alpn, size_t alpn_len);
/* The same with a key-exchange group list (NULL: OpenSSL's default). */
dg_ctx *server_ctx_groups(int min_version, const unsigned char *alpn, size_t alpn_len, const char *groups);

#endif

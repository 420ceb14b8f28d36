#include "tls_test_util.h"

#include <openssl/err.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef TEST_DIR
#error "TEST_DIR must name the test/ directory"
#endif

static char dir[256];

const char *pki_dir(void) {
  if (dir[0] != 0) return dir;
  snprintf(dir, sizeof dir, "/tmp/dg-engine-test-XXXXXX");
  if (mkdtemp(dir) == NULL) {
    perror("mkdtemp");
    exit(2);
  }
  char cmd[600];
  snprintf(cmd, sizeof cmd, "'%s/gen-pki.sh' '%s'", TEST_DIR, dir);
  if (system(cmd) != 0) {
    fprintf(stderr, "gen-pki.sh failed (is openssl installed?)\n");
    exit(2);
  }
  return dir;
}

const char *pki_path(const char *name) {
  static char bufs[8][320];
  static int next;
  char *b = bufs[next++ % 8];
  snprintf(b, sizeof bufs[0], "%s/%s", pki_dir(), name);
  return b;
}

void pki_cleanup(void) {
  if (dir[0] == 0) return;
  char cmd[400];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd) != 0) fprintf(stderr, "warning: cannot remove %s\n", dir);
  dir[0] = 0;
}

char *read_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) {
    perror(path);
    exit(2);
  }
  char *buf = malloc(1 << 20);
  if (buf == NULL) exit(2);
  size_t n = fread(buf, 1, (1 << 20) - 1, f);
  fclose(f);
  buf[n] = 0;
  if (len != NULL) *len = n;
  return buf;
}

static int tc_index = -1;

static int tc_ext_add(SSL *s, unsigned int ext_type, unsigned int context, const unsigned char **out, size_t *outlen,
                      X509 *x, size_t chainidx, int *al, void *arg) {
  (void)ext_type, (void)x, (void)al, (void)arg;
  tclient *c = SSL_get_ex_data(s, tc_index);
  int send = (context == SSL_EXT_CLIENT_HELLO && c->form == TC_FORM_CLIENTHELLO) ||
             (context == SSL_EXT_TLS1_3_CERTIFICATE && c->form == TC_FORM_CERTIFICATE && chainidx == 0);
  if (!send) return 0;
  *out = c->ext;
  *outlen = c->ext_len;
  return 1;
}

static int tc_ext_parse(SSL *s, unsigned int ext_type, unsigned int context, const unsigned char *in, size_t inlen,
                        X509 *x, size_t chainidx, int *al, void *arg) {
  (void)ext_type, (void)in, (void)inlen, (void)x, (void)chainidx, (void)al, (void)arg;
  tclient *c = SSL_get_ex_data(s, tc_index);
  if (context == SSL_EXT_TLS1_3_CERTIFICATE_REQUEST) c->asked_for_name = 1;
  return 1;
}

static void tc_info(const SSL *s, int where, int ret) {
  if ((where & SSL_CB_ALERT) == 0) return;
  tclient *c = SSL_get_ex_data(s, tc_index);
  if ((ret & 0xff) == 0) return;
  if (where & SSL_CB_WRITE)
    c->alert_sent = ret & 0xff;
  else
    c->alert_received = ret & 0xff;
}

static int tc_new_session(SSL *s, SSL_SESSION *sess) {
  (void)sess;
  tclient *c = SSL_get_ex_data(s, tc_index);
  c->tickets++;
  return 0; /* not kept */
}

tclient *tc_new(const tclient_opts *o) {
  if (tc_index < 0) tc_index = SSL_get_ex_new_index(0, "tclient", NULL, NULL, NULL);
  tclient *c = calloc(1, sizeof *c);
  if (c == NULL) exit(2);
  c->alert_received = c->alert_sent = -1;
  c->ctx = SSL_CTX_new(TLS_client_method());
  if (o->min_version) SSL_CTX_set_min_proto_version(c->ctx, o->min_version);
  if (o->max_version) SSL_CTX_set_max_proto_version(c->ctx, o->max_version);
  SSL_CTX_set_verify(c->ctx, SSL_VERIFY_NONE, NULL);
  SSL_CTX_set_session_cache_mode(c->ctx, SSL_SESS_CACHE_CLIENT);
  SSL_CTX_sess_set_new_cb(c->ctx, tc_new_session);
  SSL_CTX_set_info_callback(c->ctx, tc_info);
  if (o->cert_file != NULL) {
    if (SSL_CTX_use_certificate_chain_file(c->ctx, o->cert_file) != 1 ||
        SSL_CTX_use_PrivateKey_file(c->ctx, o->key_file, SSL_FILETYPE_PEM) != 1) {
      fprintf(stderr, "tc_new: cannot load client certificate\n");
      exit(2);
    }
  }
  if (o->alpn != NULL) SSL_CTX_set_alpn_protos(c->ctx, o->alpn, (unsigned int)o->alpn_len);
  if (o->form != TC_FORM_NONE) {
    SSL_CTX_add_custom_ext(c->ctx, o->ext_type,
                           SSL_EXT_CLIENT_HELLO | SSL_EXT_TLS1_2_SERVER_HELLO | SSL_EXT_TLS1_3_ENCRYPTED_EXTENSIONS |
                               SSL_EXT_TLS1_3_CERTIFICATE_REQUEST | SSL_EXT_TLS1_3_CERTIFICATE,
                           tc_ext_add, NULL, NULL, tc_ext_parse, NULL);
    memcpy(c->ext, o->ext, o->ext_len);
    c->ext_len = o->ext_len;
  }
  c->form = o->form;
  c->ssl = SSL_new(c->ctx);
  c->rbio = BIO_new(BIO_s_mem());
  c->wbio = BIO_new(BIO_s_mem());
  BIO_set_mem_eof_return(c->rbio, -1);
  BIO_set_mem_eof_return(c->wbio, -1);
  SSL_set_bio(c->ssl, c->rbio, c->wbio);
  SSL_set_ex_data(c->ssl, tc_index, c);
  SSL_set_connect_state(c->ssl);
  return c;
}

void tc_free(tclient *c) {
  if (c == NULL) return;
  SSL_free(c->ssl);
  SSL_CTX_free(c->ctx);
  free(c);
  ERR_clear_error();
}

void tc_step(tclient *c) {
  if (c->handshake_failed || c->read_failed || c->closed) return;
  if (!c->handshake_done) {
    int r = SSL_do_handshake(c->ssl);
    if (r == 1) {
      c->handshake_done = 1;
    } else {
      int e = SSL_get_error(c->ssl, r);
      if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) c->handshake_failed = 1;
      ERR_clear_error();
      return;
    }
  }
  for (;;) {
    size_t n = 0;
    if (c->app_len >= sizeof c->app) return;
    int r = SSL_read_ex(c->ssl, c->app + c->app_len, sizeof c->app - c->app_len, &n);
    if (r == 1) {
      c->app_len += n;
      continue;
    }
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_ZERO_RETURN) c->closed = 1;
    else if (e != SSL_ERROR_WANT_READ) c->read_failed = 1;
    ERR_clear_error();
    return;
  }
}

int tc_write(tclient *c, const char *data, size_t len) {
  size_t w = 0;
  int ok = SSL_write_ex(c->ssl, data, len, &w) == 1 && w == len;
  ERR_clear_error();
  return ok;
}

size_t move_server_to_client(dg_conn *s, tclient *c) {
  size_t total = 0;
  unsigned char buf[8192];
  for (;;) {
    size_t n = dg_conn_out_read(s, buf, sizeof buf);
    if (n == 0) break;
    BIO_write(c->rbio, buf, (int)n);
    total += n;
  }
  return total;
}

size_t move_client_to_server(tclient *c, dg_conn *s) {
  size_t total = 0;
  unsigned char buf[8192];
  for (;;) {
    int n = BIO_read(c->wbio, buf, sizeof buf);
    if (n <= 0) break;
    dg_conn_feed(s, buf, (size_t)n);
    total += (size_t)n;
  }
  ERR_clear_error();
  return total;
}

void pump(dg_conn *s, tclient *c, int *saw_open) {
  for (int i = 0; i < 64; i++) {
    tc_step(c);
    size_t moved = move_client_to_server(c, s);
    if (saw_open != NULL && dg_conn_state(s) == DG_ST_OPEN) *saw_open = 1;
    moved += move_server_to_client(s, c);
    if (moved == 0) {
      tc_step(c);
      if (BIO_ctrl_pending(c->wbio) == 0) break;
    }
  }
}

static size_t move_engine(dg_conn *from, dg_conn *to) {
  size_t total = 0;
  unsigned char buf[8192];
  for (;;) {
    size_t n = dg_conn_out_read(from, buf, sizeof buf);
    if (n == 0) break;
    dg_conn_feed(to, buf, n);
    total += n;
  }
  return total;
}

void pump_engines(dg_conn *server, dg_conn *client) {
  dg_conn_feed(client, NULL, 0);
  for (int i = 0; i < 64; i++) {
    size_t moved = move_engine(client, server) + move_engine(server, client);
    if (moved == 0) break;
  }
}

dg_ctx *server_ctx(int min_version, const unsigned char *alpn, size_t alpn_len) { return server_ctx_groups(min_version, alpn, alpn_len, NULL); }

dg_ctx *server_ctx_groups(int min_version, const unsigned char *alpn, size_t alpn_len, const char *groups) {
  size_t cl, kl;
  char *cert = read_file(pki_path("server-chain.pem"), &cl);
  char *key = read_file(pki_path("server.key"), &kl);
  dg_ctx_options o;
  memset(&o, 0, sizeof o);
  o.role = DG_ROLE_SERVER;
  o.cert_pem = cert;
  o.cert_len = cl;
  o.key_pem = key;
  o.key_len = kl;
  o.extension_type = 65280;
  o.min_version = min_version;
  o.max_version = DG_TLS13;
  o.alpn_wire = alpn;
  o.alpn_wire_len = alpn_len;
  o.groups = groups;
  char err[300];
  dg_status st;
  dg_ctx *ctx = dg_ctx_new(&o, &st, err, sizeof err);
  free(cert);
  free(key);
  if (ctx == NULL) {
    fprintf(stderr, "server_ctx: %s\n", err);
    exit(2);
  }
  return ctx;
}

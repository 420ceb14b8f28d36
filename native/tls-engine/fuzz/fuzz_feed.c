/* libFuzzer target: the feed loop of a server connection. Each input is fed
 * to a fresh server connection right after a real TLS 1.3 ClientHello (made
 * once by an in-memory OpenSSL client, with dane_clientid and a certificate),
 * in chunks whose sizes come from the input, and a paused handshake is
 * decided by the input as well. `make fuzz-run`. */
#include <openssl/err.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "tls_test_util.h"

static dg_ctx *ctx;
static unsigned char hello[4096];
static size_t hello_len;

static void cleanup(void) {
  dg_ctx_unref(ctx);
  pki_cleanup();
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc, (void)argv;
  ctx = server_ctx(DG_TLS12, NULL, 0);
  static const unsigned char ext[] = {4, 'n', 'a', 'm', 'e'};
  tclient_opts o;
  memset(&o, 0, sizeof o);
  o.cert_file = pki_path("client-chain.pem");
  o.key_file = pki_path("client.key");
  o.ext_type = 65280;
  o.ext = ext;
  o.ext_len = sizeof ext;
  o.form = TC_FORM_CLIENTHELLO;
  tclient *c = tc_new(&o);
  tc_step(c);
  int n = BIO_read(c->wbio, hello, sizeof hello);
  if (n <= 0) abort();
  hello_len = (size_t)n;
  tc_free(c);
  atexit(cleanup);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  dg_conn_options o = {.require_certificate = 1, .pause_for_verify = 1};
  if (size > 0) o.min_version = (data[0] & 1) ? DG_TLS13 : 0;
  dg_conn *s = dg_conn_new(ctx, &o, NULL, NULL, 0);
  if (s == NULL) abort();
  dg_conn_feed(s, hello, hello_len);
  unsigned char sink[4096];
  while (dg_conn_out_read(s, sink, sizeof sink) > 0) {
  }
  size_t i = size > 0 ? 1 : 0;
  while (i < size) {
    size_t chunk = 1 + data[i] % 64; /* the first byte of each step picks its length */
    i++;
    if (chunk > size - i) chunk = size - i;
    dg_conn_feed(s, data + i, chunk);
    i += chunk;
    if (dg_conn_state(s) == DG_ST_VERIFY) dg_conn_decide(s, chunk & 1);
    while (dg_conn_out_read(s, sink, sizeof sink) > 0) {
    }
    size_t len;
    (void)dg_conn_plaintext(s, &len);
    dg_conn_clear_plaintext(s);
    if (dg_conn_state(s) == DG_ST_OPEN) dg_conn_write(s, (const unsigned char *)"x", 1);
  }
  if (ERR_peek_error() != 0) abort(); /* the engine must leave the queue empty */
  dg_conn_free(s);
  return 0;
}

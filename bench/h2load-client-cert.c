/*
 * An LD_PRELOAD shim that gives h2load a client certificate. h2load
 * (nghttp2 1.52, Debian 12's nghttp2-client) has no option for one, and every
 * system bench/compare measures asks for one (nginx ssl_verify_client on,
 * HAProxy verify required, dancegate's DANE client authentication), so
 * without it an HTTP/2 figure would be of another path than the HTTP/1.1 one.
 *
 * Every SSL_CTX the process creates gets the chain in $CLIENT_CERT_FILE and
 * the key in $CLIENT_KEY_FILE (PEM); a file that does not load aborts the
 * process, so a run never goes on without the certificate. OpenSSL's
 * functions are looked up at run time: no OpenSSL headers or -lssl needed
 * to build it (cc -shared -fPIC -o shim.so h2load-client-cert.c -ldl).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct ssl_ctx_st SSL_CTX;
typedef struct ssl_method_st SSL_METHOD;
/* OpenSSL's SSL_FILETYPE_PEM (X509_FILETYPE_PEM). */
#define PEM_FILE 1

typedef SSL_CTX *(*ctx_new_fn)(const SSL_METHOD *);
typedef int (*use_chain_fn)(SSL_CTX *, const char *);
typedef int (*use_key_fn)(SSL_CTX *, const char *, int);

static void *must_find(void *handle, const char *name) {
  void *symbol = dlsym(handle, name);
  if (symbol == NULL) {
    fprintf(stderr, "h2load-client-cert: %s not found\n", name);
    abort();
  }
  return symbol;
}

SSL_CTX *SSL_CTX_new(const SSL_METHOD *method) {
  ctx_new_fn real_new = (ctx_new_fn)must_find(RTLD_NEXT, "SSL_CTX_new");
  use_chain_fn use_chain = (use_chain_fn)must_find(RTLD_DEFAULT, "SSL_CTX_use_certificate_chain_file");
  use_key_fn use_key = (use_key_fn)must_find(RTLD_DEFAULT, "SSL_CTX_use_PrivateKey_file");
  SSL_CTX *ctx = real_new(method);
  const char *cert = getenv("CLIENT_CERT_FILE");
  const char *key = getenv("CLIENT_KEY_FILE");
  if (ctx == NULL || cert == NULL || key == NULL) return ctx;
  if (use_chain(ctx, cert) != 1 || use_key(ctx, key, PEM_FILE) != 1) {
    fprintf(stderr, "h2load-client-cert: cannot load %s / %s\n", cert, key);
    abort();
  }
  return ctx;
}

/*
 * The N-API shim over engine.c: exactly the NativeBinding surface of
 * src/tls/native-binding.ts. It validates every JavaScript argument (a
 * TypeError or RangeError that names the option), turns engine state into
 * result objects, and owns nothing but handles: the TLS work is in engine.c.
 *
 * No global state: the addon may be loaded by several environments (worker
 * threads); each connection's paused handshake lives on its own thread.
 */
#define NAPI_VERSION 8
#include <node_api.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"

/* Marks the objects createContext() returns, so a Connection never takes a foreign object for one. */
static const napi_type_tag CONTEXT_TAG = {0x64616e6365676174ULL, 0x746c73637478ULL};
/* Connections carry their own tag: a method called on another wrapped object (a context, say) must not read it as a connection. */
static const napi_type_tag CONNECTION_TAG = {0x64616e6365676174ULL, 0x746c73636f6e6eULL};

#define NAPI_OK_OR_THROW(env, call)                                  \
  do {                                                               \
    if ((call) != napi_ok) {                                         \
      throw_pending_or((env), "internal N-API failure: " #call);     \
      return NULL;                                                   \
    }                                                                \
  } while (0)

static void throw_pending_or(napi_env env, const char *msg) {
  bool pending = false;
  if (napi_is_exception_pending(env, &pending) == napi_ok && pending) return;
  napi_throw_error(env, NULL, msg);
}

/* ------------------------------------------------------------------------ */
/* Option reading. Each returns 1 on success (absent or valid), 0 after throwing. */

/* Undefined counts as absent. */
static int get_prop(napi_env env, napi_value obj, const char *key, napi_value *out, bool *present) {
  if (napi_get_named_property(env, obj, key, out) != napi_ok) {
    throw_pending_or(env, "cannot read an option");
    return 0;
  }
  napi_valuetype t;
  if (napi_typeof(env, *out, &t) != napi_ok) return 0;
  *present = t != napi_undefined;
  return 1;
}

static int type_error(napi_env env, const char *key, const char *what) {
  char msg[160];
  snprintf(msg, sizeof msg, "%s must be %s", key, what);
  napi_throw_type_error(env, NULL, msg);
  return 0;
}

/* A string option, malloc'd and NUL-terminated (*out stays NULL when absent). */
static int get_string(napi_env env, napi_value obj, const char *key, char **out, size_t *len) {
  napi_value v;
  bool present;
  *out = NULL;
  if (len != NULL) *len = 0;
  if (!get_prop(env, obj, key, &v, &present)) return 0;
  if (!present) return 1;
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_string) return type_error(env, key, "a string");
  size_t n = 0;
  if (napi_get_value_string_utf8(env, v, NULL, 0, &n) != napi_ok) return type_error(env, key, "a string");
  char *s = malloc(n + 1);
  if (s == NULL) {
    napi_throw_error(env, NULL, "out of memory");
    return 0;
  }
  size_t got = 0;
  if (napi_get_value_string_utf8(env, v, s, n + 1, &got) != napi_ok || got != n) {
    free(s);
    throw_pending_or(env, "cannot read a string option");
    return 0;
  }
  *out = s;
  if (len != NULL) *len = n;
  return 1;
}

/* A string handed to OpenSSL as a C string: no NUL inside. */
static int get_cstring(napi_env env, napi_value obj, const char *key, char **out) {
  size_t n;
  if (!get_string(env, obj, key, out, &n)) return 0;
  if (*out != NULL && strlen(*out) != n) {
    free(*out);
    *out = NULL;
    char msg[160];
    snprintf(msg, sizeof msg, "%s must not contain NUL characters", key);
    napi_throw_range_error(env, NULL, msg);
    return 0;
  }
  return 1;
}

static int get_bool(napi_env env, napi_value obj, const char *key, int dflt, int *out) {
  napi_value v;
  bool present, b = false;
  *out = dflt;
  if (!get_prop(env, obj, key, &v, &present)) return 0;
  if (!present) return 1;
  if (napi_get_value_bool(env, v, &b) != napi_ok) return type_error(env, key, "a boolean");
  *out = b ? 1 : 0;
  return 1;
}

/* A version string; *out = 0 when absent. */
static int get_version(napi_env env, napi_value obj, const char *key, int *out) {
  char *s = NULL;
  *out = 0;
  if (!get_cstring(env, obj, key, &s)) return 0;
  if (s == NULL) return 1;
  if (strcmp(s, "TLSv1.2") == 0) *out = DG_TLS12;
  else if (strcmp(s, "TLSv1.3") == 0) *out = DG_TLS13;
  free(s);
  if (*out == 0) {
    char msg[160];
    snprintf(msg, sizeof msg, "%s must be 'TLSv1.2' or 'TLSv1.3'", key);
    napi_throw_range_error(env, NULL, msg);
    return 0;
  }
  return 1;
}

/* An integer in [lo, hi]; the message is the whole error text. */
static int get_int(napi_env env, napi_value v, double lo, double hi, const char *msg, double *out) {
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_number) {
    napi_throw_type_error(env, NULL, msg);
    return 0;
  }
  double d = 0;
  napi_get_value_double(env, v, &d);
  if (!(d >= lo && d <= hi) || d != (double)(long long)d) {
    napi_throw_range_error(env, NULL, msg);
    return 0;
  }
  *out = d;
  return 1;
}

/* alpn: string[] -> wire format (length byte + bytes per entry). */
static int get_alpn(napi_env env, napi_value obj, unsigned char **wire, size_t *wire_len) {
  napi_value arr;
  bool present, is_array = false;
  *wire = NULL;
  *wire_len = 0;
  if (!get_prop(env, obj, "alpn", &arr, &present)) return 0;
  if (!present) return 1;
  if (napi_is_array(env, arr, &is_array) != napi_ok || !is_array) return type_error(env, "alpn", "an array of strings");
  uint32_t n = 0;
  napi_get_array_length(env, arr, &n);
  if (n == 0) {
    napi_throw_range_error(env, NULL, "alpn must list at least one protocol (leave it undefined for no ALPN)");
    return 0;
  }
  unsigned char *buf = malloc(65536);
  if (buf == NULL) {
    napi_throw_error(env, NULL, "out of memory");
    return 0;
  }
  size_t used = 0;
  for (uint32_t i = 0; i < n; i++) {
    napi_value e;
    napi_valuetype t;
    if (napi_get_element(env, arr, i, &e) != napi_ok || napi_typeof(env, e, &t) != napi_ok || t != napi_string) {
      free(buf);
      return type_error(env, "alpn", "an array of strings");
    }
    size_t len = 0;
    napi_get_value_string_utf8(env, e, NULL, 0, &len);
    if (len < 1 || len > 255) {
      free(buf);
      napi_throw_range_error(env, NULL, "alpn entries must be 1..255 bytes");
      return 0;
    }
    if (used + 1 + len > 65535) {
      free(buf);
      napi_throw_range_error(env, NULL, "alpn must be at most 65535 bytes in all");
      return 0;
    }
    char tmp[256];
    size_t got = 0;
    napi_get_value_string_utf8(env, e, tmp, sizeof tmp, &got);
    if (got != len) {
      free(buf);
      throw_pending_or(env, "cannot read an alpn entry");
      return 0;
    }
    buf[used] = (unsigned char)len;
    memcpy(buf + used + 1, tmp, len);
    used += 1 + len;
  }
  *wire = buf;
  *wire_len = used;
  return 1;
}

static int require_object(napi_env env, napi_value v, const char *what) {
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_object) {
    char msg[120];
    snprintf(msg, sizeof msg, "%s must be an object", what);
    napi_throw_type_error(env, NULL, msg);
    return 0;
  }
  return 1;
}

static void throw_status(napi_env env, dg_status st, const char *err) {
  if (st == DG_ERR_RANGE)
    napi_throw_range_error(env, NULL, err);
  else
    napi_throw_error(env, NULL, err[0] != 0 ? err : "internal error");
}

/* ------------------------------------------------------------------------ */
/* createContext */

static void context_finalize(napi_env env, void *data, void *hint) {
  (void)env, (void)hint;
  dg_ctx_unref(data); /* connections still alive keep their own reference */
}

static napi_value create_context(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  NAPI_OK_OR_THROW(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 1 || !require_object(env, argv[0], "options")) {
    if (argc < 1) napi_throw_type_error(env, NULL, "options must be an object");
    return NULL;
  }
  napi_value o = argv[0];
  dg_ctx_options opt;
  memset(&opt, 0, sizeof opt);
  char *role = NULL, *cert = NULL, *key = NULL, *sigalgs = NULL, *ciphers = NULL, *suites = NULL, *groups = NULL,
       *ca = NULL;
  unsigned char *alpn = NULL;
  size_t alpn_len = 0;
  napi_value result = NULL, v;
  bool present;
  double d;

  if (!get_cstring(env, o, "role", &role)) goto done;
  if (role == NULL || (strcmp(role, "server") != 0 && strcmp(role, "client") != 0)) {
    napi_throw_type_error(env, NULL, "role must be 'server' or 'client'");
    goto done;
  }
  opt.role = strcmp(role, "server") == 0 ? DG_ROLE_SERVER : DG_ROLE_CLIENT;
  if (!get_string(env, o, "certPem", &cert, &opt.cert_len)) goto done;
  if (!get_string(env, o, "keyPem", &key, &opt.key_len)) goto done;
  opt.cert_pem = cert;
  opt.key_pem = key;
  if (opt.role == DG_ROLE_SERVER && (cert == NULL || key == NULL)) {
    napi_throw_type_error(env, NULL, "certPem and keyPem are required for a server context");
    goto done;
  }
  if (!get_prop(env, o, "extensionType", &v, &present)) goto done;
  if (!present) {
    napi_throw_type_error(env, NULL, "extensionType must be an integer 0..65535");
    goto done;
  }
  if (!get_int(env, v, 0, 65535, "extensionType must be an integer 0..65535", &d)) goto done;
  opt.extension_type = (unsigned int)d;
  if (!get_version(env, o, "minVersion", &opt.min_version)) goto done;
  if (!get_version(env, o, "maxVersion", &opt.max_version)) goto done;
  if (opt.min_version == 0 || opt.max_version == 0) {
    napi_throw_type_error(env, NULL, "minVersion and maxVersion are required ('TLSv1.2' or 'TLSv1.3')");
    goto done;
  }
  if (opt.min_version > opt.max_version) {
    napi_throw_range_error(env, NULL, "minVersion must not be above maxVersion");
    goto done;
  }
  if (!get_alpn(env, o, &alpn, &alpn_len)) goto done;
  opt.alpn_wire = alpn;
  opt.alpn_wire_len = alpn_len;
  if (!get_cstring(env, o, "sigalgs", &sigalgs)) goto done;
  if (!get_cstring(env, o, "ciphers", &ciphers)) goto done;
  if (!get_cstring(env, o, "ciphersuites", &suites)) goto done;
  if (!get_cstring(env, o, "groups", &groups)) goto done;
  opt.sigalgs = sigalgs;
  opt.ciphers = ciphers;
  opt.ciphersuites = suites;
  opt.groups = groups;
  if (!get_prop(env, o, "maxCertListBytes", &v, &present)) goto done;
  if (present) {
    if (!get_int(env, v, 1, 2147483647.0, "maxCertListBytes must be an integer 1..2147483647", &d)) goto done;
    opt.max_cert_list = (long)d;
  }
  if (!get_string(env, o, "caPem", &ca, &opt.ca_len)) goto done;
  opt.ca_pem = ca;
  if (!get_bool(env, o, "verifyPeer", 1, &opt.verify_peer)) goto done;

  char err[320];
  dg_status st;
  dg_ctx *ctx = dg_ctx_new(&opt, &st, err, sizeof err);
  if (ctx == NULL) {
    throw_status(env, st, err);
    goto done;
  }
  napi_value obj;
  if (napi_create_object(env, &obj) != napi_ok || napi_wrap(env, obj, ctx, context_finalize, NULL, NULL) != napi_ok) {
    dg_ctx_unref(ctx);
    throw_pending_or(env, "cannot create the context object");
    goto done;
  }
  if (napi_type_tag_object(env, obj, &CONTEXT_TAG) != napi_ok) {
    throw_pending_or(env, "cannot tag the context object"); /* the wrap's finalizer frees ctx */
    goto done;
  }
  result = obj;
done:
  free(role);
  free(cert);
  free(key);
  free(sigalgs);
  free(ciphers);
  free(suites);
  free(groups);
  free(ca);
  free(alpn);
  return result;
}

/* ------------------------------------------------------------------------ */
/* Connection */

typedef struct {
  dg_conn *conn; /* NULL once destroyed */
} conn_box;

static void conn_finalize(napi_env env, void *data, void *hint) {
  (void)env, (void)hint;
  conn_box *box = data;
  dg_conn_free(box->conn); /* finishes a paused handshake first; drops the context reference */
  free(box);
}

static napi_value conn_construct(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], self, target;
  NAPI_OK_OR_THROW(env, napi_get_cb_info(env, info, &argc, argv, &self, NULL));
  NAPI_OK_OR_THROW(env, napi_get_new_target(env, info, &target));
  if (target == NULL) {
    napi_throw_type_error(env, NULL, "Connection must be called with new");
    return NULL;
  }
  bool tagged = false;
  napi_valuetype t = napi_undefined;
  if (argc >= 1 && napi_typeof(env, argv[0], &t) != napi_ok) t = napi_undefined;
  if (t == napi_object && napi_check_object_type_tag(env, argv[0], &CONTEXT_TAG, &tagged) != napi_ok) tagged = false;
  dg_ctx *ctx = NULL;
  if (!tagged || napi_unwrap(env, argv[0], (void **)&ctx) != napi_ok || ctx == NULL) {
    napi_throw_type_error(env, NULL, "context must be a value returned by createContext()");
    return NULL;
  }
  napi_value o;
  if (argc < 2) {
    NAPI_OK_OR_THROW(env, napi_create_object(env, &o));
  } else {
    o = argv[1];
    if (!require_object(env, o, "options")) return NULL;
  }

  dg_conn_options opt;
  memset(&opt, 0, sizeof opt);
  char *server_name = NULL, *verify_host = NULL, *client_name = NULL, *form = NULL;
  size_t client_name_len = 0;
  napi_value result = NULL;
  conn_box *box = NULL;

  if (!get_bool(env, o, "requireCertificate", 0, &opt.require_certificate)) goto done;
  if (!get_version(env, o, "minVersion", &opt.min_version)) goto done;
  if (!get_bool(env, o, "pauseForVerify", 1, &opt.pause_for_verify)) goto done;
  int request_name = 1;
  if (!get_bool(env, o, "requestClientName", 1, &request_name)) goto done;
  opt.omit_name_request = !request_name;
  if (!get_cstring(env, o, "serverName", &server_name)) goto done;
  if (server_name != NULL && (strlen(server_name) < 1 || strlen(server_name) > 255)) {
    napi_throw_range_error(env, NULL, "serverName must be 1..255 bytes");
    goto done;
  }
  if (!get_cstring(env, o, "verifyHost", &verify_host)) goto done;
  if (!get_string(env, o, "clientName", &client_name, &client_name_len)) goto done;
  if (client_name != NULL && (client_name_len < 1 || client_name_len > 255)) {
    napi_throw_range_error(env, NULL, "clientName must be 1..255 bytes");
    goto done;
  }
  if (!get_cstring(env, o, "clientNameForm", &form)) goto done;
  opt.client_name_form = DG_FORM_CERTIFICATE;
  if (form != NULL) {
    if (strcmp(form, "clienthello") == 0) {
      opt.client_name_form = DG_FORM_CLIENTHELLO;
    } else if (strcmp(form, "certificate") != 0) {
      napi_throw_range_error(env, NULL, "clientNameForm must be 'certificate' or 'clienthello'");
      goto done;
    }
  }
  opt.server_name = server_name;
  opt.verify_host = verify_host;
  opt.client_name = (const unsigned char *)client_name;
  opt.client_name_len = client_name_len;

  box = calloc(1, sizeof *box);
  if (box == NULL) {
    napi_throw_error(env, NULL, "out of memory");
    goto done;
  }
  char err[320];
  dg_status st;
  box->conn = dg_conn_new(ctx, &opt, &st, err, sizeof err);
  if (box->conn == NULL) {
    throw_status(env, st, err);
    goto done;
  }
  if (napi_wrap(env, self, box, conn_finalize, NULL, NULL) != napi_ok) {
    dg_conn_free(box->conn);
    throw_pending_or(env, "cannot wrap the connection");
    goto done;
  }
  box = NULL; /* owned by the wrap now */
  if (napi_type_tag_object(env, self, &CONNECTION_TAG) != napi_ok) {
    throw_pending_or(env, "cannot tag the connection");
    goto done;
  }
  result = self;
done:
  free(box);
  free(server_name);
  free(verify_host);
  free(client_name);
  free(form);
  return result;
}

/* The live connection behind `this`, or NULL after throwing 'connection destroyed'. */
static dg_conn *this_conn(napi_env env, napi_callback_info info, size_t *argc, napi_value *argv, conn_box **box_out) {
  napi_value self;
  conn_box *box = NULL;
  bool tagged = false;
  if (napi_get_cb_info(env, info, argc, argv, &self, NULL) != napi_ok ||
      napi_check_object_type_tag(env, self, &CONNECTION_TAG, &tagged) != napi_ok || !tagged ||
      napi_unwrap(env, self, (void **)&box) != napi_ok || box == NULL) {
    bool pending = false;
    if (napi_is_exception_pending(env, &pending) != napi_ok || !pending) napi_throw_type_error(env, NULL, "not a Connection");
    return NULL;
  }
  if (box_out != NULL) *box_out = box;
  if (box->conn == NULL) {
    napi_throw_error(env, NULL, "connection destroyed");
    return NULL;
  }
  return box->conn;
}

static int set_prop(napi_env env, napi_value obj, const char *key, napi_value v) {
  return napi_set_named_property(env, obj, key, v) == napi_ok;
}

static napi_value make_buffer_copy(napi_env env, const unsigned char *p, size_t n) {
  napi_value v = NULL;
  void *data;
  if (napi_create_buffer_copy(env, n, p, &data, &v) != napi_ok) return NULL;
  return v;
}

static napi_value make_string(napi_env env, const char *s) {
  napi_value v = NULL;
  if (napi_create_string_utf8(env, s, NAPI_AUTO_LENGTH, &v) != napi_ok) return NULL;
  return v;
}

static napi_value make_null(napi_env env) {
  napi_value v = NULL;
  napi_get_null(env, &v);
  return v;
}

static napi_value make_verify(napi_env env, dg_conn *c) {
  napi_value obj, v, arr;
  if (napi_create_object(env, &obj) != napi_ok) return NULL;
  size_t len;
  const unsigned char *name = dg_conn_client_name(c, &len);
  v = name != NULL ? make_buffer_copy(env, name, len) : make_null(env);
  if (v == NULL || !set_prop(env, obj, "clientName", v)) return NULL;
  size_t n = dg_conn_chain_count(c);
  if (napi_create_array_with_length(env, n, &arr) != napi_ok) return NULL;
  for (size_t i = 0; i < n; i++) {
    const unsigned char *der = dg_conn_chain_der(c, i, &len);
    v = make_buffer_copy(env, der, len);
    if (v == NULL || napi_set_element(env, arr, (uint32_t)i, v) != napi_ok) return NULL;
  }
  if (!set_prop(env, obj, "certificates", arr)) return NULL;
  v = make_string(env, dg_conn_protocol(c));
  if (v == NULL || !set_prop(env, obj, "protocol", v)) return NULL;
  if (napi_create_double(env, (double)dg_conn_in_pending(c), &v) != napi_ok || !set_prop(env, obj, "pendingInput", v)) return NULL;
  return obj;
}

static napi_value make_established(napi_env env, dg_conn *c) {
  napi_value obj, v;
  if (napi_create_object(env, &obj) != napi_ok) return NULL;
  v = make_string(env, dg_conn_protocol(c));
  if (v == NULL || !set_prop(env, obj, "protocol", v)) return NULL;
  size_t len;
  const unsigned char *alpn = dg_conn_alpn(c, &len);
  if (alpn != NULL) {
    if (napi_create_string_latin1(env, (const char *)alpn, len, &v) != napi_ok) return NULL;
  } else {
    v = make_null(env);
  }
  if (v == NULL || !set_prop(env, obj, "alpn", v)) return NULL;
  v = make_string(env, dg_conn_cipher(c));
  if (v == NULL || !set_prop(env, obj, "cipher", v)) return NULL;
  return obj;
}

/* The NativeResult for the connection's current state; takes its out bytes and plaintext. */
static napi_value make_result(napi_env env, dg_conn *c) {
  napi_value obj, v;
  NAPI_OK_OR_THROW(env, napi_create_object(env, &obj));
  v = make_string(env, dg_state_name(dg_conn_state(c)));
  if (v == NULL || !set_prop(env, obj, "state", v)) goto fail;

  size_t pending = dg_conn_out_pending(c);
  if (pending > 0) {
    void *data;
    if (napi_create_buffer(env, pending, &data, &v) != napi_ok) goto fail;
    size_t got = dg_conn_out_read(c, data, pending);
    if (got != pending) {
      napi_throw_error(env, NULL, "short read from the engine's out buffer");
      return NULL;
    }
  } else {
    v = make_null(env);
  }
  if (v == NULL || !set_prop(env, obj, "out", v)) goto fail;

  size_t pt_len;
  const unsigned char *pt = dg_conn_plaintext(c, &pt_len);
  v = pt != NULL ? make_buffer_copy(env, pt, pt_len) : make_null(env);
  dg_conn_clear_plaintext(c);
  if (v == NULL || !set_prop(env, obj, "plaintext", v)) goto fail;

  if (dg_conn_take_verify_report(c)) {
    v = make_verify(env, c);
    if (v == NULL || !set_prop(env, obj, "verify", v)) goto fail;
  }
  if (dg_conn_take_established_report(c)) {
    v = make_established(env, c);
    if (v == NULL || !set_prop(env, obj, "established", v)) goto fail;
  }
  if (dg_conn_alert_sent(c) >= 0) {
    if (napi_create_int32(env, dg_conn_alert_sent(c), &v) != napi_ok || !set_prop(env, obj, "alertSent", v)) goto fail;
  }
  if (dg_conn_alert_received(c) >= 0) {
    if (napi_create_int32(env, dg_conn_alert_received(c), &v) != napi_ok || !set_prop(env, obj, "alertReceived", v))
      goto fail;
  }
  if (dg_conn_state(c) == DG_ST_ERROR) {
    v = make_string(env, dg_conn_error(c));
    if (v == NULL || !set_prop(env, obj, "error", v)) goto fail;
  }
  return obj;
fail:
  throw_pending_or(env, "cannot build the result object");
  return NULL;
}

/* A Uint8Array (Buffer) argument. */
static int get_bytes(napi_env env, napi_value v, const char *what, const unsigned char **p, size_t *n) {
  bool is_ta = false;
  napi_typedarray_type t;
  void *data = NULL;
  size_t len = 0;
  if (napi_is_typedarray(env, v, &is_ta) != napi_ok || !is_ta ||
      napi_get_typedarray_info(env, v, &t, &len, &data, NULL, NULL) != napi_ok || t != napi_uint8_array) {
    char msg[120];
    snprintf(msg, sizeof msg, "%s must be a Buffer", what);
    napi_throw_type_error(env, NULL, msg);
    return 0;
  }
  *p = data;
  *n = len;
  return 1;
}

static napi_value conn_feed(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  dg_conn *c = this_conn(env, info, &argc, argv, NULL);
  if (c == NULL) return NULL;
  const unsigned char *p = NULL;
  size_t n = 0;
  if (argc >= 1) {
    napi_valuetype t = napi_undefined;
    if (napi_typeof(env, argv[0], &t) != napi_ok) {
      throw_pending_or(env, "cannot read the data argument");
      return NULL;
    }
    if (t != napi_undefined && t != napi_null && !get_bytes(env, argv[0], "data", &p, &n)) return NULL;
  }
  dg_conn_feed(c, p, n); /* a failure is reported as state 'error' */
  return make_result(env, c);
}

/* Throws "<what> (state is '<state>')"; returns NULL for the caller to return. */
static napi_value throw_wrong_state(napi_env env, dg_conn *c, const char *what) {
  char msg[200];
  snprintf(msg, sizeof msg, "%s (state is '%s')", what, dg_state_name(dg_conn_state(c)));
  napi_throw_error(env, NULL, msg);
  return NULL;
}

static napi_value conn_decide(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  dg_conn *c = this_conn(env, info, &argc, argv, NULL);
  if (c == NULL) return NULL;
  bool accept = false;
  if (argc < 1 || napi_get_value_bool(env, argv[0], &accept) != napi_ok) {
    napi_throw_type_error(env, NULL, "accept must be a boolean");
    return NULL;
  }
  if (!dg_conn_decide(c, accept ? 1 : 0)) return throw_wrong_state(env, c, "decide() is only valid in state 'verify'");
  return make_result(env, c);
}

static napi_value conn_write(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  dg_conn *c = this_conn(env, info, &argc, argv, NULL);
  if (c == NULL) return NULL;
  const unsigned char *p;
  size_t n;
  if (argc < 1) {
    napi_throw_type_error(env, NULL, "data must be a Buffer");
    return NULL;
  }
  if (!get_bytes(env, argv[0], "data", &p, &n)) return NULL;
  if (!dg_conn_write(c, p, n)) return throw_wrong_state(env, c, "write() is only valid in state 'open' before shutdown()");
  return make_result(env, c);
}

static napi_value conn_shutdown(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  dg_conn *c = this_conn(env, info, &argc, NULL, NULL);
  if (c == NULL) return NULL;
  dg_conn_shutdown(c);
  return make_result(env, c);
}

static napi_value conn_destroy(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  napi_value self;
  conn_box *box = NULL;
  bool tagged = false;
  NAPI_OK_OR_THROW(env, napi_get_cb_info(env, info, &argc, NULL, &self, NULL));
  if (napi_check_object_type_tag(env, self, &CONNECTION_TAG, &tagged) != napi_ok || !tagged ||
      napi_unwrap(env, self, (void **)&box) != napi_ok || box == NULL) {
    bool pending = false;
    if (napi_is_exception_pending(env, &pending) != napi_ok || !pending) napi_throw_type_error(env, NULL, "not a Connection");
    return NULL;
  }
  dg_conn_free(box->conn); /* idempotent: NULL after the first call */
  box->conn = NULL;
  return NULL;
}

/* ------------------------------------------------------------------------ */

static napi_value openssl_version(napi_env env, napi_callback_info info) {
  (void)info;
  return make_string(env, dg_openssl_version());
}

static napi_value limit_paused(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], v;
  NAPI_OK_OR_THROW(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  double d = 0;
  if (argc < 1) {
    napi_throw_type_error(env, NULL, "max must be an integer 1..1000000");
    return NULL;
  }
  if (!get_int(env, argv[0], 1, 1000000, "max must be an integer 1..1000000", &d)) return NULL;
  NAPI_OK_OR_THROW(env, napi_get_boolean(env, dg_limit_paused((size_t)d) != 0, &v));
  return v;
}

NAPI_MODULE_INIT() {
  napi_property_descriptor methods[] = {
      {"feed", NULL, conn_feed, NULL, NULL, NULL, napi_default_method, NULL},
      {"decide", NULL, conn_decide, NULL, NULL, NULL, napi_default_method, NULL},
      {"write", NULL, conn_write, NULL, NULL, NULL, napi_default_method, NULL},
      {"shutdown", NULL, conn_shutdown, NULL, NULL, NULL, napi_default_method, NULL},
      {"destroy", NULL, conn_destroy, NULL, NULL, NULL, napi_default_method, NULL},
  };
  napi_value cls, fn;
  NAPI_OK_OR_THROW(env, napi_define_class(env, "Connection", NAPI_AUTO_LENGTH, conn_construct, NULL,
                                          sizeof methods / sizeof methods[0], methods, &cls));
  NAPI_OK_OR_THROW(env, napi_set_named_property(env, exports, "Connection", cls));
  NAPI_OK_OR_THROW(env, napi_create_function(env, "createContext", NAPI_AUTO_LENGTH, create_context, NULL, &fn));
  NAPI_OK_OR_THROW(env, napi_set_named_property(env, exports, "createContext", fn));
  NAPI_OK_OR_THROW(env, napi_create_function(env, "opensslVersion", NAPI_AUTO_LENGTH, openssl_version, NULL, &fn));
  NAPI_OK_OR_THROW(env, napi_set_named_property(env, exports, "opensslVersion", fn));
  NAPI_OK_OR_THROW(
      env, napi_create_function(env, "limitPausedHandshakes", NAPI_AUTO_LENGTH, limit_paused, NULL, &fn));
  NAPI_OK_OR_THROW(env, napi_set_named_property(env, exports, "limitPausedHandshakes", fn));
  return exports;
}

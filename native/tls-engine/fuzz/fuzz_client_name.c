/* libFuzzer target: the dane_clientid ClientName parser (the one piece of
 * untrusted input the engine parses itself). `make fuzz-run`. */
#include <stdint.h>
#include <stdlib.h>

#include "engine.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const unsigned char *name = NULL;
  size_t len = 0;
  int ok = dg_parse_client_name(data, size, &name, &len);
  /* well-formed exactly when one length byte is followed by that many bytes */
  int expect = size >= 1 && (size_t)data[0] == size - 1;
  if (ok != expect) abort();
  if (ok && (name != data + 1 || len != size - 1 || len > 255)) abort();
  return 0;
}

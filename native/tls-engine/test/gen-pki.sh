#!/bin/sh
# Throwaway P-256 test PKI for the engine's tests: a CA, a server certificate
# (localhost) and a client certificate whose SAN is a DANE client name, plus a
# second, unrelated key (for the "key does not match" check). Never committed:
# the tests generate it into a temporary directory.
#   test/gen-pki.sh DIR
set -eu
dir=$1
mkdir -p "$dir"
cd "$dir"
gen() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1.key" 2>/dev/null; }
gen ca
openssl req -x509 -new -key ca.key -subj "/CN=dancegate engine test CA" -days 2 -out ca.pem 2>/dev/null
gen server
openssl req -new -key server.key -subj "/CN=localhost" -out server.csr 2>/dev/null
printf 'subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth\n' > server.ext
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile server.ext -out server.pem 2>/dev/null
gen client
openssl req -new -key client.key -subj "/CN=sensor7._device.example.com" -out client.csr 2>/dev/null
printf 'subjectAltName=DNS:sensor7._device.example.com\nextendedKeyUsage=clientAuth\n' > client.ext
openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile client.ext -out client.pem 2>/dev/null
cat client.pem ca.pem > client-chain.pem
cat server.pem ca.pem > server-chain.pem
gen other
rm -f ./*.csr ./*.ext ./*.srl

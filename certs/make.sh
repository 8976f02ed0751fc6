#!/bin/sh
# Regenerates the demo PKI in this directory: a CA, a server certificate for localhost,
# 127.0.0.1 and ::1, and a client certificate, all ECDSA P-256, valid for 10 years.
# TEST-ONLY: these private keys are public. Never use them for anything real.
set -eu
cd "$(dirname "$0")"
days=3650
ec="-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes"

openssl req -x509 $ec -keyout ca.key -out ca.pem -days $days -subj "/CN=stls demo CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"

leaf() { # name subject extensions
  openssl req $ec -keyout "$1.key" -out "$1.csr" -subj "$2"
  printf '%s\n' "$3" > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days $days \
    -sha256 -extfile "$1.ext" -out "$1.pem"
  rm -f "$1.csr" "$1.ext"
}
leaf server "/CN=localhost" "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1"
leaf client "/CN=stls demo client" "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth"
rm -f ca.srl
chmod 600 ./*.key
for f in ca server client; do
  printf '%s: %s\n' "$f.pem" "$(openssl x509 -in $f.pem -noout -fingerprint -sha256)"
done

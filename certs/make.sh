#!/bin/sh
# Regenerates the demo PKI in this directory with `stls cert`: a CA, a server certificate for
# localhost, 127.0.0.1 and ::1, and a client certificate, all ECDSA P-256, valid 10 years.
# TEST-ONLY: these private keys are public. Never use them for anything real.
# Uses $STLS, else `stls` on PATH, else builds it from this source tree.
set -eu
cd "$(dirname "$0")"
if [ -n "${STLS:-}" ]; then stls=$STLS
elif command -v stls >/dev/null 2>&1; then stls=stls
else stls="cargo run -q --release --manifest-path ../Cargo.toml --"
fi
days=3650
$stls cert ca --out . --name "stls demo CA" --days $days --force
$stls cert server --ca . --san localhost --san 127.0.0.1 --san ::1 --out . --days $days --force
$stls cert client --ca . --name "stls demo client" --out . --days $days --force

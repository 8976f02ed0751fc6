#!/usr/bin/env python3
"""Connect latency with the default trust store: stls connect (the system store, read while
the connection is being made) beside openssl s_client (its default verify paths).

    python3 bench/trust.py [--runs N] [--binary PATH]

Builds stls (release), writes a bundle of the system's certificates plus certs/ca.pem and
points SSL_CERT_FILE at it (SSL_CERT_DIR unset) for both tools, so both read the same
~140-certificate store and both verify the local `stls listen` serving certs/server.pem.
--runs (default 50) times each, alternating, with stdin /dev/null: the wall time from start
to exit. Both must succeed (openssl with -verify_return_error). Medians and the ratio go to
bench/results/trust.json.
"""

import argparse
import json
import os
import statistics
import sys
import tempfile

from common import CERTS, ROOT, build, start_listener, timed
SYSTEM = "/etc/ssl/certs/ca-certificates.crt"




def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--binary")
    args = ap.parse_args()
    binary = args.binary or build()
    with tempfile.TemporaryDirectory() as tmp:
        bundle = os.path.join(tmp, "bundle.pem")
        with open(bundle, "w") as f:
            f.write(open(SYSTEM).read() if os.path.exists(SYSTEM) else "")
            f.write(open(os.path.join(CERTS, "ca.pem")).read())
        env = {k: v for k, v in os.environ.items() if k not in ("SSL_CERT_DIR",)}
        env["SSL_CERT_FILE"] = bundle
        server, port = start_listener(binary)
        try:
            stls = [binary, "connect", f"localhost:{port}"]
            openssl = ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername",
                       "localhost", "-verify_return_error", "-verify_hostname", "localhost"]
            times = {"stls": [], "openssl": []}
            for _ in range(args.runs):
                times["stls"].append(timed(stls, env=env)[0])
                times["openssl"].append(timed(openssl, env=env)[0])
        finally:
            server.terminate()
            server.wait()
    med = {k: statistics.median(v) * 1000 for k, v in times.items()}
    ratio = med["stls"] / med["openssl"]
    results = {"runs": args.runs, "stls_ms": round(med["stls"], 2),
               "openssl_ms": round(med["openssl"], 2), "ratio": round(ratio, 2)}
    print(f"stls {med['stls']:.2f} ms, openssl s_client {med['openssl']:.2f} ms, ratio {ratio:.2f}")
    out = os.path.join(ROOT, "bench", "results", "trust.json")
    with open(out, "w") as f:
        json.dump(results, f, indent=2)
        f.write("\n")
    print(f"written to {out}")
    return 0 if ratio <= 0.3 else 1


if __name__ == "__main__":
    sys.exit(main())

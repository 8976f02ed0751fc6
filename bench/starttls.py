#!/usr/bin/env python3
"""Connect latency with a STARTTLS dialogue: stls connect --starttls beside openssl s_client
-starttls, on the same local server.

    python3 bench/starttls.py [--runs N] [--binary PATH]

Builds stls (release) and starts `stls listen -k --starttls PROTO` on loopback (stdin
/dev/null: each client gets close_notify right after its handshake) for smtp, imap and
postgres. For each protocol, --runs (default 50) times and alternating the two tools, it
measures the wall time from starting the client to its exit, with stdin /dev/null:
  stls     stls connect --starttls PROTO localhost:PORT --cacert certs/ca.pem
  openssl  openssl s_client -starttls PROTO -connect 127.0.0.1:PORT -servername localhost
           -CAfile certs/ca.pem -verify_return_error
Both must exit 0. Medians and the stls/openssl ratio go to bench/results/starttls.json.
"""

import argparse
import json
import os
import statistics
import sys

from common import CERTS, ROOT, build, start_listener, timed





def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--binary")
    args = ap.parse_args()
    binary = args.binary or build()
    results = {"runs": args.runs, "cores": os.cpu_count(), "protocols": {}}
    for proto in ["smtp", "imap", "postgres"]:
        server, port = start_listener(binary, "--starttls", proto)
        try:
            stls_cmd = [binary, "connect", f"localhost:{port}", "--starttls", proto,
                        "--cacert", os.path.join(CERTS, "ca.pem")]
            openssl_cmd = ["openssl", "s_client", "-starttls", proto,
                           "-connect", f"127.0.0.1:{port}", "-servername", "localhost",
                           "-CAfile", os.path.join(CERTS, "ca.pem"), "-verify_return_error"]
            times = {"stls": [], "openssl": []}
            for _ in range(args.runs):
                times["stls"].append(timed(stls_cmd)[0])
                times["openssl"].append(timed(openssl_cmd)[0])
        finally:
            server.terminate()
            server.wait()
        med = {k: statistics.median(v) * 1000 for k, v in times.items()}
        ratio = med["stls"] / med["openssl"]
        results["protocols"][proto] = {"stls_ms": round(med["stls"], 2),
                                       "openssl_ms": round(med["openssl"], 2),
                                       "ratio": round(ratio, 2)}
        print(f"{proto:9} stls {med['stls']:6.2f} ms  openssl {med['openssl']:6.2f} ms  "
              f"ratio {ratio:.2f}", flush=True)
    out = os.path.join(ROOT, "bench", "results", "starttls.json")
    with open(out, "w") as f:
        json.dump(results, f, indent=2)
        f.write("\n")
    print(f"written to {out}")
    worst = max(p["ratio"] for p in results["protocols"].values())
    return 0 if worst <= 0.5 else 1


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Bulk throughput through a local proxy: stls (TLS through the proxy) beside the same proxy
relaying plain TCP, in one run.

    python3 bench/proxy.py [--mib N] [--runs N] [--binary PATH]

Builds stls (release) and starts microsocks (SOCKS5) and tinyproxy (HTTP CONNECT) on
loopback. For each proxy, --runs (default 3) times and alternating, it sends --mib (default
1024) MiB of pseudo-random data from a file:
  stls   stls connect --send-only --proxy URL localhost:PORT < data
         into stls listen --no-shutdown > /dev/null
  plain  ncat --proxy HOST:PORT --proxy-type socks5|http --send-only 127.0.0.1 PORT < data
         into socat -u TCP-LISTEN:PORT STDOUT > /dev/null
and reports the median MB/s of each and stls's share of the plain relay's. A run whose server
did not receive every byte is refused. Results: bench/results/proxy.json.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from common import CERTS, ROOT, build, free_port, wait_port





def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mib", type=int, default=1024)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--binary")
    args = ap.parse_args()
    binary = args.binary or build()
    size = args.mib << 20
    results = {"mib": args.mib, "runs": args.runs, "cores": os.cpu_count(), "proxies": {}}
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "data")
        with open(data, "wb") as f:
            block = os.urandom(1 << 20)
            for _ in range(args.mib):
                f.write(block)
        socks, http = free_port(), free_port()
        conf = os.path.join(tmp, "tinyproxy.conf")
        with open(conf, "w") as f:
            f.write(f"Port {http}\nListen 127.0.0.1\nTimeout 600\nLogLevel Error\n")
        proxies = [
            subprocess.Popen(["microsocks", "-i", "127.0.0.1", "-p", str(socks)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
            subprocess.Popen(["tinyproxy", "-d", "-c", conf],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
        ]
        wait_port(socks)
        wait_port(http)
        try:
            for name, url, kind, port in [("microsocks", f"socks5h://127.0.0.1:{socks}",
                                           "socks5", socks),
                                          ("tinyproxy", f"http://127.0.0.1:{http}", "http",
                                           http)]:
                speeds = {"stls": [], "plain": []}
                for _ in range(args.runs):
                    # stls through the proxy.
                    p = free_port()
                    sink = subprocess.Popen(
                        # --no-shutdown: these proxies end both directions at the first end
                        # of stream, so the server's side stays open until the client's ends.
                        [binary, "listen", f"127.0.0.1:{p}", "--no-shutdown",
                         "--cert", os.path.join(CERTS, "server.pem"),
                         "--key", os.path.join(CERTS, "server.key")],
                        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                        stderr=subprocess.DEVNULL)
                    wait_port(p)
                    with open(data, "rb") as inp:
                        wall = run_once_stdin(
                            [binary, "connect", f"localhost:{p}", "--send-only", "--proxy",
                             url, "--cacert", os.path.join(CERTS, "ca.pem")], inp, sink, size)
                    speeds["stls"].append(size / wall / 1e6)
                    # Plain TCP through the same proxy.
                    p = free_port()
                    sink = subprocess.Popen(["socat", "-u", f"TCP-LISTEN:{p},bind=127.0.0.1",
                                             "STDOUT"],
                                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                            stderr=subprocess.DEVNULL)
                    wait_port(p)
                    with open(data, "rb") as inp:
                        wall = run_once_stdin(
                            ["ncat", "--proxy", f"127.0.0.1:{port}", "--proxy-type", kind,
                             "--send-only", "127.0.0.1", str(p)], inp, sink, size)
                    speeds["plain"].append(size / wall / 1e6)
                med = {k: statistics.median(v) for k, v in speeds.items()}
                share = med["stls"] / med["plain"]
                results["proxies"][name] = {"stls_mb_s": round(med["stls"]),
                                            "plain_mb_s": round(med["plain"]),
                                            "stls_share": round(share, 2)}
                print(f"{name:10} stls {med['stls']:6.0f} MB/s  plain TCP {med['plain']:6.0f} "
                      f"MB/s  stls/plain {share:.2f}", flush=True)
        finally:
            for p in proxies:
                p.terminate()
                p.wait()
    out = os.path.join(ROOT, "bench", "results", "proxy.json")
    with open(out, "w") as f:
        json.dump(results, f, indent=2)
        f.write("\n")
    print(f"written to {out}")
    return 0 if min(p["stls_share"] for p in results["proxies"].values()) >= 0.9 else 1


def run_once_stdin(sender, inp, sink, size):
    """Run the sender with stdin from `inp`; wall seconds until the sink has every byte."""
    start = time.monotonic()
    proc = subprocess.Popen(sender, stdin=inp, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    got = 0
    while True:
        chunk = sink.stdout.read(1 << 20)
        if not chunk:
            break
        got += len(chunk)
    wall = time.monotonic() - start
    sink.wait()
    proc.wait()
    if got != size:
        raise SystemExit(f"{sender[0]}: the sink got {got} of {size} bytes (exit "
                         f"{proc.returncode}): {proc.stderr.read().decode()[-300:]}")
    return wall


if __name__ == "__main__":
    sys.exit(main())

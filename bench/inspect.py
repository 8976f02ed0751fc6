#!/usr/bin/env python3
"""How fast does `stls inspect` check many servers, beside the way people do it today?

    python3 bench/inspect.py [--targets N] [--listeners N] [--binary PATH]

Builds stls (release) and starts --listeners (default 4) `stls listen -k` processes on loopback
serving certs/server.pem. A list of --targets (default 1000) `localhost:PORT` lines spread over
them is then checked, in one run:
  stls --json          `stls inspect --json --cacert certs/ca.pem --targets LIST` (--parallel 32)
  stls --parallel 1    the same, one target at a time
  stls --parallel 256  the same, 256 at once; its peak RSS is reported
  openssl loop         `echo | openssl s_client -connect T -servername localhost
                        | openssl x509 -noout -enddate -fingerprint` for each line, in sh
Needs GNU time (/usr/bin/time) for the peak RSS. Each run must report every target (verified, for stls; a fingerprint line, for openssl), or the
benchmark fails rather than report it. Results: bench/results/inspect.json.
"""

import argparse
import json
import os
import sys
import tempfile

from common import ROOT, build, start_listener, timed




def stls_run(binary, listfile, parallel, tmp):
    """Peak RSS comes from GNU time: a child's own ru_maxrss would count the memory of this
    Python process, which the child shares between fork and exec."""
    rss_file = os.path.join(tmp, "rss")
    cmd = ["/usr/bin/time", "-f", "%M", "-o", rss_file,
           binary, "inspect", "--json", "--cacert", os.path.join(ROOT, "certs", "ca.pem"),
           "--parallel", str(parallel), "--targets", listfile]
    wall, out, err, code = timed(cmd, must_succeed=False)
    lines = [json.loads(line) for line in out.splitlines()]
    with open(rss_file) as f:
        rss = int(f.read().split()[-1])
    return wall, lines, err, code, rss


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--targets", type=int, default=1000)
    ap.add_argument("--listeners", type=int, default=4)
    ap.add_argument("--binary")
    args = ap.parse_args()
    if not os.path.exists("/usr/bin/time"):
        raise SystemExit("needs GNU time for peak RSS: apt-get install time")
    binary = args.binary or build()
    listeners = [
        start_listener(binary, "--recv-only", "--max-handshakes", "1024")
        for _ in range(args.listeners)
    ]
    results = {"targets": args.targets, "listeners": args.listeners, "cores": os.cpu_count()}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            listfile = os.path.join(tmp, "hosts.txt")
            ports = [p for _, p in listeners]
            with open(listfile, "w") as f:
                for i in range(args.targets):
                    f.write(f"localhost:{ports[i % len(ports)]}\n")

            for name, parallel in [("stls", 32), ("stls_parallel_1", 1), ("stls_parallel_256", 256)]:
                wall, lines, err, code, rss = stls_run(binary, listfile, parallel, tmp)
                ok = sum(1 for v in lines if v["ok"] and v["verified"])
                if code != 0 or ok != args.targets:
                    raise SystemExit(f"{name}: exit {code}, {ok}/{args.targets} verified\n{err}")
                results[name] = {"wall_s": round(wall, 3), "peak_rss_kib": rss,
                                 "per_target_ms": round(wall * 1000 / args.targets, 3)}
                print(f"{name:20} {wall:8.2f} s  {rss / 1024:6.1f} MiB peak RSS", flush=True)

            loop = ('while read t; do echo | openssl s_client -connect "$t" -servername localhost '
                    '2>/dev/null | openssl x509 -noout -enddate -fingerprint -sha256; done < "$1"')
            wall, out, err, code = timed(["sh", "-c", loop, "sh", listfile], must_succeed=False)
            got = out.count("sha256 Fingerprint=")
            if got != args.targets:
                raise SystemExit(f"openssl loop: {got}/{args.targets} fingerprints\n{err[-2000:]}")
            results["openssl_loop"] = {"wall_s": round(wall, 3),
                                       "per_target_ms": round(wall * 1000 / args.targets, 3)}
            print(f"{'openssl loop':20} {wall:8.2f} s", flush=True)
    finally:
        for proc, _ in listeners:
            proc.terminate()
            proc.wait()

    base = results["stls"]["wall_s"]
    results["ratios"] = {
        "openssl_loop_over_stls": round(results["openssl_loop"]["wall_s"] / base, 1),
        "parallel_1_over_default": round(results["stls_parallel_1"]["wall_s"] / base, 1),
    }
    print(json.dumps(results["ratios"]))
    out = os.path.join(ROOT, "bench", "results", "inspect.json")
    with open(out, "w") as f:
        json.dump(results, f, indent=2)
        f.write("\n")
    print(f"written to {out}")
    rss = results["stls_parallel_256"]["peak_rss_kib"] / 1024
    if rss > 32:
        print(f"peak RSS at --parallel 256 is {rss:.1f} MiB, over the 32 MiB goal", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

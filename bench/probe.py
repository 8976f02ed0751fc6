#!/usr/bin/env python3
"""How fast does `stls inspect --probe all` tell what many servers accept, beside sslscan and
testssl.sh asking the same of each?

    python3 bench/probe.py [--targets N] [--binary PATH] [--quick]

Builds stls (release) and starts servers on loopback: `stls listen -k` processes (TLS 1.3 and
1.2, post-quantum) serving certs/server.pem, and `openssl s_server` ones set up as a TLS 1.2
only server and a legacy TLS 1.0 server (`-tls1 -cipher DEFAULT@SECLEVEL=0`). A list of
--targets (default 100) `localhost:PORT` lines spread over them is then asked, in one run:
  stls                 `stls inspect --probe all --json --targets LIST` (--parallel 64; its
                       peak RSS is reported, goal 32 MiB)
  sslscan              `sslscan --xml=- T` for each line, one after the other
  testssl.sh --fast    `testssl --fast --jsonfile F -p -e -f T` for each line
Each tool's findings are checked against stls's for the same target: the accepted versions
(tests/probe.rs compares suites, groups and ALPN as well). A tool that is not
installed is skipped with a line saying so. testssl.sh takes over a minute a target, so by
default it asks 4 targets (--testssl-sample; one of each server) and the total is scaled;
--sslscan-sample does the same for sslscan. --quick: 8 targets, testssl on 2 of them (a smoke
run; the results file is not written).
Needs GNU time (/usr/bin/time) for the peak RSS. Results: bench/results/probe.json.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

from common import CERTS, ROOT, build, free_port, start_listener, timed, wait_port

VERSIONS = {("ssl", "3"): "SSLv3", ("tls", "1.0"): "TLSv1.0", ("tls", "1.1"): "TLSv1.1",
            ("tls", "1.2"): "TLSv1.2", ("tls", "1.3"): "TLSv1.3"}
TESTSSL_VERSIONS = {"SSLv3": "SSLv3", "TLS1": "TLSv1.0", "TLS1_1": "TLSv1.1",
                    "TLS1_2": "TLSv1.2", "TLS1_3": "TLSv1.3"}


def s_server(*flags):
    port = free_port()
    proc = subprocess.Popen(
        ["openssl", "s_server", "-nbio", "-quiet", "-accept", f"127.0.0.1:{port}",
         "-cert", os.path.join(CERTS, "server.pem"), "-key", os.path.join(CERTS, "server.key"),
         *flags],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)
    return proc, port


def stls_run(binary, listfile, tmp):
    rss_file = os.path.join(tmp, "rss")
    cmd = ["/usr/bin/time", "-f", "%M", "-o", rss_file, binary, "inspect", "--json",
           "--insecure", "--probe", "all", "--parallel", "64", "--targets", listfile]
    wall, out, err, _ = timed(cmd, must_succeed=False)
    lines = [json.loads(line) for line in out.splitlines()]
    # A target listed twice is the same server, with the same findings.
    found = {v["target"]: v["probe"] for v in lines}
    with open(rss_file) as f:
        rss = int(f.read().split()[-1])
    return wall, len(lines), found, err, rss


def sslscan_versions(xml):
    got = set()
    for kind, version, enabled in re.findall(
            r'<protocol type="(\w+)" version="([\d.]+)" enabled="(\d)"', xml):
        if enabled == "1" and (kind, version) in VERSIONS:
            got.add(VERSIONS[(kind, version)])
    return got


def scaled(name, total, asked, targets):
    """A tool's wall time over `asked` targets, scaled to all `targets` when only some were
    asked; printed, and returned as its results entry."""
    total = total * targets / asked
    note = f" (scaled from {asked} targets)" if asked < targets else ""
    print(f"{name:20} {total:8.2f} s{note}", flush=True)
    return {"wall_s": round(total, 3), "asked": asked,
            "per_target_ms": round(total * 1000 / targets, 3)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--targets", type=int, default=100)
    ap.add_argument("--binary")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--sslscan-sample", type=int, default=0,
                    help="ask sslscan only this many targets, and scale (0: all)")
    ap.add_argument("--testssl-sample", type=int, default=4,
                    help="ask testssl.sh only this many targets, and scale (0: all)")
    args = ap.parse_args()
    if args.quick:
        args.targets = 8
    if not os.path.exists("/usr/bin/time"):
        raise SystemExit("needs GNU time for peak RSS: apt-get install time")
    binary = args.binary or build()
    servers = [start_listener(binary, "--recv-only", "--max-handshakes", "1024")
               for _ in range(2)]
    servers += [s_server("-tls1_2"), s_server("-tls1", "-cipher", "DEFAULT@SECLEVEL=0")]
    results = {"targets": args.targets, "cores": os.cpu_count()}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            listfile = os.path.join(tmp, "hosts.txt")
            targets = [f"localhost:{servers[i % len(servers)][1]}" for i in range(args.targets)]
            with open(listfile, "w") as f:
                f.write("".join(t + "\n" for t in targets))

            wall, count, found, err, rss = stls_run(binary, listfile, tmp)
            if count != args.targets or any(p["errors"] for p in found.values()):
                raise SystemExit(f"stls: {count}/{args.targets} targets, or probes "
                                 f"failed\n{err[-2000:]}")
            results["stls"] = {"wall_s": round(wall, 3), "peak_rss_kib": rss,
                               "per_target_ms": round(wall * 1000 / args.targets, 3)}
            print(f"{'stls --probe all':20} {wall:8.2f} s  {rss / 1024:6.1f} MiB peak RSS",
                  flush=True)

            if shutil.which("sslscan"):
                total = 0.0
                # One of each server first: a sample still meets every kind.
                sample = args.sslscan_sample or len(targets)
                asked_ssl = targets[:sample]
                for t in asked_ssl:
                    w, xml, e, _ = timed(["sslscan", "--xml=-", "--no-colour", t])
                    total += w
                    mine = found[t]
                    if sslscan_versions(xml) != set(mine["versions"]):
                        raise SystemExit(f"sslscan: {t}: versions {sslscan_versions(xml)} "
                                         f"vs stls {mine['versions']}")
                results["sslscan"] = scaled("sslscan", total, len(asked_ssl), args.targets)
            else:
                print("SKIP: sslscan is not installed")

            testssl = shutil.which("testssl") or shutil.which("testssl.sh")
            if testssl:
                asked = targets[:2] if args.quick else targets[:args.testssl_sample or len(targets)]
                total = 0.0
                for i, t in enumerate(asked):
                    jf = os.path.join(tmp, f"t{i}.json")
                    w, _, e, _ = timed([testssl, "--fast", "--quiet", "--color", "0",
                                        "--warnings", "off", "--ip", "one", "--jsonfile", jf,
                                        "-p", "-e", "-f", t], must_succeed=False)
                    total += w
                    with open(jf) as f:
                        items = json.load(f)
                    got = {TESTSSL_VERSIONS[x["id"]] for x in items
                           if x["id"] in TESTSSL_VERSIONS and x["finding"].startswith("offered")}
                    if got != set(found[t]["versions"]):
                        raise SystemExit(f"testssl: {t}: versions {got} vs stls "
                                         f"{found[t]['versions']}")
                results["testssl_fast"] = scaled("testssl.sh --fast", total, len(asked),
                                                 args.targets)
            else:
                print("SKIP: testssl is not installed")
    finally:
        for proc, _ in servers:
            proc.terminate()
            proc.wait()

    base = results["stls"]["wall_s"]
    results["ratios"] = {f"{k}_over_stls": round(results[k]["wall_s"] / base, 1)
                         for k in ("sslscan", "testssl_fast") if k in results}
    print(json.dumps(results["ratios"]))
    if args.quick:
        return 0
    out = os.path.join(ROOT, "bench", "results", "probe.json")
    with open(out, "w") as f:
        json.dump(results, f, indent=2)
        f.write("\n")
    print(f"written to {out}")
    if rss / 1024 > 32:
        print(f"peak RSS at --parallel 64 is {rss / 1024:.1f} MiB, over the 32 MiB goal",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""stls listen --to beside haproxy as TLS terminators, with the same client for both, in one run.

    python3 bench/scaleout.py [--seconds N] [--resumed N] [--rounds N] [--binary PATH]

Both terminate TLS 1.3 with the demo certificate (ECDSA P-256) in front of the same plain
backend, on one thread each (`--threads 1`, `nbthread 1`), and the client is the same for both:
  full       `openssl s_time -new` for --seconds (default 5): full handshakes with X25519 (the
             client offers nothing post-quantum, which haproxy could not take); the
             terminator's CPU time per handshake. Also measured: the floor, bench/floor (a
             server that is only rustls and mio, with stls's defaults, and does nothing but
             the handshake), to tell what stls spends beyond rustls itself.
  resumed    --resumed (default 1000) handshakes by a Python client, each resuming with the
             ticket the one before it got (TLS 1.3); the terminator's CPU per handshake, and
             how many were resumed.
  replicas   three `stls listen --ticket-keys K` behind haproxy (mode tcp, round robin): a
             client resumes, over --resumed / 10 connections, the session it got from one of
             them; the share of handshakes resumed (another replica each time: the shared keys).
  passthrough  --mib (default 1024) MiB through `stls listen --passthrough NAME=BACKEND` beside
             haproxy `mode tcp` (the TLS ends are a `stls connect --send-only` and a `stls
             listen --recv-only` behind): MB/s, and the relay's CPU seconds per GiB.
Each is measured --rounds times (default 5), alternating the terminators; medians are kept.
Results: bench/results/scaleout.json, with ratios to haproxy.
"""

import argparse
import json
import os
import re
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time

from common import CERTS, ROOT, build, free_port, wait_port

CERT = os.path.join(CERTS, "server.pem")
KEY = os.path.join(CERTS, "server.key")
CA = os.path.join(CERTS, "ca.pem")


def cpu(pid):
    """CPU seconds of a process, all its threads: the scheduler's own count, in ns
    (/proc/PID/task/*/schedstat), not the clock ticks of /proc/PID/stat (10 ms each)."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                total += int(f.read().split()[0])
        except FileNotFoundError:
            pass
    return total / 1e9


def backend():
    """A plain backend that takes and discards whatever comes (socat, a process each)."""
    port = free_port()
    proc = subprocess.Popen(["socat", f"TCP-LISTEN:{port},bind=127.0.0.1,fork,reuseaddr",
                             "OPEN:/dev/null"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    wait_port(port)
    return port, proc


def haproxy_cfg(tmp, port, frontend, servers):
    cfg = os.path.join(tmp, f"haproxy-{port}.cfg")
    with open(cfg, "w") as f:
        f.write("global\n maxconn 9800\n nbthread 1\ndefaults\n mode tcp\n timeout connect 5s\n"
                " timeout client 60s\n timeout server 60s\n"
                f"frontend f\n bind 127.0.0.1:{port}{frontend}\n default_backend b\n"
                "backend b\n balance roundrobin\n")
        for i, s in enumerate(servers):
            f.write(f" server s{i} 127.0.0.1:{s}\n")
    return cfg


def start(cmd, port):
    env = dict(os.environ)
    # A backtrace captured per error would be measured, not the handshake.
    env.pop("RUST_BACKTRACE", None)
    env.pop("RUST_LIB_BACKTRACE", None)
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=env)
    wait_port(port)
    time.sleep(0.2)
    return proc


def build_floor():
    """Build bench/floor (release, beside stls's build); its path."""
    subprocess.run(["cargo", "build", "--release", "--locked", "-q", "--manifest-path",
                    os.path.join(ROOT, "bench", "floor", "Cargo.toml"), "--target-dir",
                    os.path.join(ROOT, "target")], check=True)
    return os.path.join(ROOT, "target", "release", "stls-floor")


def terminator(name, binary, tmp, back, combined):
    port = free_port()
    if name == "stls":
        cmd = [binary, "listen", f"127.0.0.1:{port}", "--to", f"127.0.0.1:{back}",
               "--cert", CERT, "--key", KEY, "--threads", "1"]
    elif name == "floor":
        cmd = [binary, f"127.0.0.1:{port}", CERT, KEY]
    else:
        cmd = ["haproxy", "-db", "-f", haproxy_cfg(tmp, port, f" ssl crt {combined}", [back])]
    return start(cmd, port), port


def full(port, seconds):
    """openssl s_time -new: how many full handshakes were made."""
    out = subprocess.run(["openssl", "s_time", "-connect", f"127.0.0.1:{port}", "-new",
                          "-time", str(seconds)], capture_output=True, text=True).stdout
    found = re.search(r"(\d+) connections in [\d.]+s", out)
    if not found:
        raise SystemExit(f"s_time: {out[-300:]}")
    return int(found.group(1))


def client_context():
    ctx = ssl.create_default_context(cafile=CA)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    return ctx


def handshake(ctx, port, session=None, name="localhost"):
    """One TLS 1.3 handshake; the session to resume from later (its tickets read), and
    whether this one was resumed."""
    with socket.create_connection(("127.0.0.1", port)) as raw:
        with ctx.wrap_socket(raw, server_hostname=name, session=session) as tls:
            reused = tls.session_reused
            # The tickets come after the handshake: read them (nothing else comes).
            tls.setblocking(False)
            for _ in range(50):
                try:
                    tls.recv(1)
                except ssl.SSLWantReadError:
                    # A new ticket: not the one this connection resumed with.
                    new = tls.session
                    if new is not None and new.has_ticket and (session is None or new != session):
                        break
                    time.sleep(0.001)
                except (ssl.SSLError, OSError):
                    break
            return tls.session, reused


def resumed(port, count):
    """count handshakes, each resuming with the ticket the one before it got, as a client
    does (a server may take each ticket once)."""
    ctx = client_context()
    session, _ = handshake(ctx, port)
    hits = 0
    for _ in range(count):
        session, reused = handshake(ctx, port, session)
        hits += reused
    return hits


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--resumed", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--mib", type=int, default=1024)
    ap.add_argument("--binary")
    args = ap.parse_args()
    for prog in ["openssl", "haproxy", "socat"]:
        if subprocess.run(["sh", "-c", f"command -v {prog}"], capture_output=True).returncode:
            raise SystemExit(f"{prog} is not installed")
    binary = args.binary or build()
    floor = build_floor()
    back, back_proc = backend()
    samples = {"stls": {"full": [], "resumed": []}, "haproxy": {"full": [], "resumed": []},
               "floor": {"full": []}}
    resumed_share = {}
    with tempfile.TemporaryDirectory() as tmp:
        combined = os.path.join(tmp, "combined.pem")
        with open(combined, "w") as f:
            f.write(open(CERT).read() + open(KEY).read())
        for _ in range(args.rounds):
            for name in ["stls", "haproxy", "floor"]:
                proc, port = terminator(name, floor if name == "floor" else binary, tmp, back,
                                        combined)
                before = cpu(proc.pid)
                n = full(port, args.seconds)
                time.sleep(0.3)
                samples[name]["full"].append((cpu(proc.pid) - before) * 1000 / n)
                if name == "floor":
                    proc.terminate()
                    proc.wait()
                    print(f"{name:8} full {samples[name]['full'][-1]:.3f} ms/handshake",
                          flush=True)
                    continue
                before = cpu(proc.pid)
                hits = resumed(port, args.resumed)
                time.sleep(0.3)
                samples[name]["resumed"].append((cpu(proc.pid) - before) * 1000
                                                / (args.resumed + 1))
                resumed_share[name] = hits / args.resumed
                proc.terminate()
                proc.wait()
                print(f"{name:8} full {samples[name]['full'][-1]:.3f} ms/handshake  resumed "
                      f"{samples[name]['resumed'][-1]:.3f} ms/handshake "
                      f"({hits}/{args.resumed} resumed)", flush=True)
        # Three replicas sharing ticket keys behind haproxy.
        keys = os.path.join(tmp, "ticket.keys")
        with open(keys, "w") as f:
            f.write(os.urandom(32).hex() + "\n")
        os.chmod(keys, 0o600)
        replicas, ports = [], []
        for _ in range(3):
            port = free_port()
            replicas.append(start([binary, "listen", f"127.0.0.1:{port}", "--to",
                                   f"127.0.0.1:{back}", "--cert", CERT, "--key", KEY,
                                   "--threads", "1", "--ticket-keys", keys], port))
            ports.append(port)
        front = free_port()
        lb = start(["haproxy", "-db", "-f", haproxy_cfg(tmp, front, "", ports)], front)
        count = max(10, args.resumed // 10)
        hits = resumed(front, count)
        lb.terminate()
        for r in replicas:
            r.terminate()
        for p in [lb, *replicas]:
            p.wait()
        # Passthrough: a raw relay picked by the SNI, against haproxy's plain TCP relay.
        data = os.path.join(tmp, "data")
        with open(data, "wb") as f:
            block = os.urandom(1 << 20)
            for _ in range(args.mib):
                f.write(block)
        relayed = {"stls": [], "haproxy": []}
        for _ in range(args.rounds):
            for name in ["stls", "haproxy"]:
                sink = free_port()
                end = start([binary, "listen", f"127.0.0.1:{sink}", "--recv-only", "--cert", CERT,
                             "--key", KEY], sink)
                port = free_port()
                if name == "stls":
                    cmd = [binary, "listen", f"127.0.0.1:{port}", "--passthrough",
                           f"localhost=127.0.0.1:{sink}"]
                else:
                    cmd = ["haproxy", "-db", "-f", haproxy_cfg(tmp, port, "", [sink])]
                relay = start(cmd, port)
                before = cpu(relay.pid)
                began = time.monotonic()
                with open(data, "rb") as inp:
                    sent = subprocess.run([binary, "connect", f"localhost:{port}", "--send-only",
                                           "--cacert", CA], stdin=inp, capture_output=True)
                wall = time.monotonic() - began
                time.sleep(0.3)
                spent = cpu(relay.pid) - before
                for p in [relay, end]:
                    p.terminate()
                    p.wait()
                if sent.returncode != 0:
                    raise SystemExit(f"{name}: sender exit {sent.returncode}: {sent.stderr[-300:]}")
                relayed[name].append((args.mib * 1.048576 / wall, spent * 1024 / args.mib))
                print(f"{name:8} passthrough {relayed[name][-1][0]:.0f} MB/s  "
                      f"{relayed[name][-1][1]:.2f} CPU s/GiB", flush=True)
    back_proc.terminate()
    passthrough = {n: {"mb_per_s": round(statistics.median(x[0] for x in v), 1),
                       "cpu_s_per_gib": round(statistics.median(x[1] for x in v), 3)}
                   for n, v in relayed.items()}
    med = {n: {k: round(statistics.median(v), 4) for k, v in s.items()}
           for n, s in samples.items()}
    results = {
        "rounds": args.rounds,
        "ms_per_handshake": med,
        "resumed_share": resumed_share,
        "ratios_to_haproxy": {
            "cpu_per_full_handshake": round(med["stls"]["full"] / med["haproxy"]["full"], 3),
            "cpu_per_resumed_handshake": round(med["stls"]["resumed"]
                                               / med["haproxy"]["resumed"], 3),
            "floor_cpu_per_full_handshake": round(med["floor"]["full"]
                                                  / med["haproxy"]["full"], 3),
        },
        "stls_to_floor_cpu_per_full_handshake": round(med["stls"]["full"]
                                                      / med["floor"]["full"], 3),
        "cross_replica_resumption": {"connections": count, "resumed": hits,
                                     "rate": round(hits / count, 3)},
        "passthrough": passthrough,
    }
    results["ratios_to_haproxy"]["passthrough_mb_per_s"] = round(
        passthrough["stls"]["mb_per_s"] / passthrough["haproxy"]["mb_per_s"], 3)
    results["ratios_to_haproxy"]["passthrough_cpu_per_gib"] = round(
        passthrough["stls"]["cpu_s_per_gib"] / passthrough["haproxy"]["cpu_s_per_gib"], 3)
    print(json.dumps(results, indent=2))
    out = os.path.join(ROOT, "bench", "results", "scaleout.json")
    with open(out, "w") as f:
        json.dump(results, f, indent=2)
        f.write("\n")
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

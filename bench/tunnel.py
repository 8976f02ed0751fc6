#!/usr/bin/env python3
"""TLS termination in front of a plain backend: stls listen --to beside haproxy, stunnel4 and
socat OPENSSL-LISTEN,fork, in one run; and stls as a production sidecar runs it, observed.

    python3 bench/tunnel.py [--handshakes N] [--mib N] [--idle N] [--binary PATH] [--out PATH]

The terminators: stls; stls-observed, the same stls with `--status` on a port of its own,
its /metrics scraped every second by a thread of this script for as long as it runs (as
Prometheus would), and `--log-format json` with stderr appended to a file (one JSON line per
connection); haproxy; stunnel4; socat. Each listens on loopback with certs/server.pem and
relays to the same backend (an asyncio server here that reads and discards, holding each
connection until its peer closes).
For each, in turn:
  handshakes  --handshakes (default 2000) full TLS 1.3 handshakes, no resumption, made by
              `stls inspect --no-resume --parallel 16`; the terminator's CPU time per handshake
              (its threads and its forked children, from /proc)
  bulk        --mib (default 1024) MiB sent through it by `stls connect --send-only`; the
              terminator's CPU seconds per GiB
  idle        --idle (default 9000: each costs the terminator two descriptors, and this
              machine's hard limit is 20,000) TLS connections opened and held (socat: a tenth,
              since it forks a process for each); the terminator's resident memory per
              connection (VmRSS of it and its children, after the connections are up, minus
              before), and that times 10,000
Results: bench/results/tunnel.json (or --out), ratios to haproxy, and stls-observed against
plain stls (the goal: memory per idle tunnel and CPU per handshake within 5%, and still at most
0.5x haproxy's memory per idle connection).
"""

import argparse
import asyncio
import json
import os
import resource
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

from common import CERTS, ROOT, build, free_port, wait_port
TICK = os.sysconf("SC_CLK_TCK")





def tree(pid):
    """pid and its descendants."""
    pids, queue = [], [pid]
    while queue:
        p = queue.pop()
        pids.append(p)
        try:
            with open(f"/proc/{p}/task/{p}/children") as f:
                queue.extend(int(c) for c in f.read().split())
        except OSError:
            pass
    return pids


def cpu(pid):
    """CPU seconds of pid (all threads) and its reaped and live children."""
    total = 0
    for p in tree(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(x) for x in fields[11:15 if p == pid else 13])
    return total / TICK


def rss_kib(pid):
    total = 0
    for p in tree(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def backend(port, ready):
    """Accept, read and discard, hold until the peer closes."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    async def handle(reader, writer):
        try:
            while await reader.read(1 << 16):
                pass
        except ConnectionError:
            pass
        writer.close()

    async def main():
        server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=4096)
        ready.set()
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def hold(port, count):
    """Open `count` TLS connections and keep them; returns them."""
    ctx = ssl.create_default_context(cafile=os.path.join(CERTS, "ca.pem"))
    conns = []
    for _ in range(count):
        s = socket.create_connection(("127.0.0.1", port))
        conns.append(ctx.wrap_socket(s, server_hostname="localhost"))
    return conns


class Scraper(threading.Thread):
    """GET /metrics on `port` every second until stopped; counts scrapes and failures."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.url = f"http://127.0.0.1:{port}/metrics"
        self.stopping = threading.Event()
        self.scrapes = self.failures = 0

    def run(self):
        while not self.stopping.wait(1.0):
            try:
                with urllib.request.urlopen(self.url, timeout=5) as r:
                    r.read()
                    self.scrapes += 1
            except OSError:
                self.failures += 1

    def stop(self):
        self.stopping.set()
        self.join()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--handshakes", type=int, default=2000)
    ap.add_argument("--mib", type=int, default=1024)
    # Each idle connection costs the terminator two descriptors; 9,000 fits under a hard limit
    # of 20,000 (this machine's).
    ap.add_argument("--idle", type=int, default=9000)
    ap.add_argument("--binary")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "tunnel.json"))
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    binary = args.binary or build()
    cert, key, ca = (os.path.join(CERTS, n) for n in ("server.pem", "server.key", "ca.pem"))
    back = free_port()
    # The backend in a process of its own: it holds as many descriptors as the clients.
    import multiprocessing
    ready = multiprocessing.Event()
    server = multiprocessing.Process(target=backend, args=(back, ready), daemon=True)
    server.start()
    ready.wait()
    results = {"handshakes": args.handshakes, "mib": args.mib, "idle": args.idle,
               "cores": os.cpu_count(), "tools": {}}
    with tempfile.TemporaryDirectory() as tmp:
        combined = os.path.join(tmp, "combined.pem")
        with open(combined, "w") as f:
            f.write(open(cert).read() + open(key).read())
        data = os.path.join(tmp, "data")
        with open(data, "wb") as f:
            block = os.urandom(1 << 20)
            for _ in range(args.mib):
                f.write(block)

        def start(name, port):
            """The terminator on `port`: its process, and for stls-observed its scraper
            (else None)."""
            scraper, log = None, subprocess.DEVNULL
            if name.startswith("stls"):
                cmd = [binary, "listen", f"127.0.0.1:{port}", "--to", f"127.0.0.1:{back}",
                       "--cert", cert, "--key", key, "--max-conns", "30000",
                       "--max-handshakes", "30000"]
                if name == "stls-observed":
                    status = free_port()
                    cmd += ["--status", f"127.0.0.1:{status}", "--log-format", "json"]
                    log = open(os.path.join(tmp, f"stls-{port}.log"), "ab")
            elif name == "haproxy":
                cfg = os.path.join(tmp, "haproxy.cfg")
                with open(cfg, "w") as f:
                    f.write(f"global\n maxconn 9800\ndefaults\n mode tcp\n timeout connect 5s\n"
                            f" timeout client 600s\n timeout server 600s\nfrontend f\n"
                            f" bind 127.0.0.1:{port} ssl crt {combined}\n default_backend b\n"
                            f"backend b\n server s1 127.0.0.1:{back}\n")
                cmd = ["haproxy", "-db", "-f", cfg]
            elif name == "stunnel4":
                cfg = os.path.join(tmp, "stunnel.conf")
                with open(cfg, "w") as f:
                    f.write(f"foreground = yes\npid =\n[s]\naccept = 127.0.0.1:{port}\n"
                            f"connect = 127.0.0.1:{back}\ncert = {cert}\nkey = {key}\n")
                cmd = ["stunnel4", cfg]
            else:
                cmd = ["socat", f"OPENSSL-LISTEN:{port},bind=127.0.0.1,fork,reuseaddr,"
                       f"cert={cert},key={key},verify=0", f"TCP:127.0.0.1:{back}"]
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=log)
            wait_port(port)
            if log is not subprocess.DEVNULL:
                log.close()
                wait_port(status)
                scraper = Scraper(status)
                scraper.start()
            return proc, scraper

        for name in ["stls", "stls-observed", "haproxy", "stunnel4", "socat"]:
            r = {}
            # Handshakes.
            port = free_port()
            proc, scraper = start(name, port)
            targets = os.path.join(tmp, "targets")
            with open(targets, "w") as f:
                f.write(f"localhost:{port}\n" * args.handshakes)
            before = cpu(proc.pid)
            done = subprocess.run([binary, "inspect", "--json", "--no-resume", "--parallel", "16",
                                   "--cacert", ca, "--targets", targets], capture_output=True)
            time.sleep(0.5)
            spent = cpu(proc.pid) - before
            ok = done.stdout.count(b'"verified":true')
            if ok != args.handshakes:
                raise SystemExit(f"{name}: {ok} of {args.handshakes} handshakes verified")
            r["cpu_ms_per_handshake"] = round(spent * 1000 / args.handshakes, 3)
            # Bulk.
            before = cpu(proc.pid)
            with open(data, "rb") as inp:
                sent = subprocess.run([binary, "connect", f"localhost:{port}", "--send-only",
                                       "--cacert", ca], stdin=inp, capture_output=True)
            time.sleep(0.5)
            spent = cpu(proc.pid) - before
            if sent.returncode not in (0, 6):
                raise SystemExit(f"{name}: bulk sender exit {sent.returncode}: {sent.stderr}")
            r["cpu_s_per_gib"] = round(spent * 1024 / args.mib, 3)
            # Idle connections.
            count = args.idle if name != "socat" else max(1, args.idle // 10)
            base = rss_kib(proc.pid)
            conns = hold(port, count)
            time.sleep(1)
            grown = rss_kib(proc.pid) - base
            r["idle_connections"] = count
            r["rss_kib_per_idle_connection"] = round(grown / count, 2)
            r["rss_mib_for_10000"] = round(grown / count * 10000 / 1024, 1)
            for c in conns:
                c.close()
            if scraper:
                scraper.stop()
                r["scrapes"], r["scrape_failures"] = scraper.scrapes, scraper.failures
                with open(os.path.join(tmp, f"stls-{port}.log"), "rb") as f:
                    r["log_lines"] = sum(1 for _ in f)
            proc.terminate()
            proc.wait()
            results["tools"][name] = r
            print(f"{name:13} {r['cpu_ms_per_handshake']:7.3f} ms/handshake  "
                  f"{r['cpu_s_per_gib']:6.2f} CPU s/GiB  "
                  f"{r['rss_kib_per_idle_connection']:8.2f} KiB/idle connection", flush=True)
    h = results["tools"]["haproxy"]
    s = results["tools"]["stls"]
    o = results["tools"]["stls-observed"]

    def ratio(a, b, key):
        return round(a[key] / b[key], 2) if b[key] else None

    results["ratios_to_haproxy"] = {
        "cpu_per_handshake": ratio(s, h, "cpu_ms_per_handshake"),
        "cpu_per_gib": ratio(s, h, "cpu_s_per_gib"),
        "idle_memory": ratio(s, h, "rss_kib_per_idle_connection"),
        "observed_idle_memory": ratio(o, h, "rss_kib_per_idle_connection"),
    }
    # Observed against plain: the price of being scraped and of JSON logs.
    observed = {
        "cpu_per_handshake": ratio(o, s, "cpu_ms_per_handshake"),
        "cpu_per_gib": ratio(o, s, "cpu_s_per_gib"),
        "idle_memory": ratio(o, s, "rss_kib_per_idle_connection"),
    }
    within = [observed[k] for k in ("cpu_per_handshake", "idle_memory")]
    observed["within_5_percent"] = all(v is not None and v <= 1.05 for v in within)
    to_haproxy = results["ratios_to_haproxy"]["observed_idle_memory"]
    observed["idle_memory_at_most_half_haproxy"] = to_haproxy is not None and to_haproxy <= 0.5
    results["observed_to_plain_stls"] = observed
    print("ratios to haproxy:", json.dumps(results["ratios_to_haproxy"]))
    print("stls-observed / stls:", json.dumps(observed))
    out = args.out
    with open(out, "w") as f:
        json.dump(results, f, indent=2)
        f.write("\n")
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

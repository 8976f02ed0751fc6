#!/usr/bin/env python3
"""TLS termination in front of a plain backend: stls listen --to beside haproxy, stunnel4 and
socat OPENSSL-LISTEN,fork, in one run.

    python3 bench/tunnel.py [--handshakes N] [--mib N] [--idle N] [--binary PATH]

Each terminator listens on loopback with certs/server.pem and relays to the same backend (an
asyncio server here that reads and discards, holding each connection until its peer closes).
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
Results: bench/results/tunnel.json, and ratios to haproxy.
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
import time

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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--handshakes", type=int, default=2000)
    ap.add_argument("--mib", type=int, default=1024)
    # Each idle connection costs the terminator two descriptors; 9,000 fits under a hard limit
    # of 20,000 (this machine's).
    ap.add_argument("--idle", type=int, default=9000)
    ap.add_argument("--binary")
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
            if name == "stls":
                cmd = [binary, "listen", f"127.0.0.1:{port}", "--to", f"127.0.0.1:{back}",
                       "--cert", cert, "--key", key, "--max-conns", "30000",
                       "--max-handshakes", "30000"]
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
                                    stderr=subprocess.DEVNULL)
            wait_port(port)
            return proc

        for name in ["stls", "haproxy", "stunnel4", "socat"]:
            r = {}
            # Handshakes.
            port = free_port()
            proc = start(name, port)
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
            proc.terminate()
            proc.wait()
            results["tools"][name] = r
            print(f"{name:9} {r['cpu_ms_per_handshake']:7.3f} ms/handshake  "
                  f"{r['cpu_s_per_gib']:6.2f} CPU s/GiB  "
                  f"{r['rss_kib_per_idle_connection']:8.2f} KiB/idle connection", flush=True)
    h = results["tools"]["haproxy"]
    s = results["tools"]["stls"]
    results["ratios_to_haproxy"] = {
        "cpu_per_handshake": round(s["cpu_ms_per_handshake"] / h["cpu_ms_per_handshake"], 2),
        "cpu_per_gib": round(s["cpu_s_per_gib"] / h["cpu_s_per_gib"], 2),
        "idle_memory": round(s["rss_kib_per_idle_connection"]
                             / h["rss_kib_per_idle_connection"], 2),
    }
    print(json.dumps(results["ratios_to_haproxy"]))
    out = os.path.join(ROOT, "bench", "results", "tunnel.json")
    with open(out, "w") as f:
        json.dump(results, f, indent=2)
        f.write("\n")
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

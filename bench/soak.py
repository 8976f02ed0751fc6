#!/usr/bin/env python3
"""stls listen -k -c under hostile load for a while: do descriptors, memory and children come back?

    python3 bench/soak.py [--duration SECS] [--workers N] [--silent N] [--binary PATH]

Builds stls (release) and starts `stls listen -k -c CMD` on loopback, where CMD echoes (cat) or,
for one client in five, takes 100 bytes and exits early (head -c 100). Then, for --duration
seconds (default 600), --workers threads (default 64) each open connection after connection,
picking at random what the client does:
  clean      TLS, send a random payload, read the echo (checked byte for byte), close_notify
  reset      TLS, send part of a payload, then reset the connection (RST) mid-stream
  cut        TLS, send a payload, then close TCP without close_notify
  noread     TLS, send until the connection takes no more without reading the echo, hold, reset
  garbage    TCP, random bytes instead of a ClientHello, read until closed
  halfhello  TCP, half a ClientHello, then close
  silent     TCP, send nothing, hold for up to 8 s (past the handshake timeout), close
while --silent more threads (default 1000) keep that many silent TCP connections open at all
times (slowloris), each held for up to 20 s then replaced.

The listener's open descriptors (/proc/PID/fd), resident memory (VmRSS) and children (live and
zombie) are measured at start-up, after a warm-up (load, then quiet), regularly under load, and
after the load has stopped and the listener has settled. The run fails (exit 1) if descriptors
or children do not come back to where they were after the warm-up, if any zombie is left, if
resident memory grew by more than 10% (at least 2 MiB) over the warm-up's, if a clean client's
echo was wrong, or if stls died. Results go to bench/results/soak.json.
"""

import argparse
import json
import os
import random
import resource
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "results"

# One client in five (by port) gets a command that exits after 100 bytes: children that end
# before their connection does.
COMMAND = 'case $((STLS_PEER_PORT % 5)) in 0) exec head -c 100 ;; *) exec cat ;; esac'

SCENARIOS = [
    ("clean", 40),
    ("reset", 10),
    ("cut", 10),
    ("noread", 8),
    ("garbage", 12),
    ("halfhello", 10),
    ("silent", 10),
]


def client_hello_prefix():
    """A TLS record header and the start of a ClientHello, as a client would begin."""
    return bytes([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xFC, 0x03, 0x03]) + os.urandom(32)


def measure(pid):
    """Open descriptors, VmRSS (KiB), live children and zombie children of pid."""
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    rss = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
    live = zombies = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) != pid:
            continue
        if fields[0] == "Z":
            zombies += 1
        else:
            live += 1
    return {"fds": fds, "rss_kib": rss, "children": live, "zombies": zombies}


class Load:
    """Client threads and their tallies."""

    def __init__(self, port, workers, held):
        self.port = port
        self.workers = workers
        self.held = held
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.counts = {}
        self.wrong = []
        self.bugs = []
        # Where each thread's client is (connect, handshake, exchange), for the tallies.
        self.stage = threading.local()
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        self.ctx.check_hostname = False
        self.ctx.verify_mode = ssl.CERT_NONE
        self.threads = []

    def tally(self, what):
        with self.lock:
            self.counts[what] = self.counts.get(what, 0) + 1

    def start(self):
        self.stop.clear()
        self.counts = {}
        self.threads = [threading.Thread(target=self.worker, args=(i,), daemon=True) for i in range(self.workers)]
        self.threads += [threading.Thread(target=self.slowloris, daemon=True) for _ in range(self.held)]
        for t in self.threads:
            t.start()

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join(timeout=60)

    def tcp(self):
        return socket.create_connection(("127.0.0.1", self.port), timeout=10)

    def tls(self):
        raw = self.tcp()
        self.stage.stage = "handshake"
        s = self.ctx.wrap_socket(raw, server_hostname="localhost")
        self.stage.stage = "exchange"
        return s

    @staticmethod
    def abort(sock):
        """Close abortively: the peer gets a TCP reset."""
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        sock.close()

    def hold(self, seconds):
        self.stop.wait(seconds)

    def slowloris(self):
        rng = random.Random()
        while not self.stop.is_set():
            try:
                s = self.tcp()
            except OSError:
                self.tally("slowloris connect failed")
                self.hold(0.5)
                continue
            self.tally("slowloris")
            self.hold(rng.uniform(1, 20))
            s.close()

    def worker(self, seed):
        rng = random.Random(seed)
        names = [n for n, _ in SCENARIOS]
        weights = [w for _, w in SCENARIOS]
        local = self.stage
        while not self.stop.is_set():
            name = rng.choices(names, weights)[0]
            local.stage = "connect"
            try:
                getattr(self, name)(rng)
                self.tally(name)
            except (OSError, ssl.SSLError) as e:
                # Under a flood, a client may be let go while still in its handshake: counted,
                # not a failure. Only a wrong echo is.
                self.tally(f"{name}: {type(e).__name__} in {local.stage}")
            except Exception as e:  # a bug in this script: the run is not valid
                with self.lock:
                    self.bugs.append(f"{name}: {e!r}")
                return

    def clean(self, rng):
        # At least 100 bytes: head -c 100 then ends the stream by itself.
        data = rng.randbytes(rng.randint(100, 64 * 1024))
        with self.tls() as s:
            port = s.getsockname()[1]
            want = data[:100] if port % 5 == 0 else data
            s.sendall(data)
            got = bytearray()
            while len(got) < len(want):
                chunk = s.recv(65536)
                if not chunk:
                    break
                got += chunk
            if port % 5 == 0:
                # head exited: what follows is close_notify.
                while chunk := s.recv(65536):
                    got += chunk
            if bytes(got) != want:
                with self.lock:
                    self.wrong.append(f"port {port}: got {len(got)} bytes, want {len(want)}")
            s.unwrap().close()

    def reset(self, rng):
        s = self.tls()
        s.sendall(rng.randbytes(rng.randint(100, 32 * 1024)))
        if rng.random() < 0.5:
            s.recv(1)  # some echo is back (head -c 100 too has had its 100 bytes)
        self.abort(s)

    def cut(self, rng):
        s = self.tls()
        s.sendall(rng.randbytes(rng.randint(1, 32 * 1024)))
        # Close TCP without close_notify: stls must see a truncated stream.
        raw = socket.socket(fileno=s.detach())
        raw.close()

    def noread(self, rng):
        s = self.tls()
        s.settimeout(1)
        block = rng.randbytes(64 * 1024)
        try:
            for _ in range(64):
                s.sendall(block)
        except (socket.timeout, TimeoutError):
            pass
        self.hold(rng.uniform(0.5, 4))
        self.abort(s)

    def garbage(self, rng):
        with self.tcp() as s:
            s.sendall(rng.randbytes(rng.randint(1, 4096)))
            s.settimeout(5)
            try:
                while s.recv(4096):
                    pass
            except OSError:
                pass

    def halfhello(self, rng):
        s = self.tcp()
        s.sendall(client_hello_prefix())
        if rng.random() < 0.5:
            self.abort(s)
        else:
            s.close()

    def silent(self, rng):
        s = self.tcp()
        self.hold(rng.uniform(0, 8))
        s.close()



def settle(pid, target_fds, limit=60.0):
    """Wait, up to limit seconds, until the listener is back to target_fds descriptors and has
    no children; the measurement then."""
    end = time.time() + limit
    m = measure(pid)
    while time.time() < end:
        m = measure(pid)
        if m["fds"] <= target_fds and m["children"] == 0 and m["zombies"] == 0:
            break
        time.sleep(0.25)
    time.sleep(1.0)
    return measure(pid)


def fmt(m):
    return f"fds {m['fds']}, RSS {m['rss_kib'] / 1024:.1f} MiB, children {m['children']}, zombies {m['zombies']}"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=600, help="seconds of load (default 600)")
    ap.add_argument("--workers", type=int, default=64, help="client threads with random faults")
    ap.add_argument("--silent", type=int, default=1000, help="silent TCP connections held open")
    ap.add_argument("--binary", help="stls to run (default: build and use the release binary)")
    args = ap.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if args.binary:
        stls = Path(args.binary).resolve()
    else:
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
        stls = ROOT / "target" / "release" / "stls"

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = Path(tempfile.mkstemp(prefix="stls-soak-", suffix=".log")[1])
    srv = subprocess.Popen(
        [str(stls), "listen", "-k", f"127.0.0.1:{port}", "-c", COMMAND],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=open(log, "w"),
    )
    end = time.time() + 10
    while "listening on" not in log.read_text() and time.time() < end:
        time.sleep(0.05)
    start = measure(srv.pid)
    print(f"soak: stls pid {srv.pid} on port {port}, log {log}", file=sys.stderr)
    print(f"  start:        {fmt(start)}", file=sys.stderr)

    load = Load(port, args.workers, args.silent)
    warm = min(30.0, max(5.0, args.duration / 10))
    load.start()
    time.sleep(warm)
    load.finish()
    warm_connections = sum(load.counts.values())
    before = settle(srv.pid, start["fds"])
    print(f"  after warm-up: {fmt(before)}", file=sys.stderr)

    samples = []
    t0 = time.time()
    load.start()
    peak = dict(before)
    interval = min(30.0, max(1.0, args.duration / 20))
    while time.time() - t0 < args.duration and srv.poll() is None:
        time.sleep(min(interval, max(0.0, args.duration - (time.time() - t0))))
        m = measure(srv.pid)
        m["t"] = round(time.time() - t0, 1)
        with load.lock:
            m["connections"] = sum(load.counts.values())
        samples.append(m)
        for k in ("fds", "rss_kib", "children", "zombies"):
            peak[k] = max(peak[k], m[k])
        print(f"  {m['t']:7.0f} s: {fmt(m)}, {m['connections']} connections so far", file=sys.stderr)
    load.finish()
    alive = srv.poll() is None
    after = settle(srv.pid, before["fds"]) if alive else None
    if after:
        print(f"  after:        {fmt(after)}", file=sys.stderr)

    srv.send_signal(signal.SIGTERM)
    try:
        status = srv.wait(timeout=30)
    except subprocess.TimeoutExpired:
        srv.kill()
        status = srv.wait()
    lines = log.read_text(errors="replace").splitlines()

    problems = []
    if not alive:
        problems.append(f"stls died under load (status {srv.returncode})")
    if after:
        if after["fds"] != before["fds"]:
            problems.append(f"descriptors did not come back: {before['fds']} -> {after['fds']}")
        if after["children"] != before["children"]:
            problems.append(f"children left running: {after['children']}")
        if after["zombies"]:
            problems.append(f"zombie children left: {after['zombies']}")
        margin = max(2048, before["rss_kib"] // 10)
        if after["rss_kib"] > before["rss_kib"] + margin:
            problems.append(f"resident memory grew: {before['rss_kib']} -> {after['rss_kib']} KiB")
    if status != 143:
        problems.append(f"stls exited {status} on SIGTERM, not 143")
    if load.bugs:
        problems.append(f"the soak script failed: {load.bugs[0]}")
    if load.wrong:
        problems.append(f"{len(load.wrong)} clean clients got a wrong echo, e.g. {load.wrong[0]}")
    if any("panicked" in line for line in lines):
        problems.append("stls panicked")

    duration = time.time() - t0
    result = {
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
        "binary": str(stls),
        "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                 text=True).stdout.strip(),
        "warm_up_s": warm,
        "warm_up_connections": warm_connections,
        "duration_s": round(duration, 1),
        "workers": args.workers,
        "silent_held": args.silent,
        "connections": sum(load.counts.values()),
        "by_scenario": dict(sorted(load.counts.items())),
        "start": start,
        "before": before,
        "peak": peak,
        "after": after,
        "samples": samples,
        "log_lines": len(lines),
        "log_dropped_in_handshake": sum("dropped while still in its TLS handshake" in l for l in lines),
        "log_handshake_timeouts": sum("timed out (--handshake-timeout)" in l for l in lines),
        "problems": problems,
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "soak.json").write_text(json.dumps(result, indent=1) + "\n")
    print(f"soak: {result['connections']} connections in {duration:.0f} s of load; "
          f"{result['log_lines']} log lines", file=sys.stderr)
    for k, v in result["by_scenario"].items():
        print(f"  {k}: {v}", file=sys.stderr)
    print("| measure | start | after warm-up | peak under load | after |", file=sys.stdout)
    print("|---|---|---|---|---|", file=sys.stdout)
    for k, unit in (("fds", ""), ("rss_kib", " KiB"), ("children", ""), ("zombies", "")):
        a = after[k] if after else "—"
        print(f"| {k} | {start[k]}{unit} | {before[k]}{unit} | {peak[k]}{unit} | {a}{unit} |")
    if problems:
        for p in problems:
            print(f"soak: FAIL: {p}", file=sys.stderr)
        sys.exit(1)
    print("soak: ok, everything came back", file=sys.stderr)
    log.unlink()


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""stls beside openssl, ncat and socat, in one run on one machine.

    python3 bench/bench.py [--quick] [--only bulk,handshakes,latency,idle,unix] [--binary PATH]

Builds stls (release), makes a certificate, then for every tool, alternating tools and
repeating, measures:
  bulk        1 GiB pipe -> TLS over loopback -> pipe, each direction: wall MB/s, CPU seconds
              per GiB of both ends, peak RSS of each end. A run that lost a byte is refused.
  handshakes  full TLS 1.3 handshakes per second a keep-open listener accepts
              (`openssl s_time -new`), and the listener's CPU per handshake.
  latency     process start -> first byte from a local server -> exit (hyperfine).
  idle        listener RSS holding 1,000 idle TLS connections.
  unix        1 GiB (client -> server) through `stls connect unix:` -> `stls listen unix:`,
              beside the same over TCP loopback (goal: MB/s >= 1.0x), and beside socat, by
              CPU seconds per GiB of the two TLS ends (goal: <= 0.6x). socat cannot speak TLS
              over a Unix socket (its OPENSSL addresses are TCP only), so what is measured for
              it is the closest: Unix sockets at both plain ends, TLS over TCP loopback between
              its two ends (feeder -> UNIX-LISTEN,OPENSSL: -> OPENSSL-LISTEN,UNIX-CONNECT: ->
              sink), default buffers and -b 131072; stls in that same shape (`connect --from
              unix:` -> `listen --to unix:`) is measured too, for a comparison shape for shape.
              Only the TLS ends' CPU counts (from wait4), not the feeder's or the sink's.
Medians are reported with ratios against each peer; raw numbers go to bench/results/
(latest.json, latest.csv) and a chart to bench/results/chart.svg. Only loopback is used.
`--binary PATH` uses that stls instead of building one (release) here.
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "results"
STLS = ROOT / "target" / "release" / "stls"  # --binary replaces it
GIB = 1 << 30
TIME = "/usr/bin/time"


def have(prog):
    return shutil.which(prog) is not None


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=10.0):
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return True
        except OSError:
            time.sleep(0.02)
    return False


def wait_listening(port, timeout=10.0):
    """Wait until something listens on port, without connecting (a connection would be
    the one connection a one-shot server serves)."""
    end = time.time() + timeout
    hexport = f":{port:04X}"
    while time.time() < end:
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            try:
                for line in Path(table).read_text().splitlines()[1:]:
                    f = line.split()
                    if f[1].endswith(hexport) and f[3] == "0A":
                        return True
            except OSError:
                pass
        time.sleep(0.02)
    return False


def cpu_of(pid):
    """utime+stime+cutime+cstime of a process, in seconds."""
    f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tck = os.sysconf("SC_CLK_TCK")
    return sum(int(x) for x in f[11:15]) / tck


def tree(pid):
    """pid and all its descendants."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            kids = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except OSError:
            kids = []
        todo.extend(int(k) for k in kids)
    return out


def memory_kib(pid):
    """Proportional set size of a process tree (RSS for a single process), in KiB."""
    total = 0
    for p in tree(pid):
        try:
            text = Path(f"/proc/{p}/smaps_rollup").read_text()
            total += int(re.search(r"^Pss:\s+(\d+)", text, re.M).group(1))
        except (OSError, AttributeError):
            pass
    return total


# ---------------------------------------------------------------- tools


class Tool:
    """How to run one implementation (shell command templates with {port}).

    up: (server, client) for client -> server; down: the same for server -> client;
    keep_open: a listener serving many connections; latency: a client reading one reply."""

    def __init__(self, name, up, down, keep_open=None, latency=None):
        self.name, self.up, self.down = name, up, down
        self.keep_open, self.latency = keep_open, latency


def tools(cert, key, pin):
    s = str(STLS)
    listen = f"{s} listen -q 127.0.0.1:{{port}} --cert {cert} --key {key}"
    connect = f"{s} connect 127.0.0.1:{{port}} --pin {pin}"
    s_server = f"openssl s_server -quiet -naccept 1 -accept 127.0.0.1:{{port}} -cert {cert} -key {key}"
    s_client = "openssl s_client -quiet -connect 127.0.0.1:{port}"
    t = [
        Tool(
            "stls",
            # The file-transfer recipe: each side says which way the data goes, so the sender
            # closes at its EOF instead of waiting --linger for an answer.
            up=(f"{listen} --recv-only", f"{connect} --send-only"),
            down=(f"{listen} --send-only", f"{connect} --recv-only"),
            keep_open=f"{s} listen -q -k --max-conns 5000 127.0.0.1:{{port}} --cert {cert} --key {key}",
            latency=connect,
        ),
        Tool(
            "openssl",
            # -quiet implies -ign_eof: the sender needs -no_ign_eof to stop at its EOF.
            up=(s_server, s_client + " -no_ign_eof"),
            down=(s_server, s_client),
            keep_open=f"openssl s_server -quiet -accept 127.0.0.1:{{port}} -cert {cert} -key {key}",
            latency=s_client,
        ),
    ]
    if have("ncat"):
        nl = f"ncat --ssl --ssl-cert {cert} --ssl-key {key}"
        t.append(
            Tool(
                "ncat",
                up=(f"{nl} --recv-only -l 127.0.0.1 {{port}}", "ncat --ssl --send-only 127.0.0.1 {port}"),
                down=(f"{nl} --send-only -l 127.0.0.1 {{port}}", "ncat --ssl --recv-only 127.0.0.1 {port}"),
                keep_open=f"{nl} -k --max-conns 5000 -l 127.0.0.1 {{port}}",
                latency="ncat --ssl --recv-only 127.0.0.1 {port}",
            )
        )
    if have("socat"):
        o = f"cert={cert},key={key},verify=0,reuseaddr"
        for name, b in (("socat", ""), ("socat-b128k", "-b 131072 ")):
            t.append(
                Tool(
                    name,
                    up=(f"socat {b}-u OPENSSL-LISTEN:{{port}},bind=127.0.0.1,{o} STDOUT",
                        f"socat {b}-u STDIN OPENSSL:127.0.0.1:{{port}},verify=0"),
                    down=(f"socat {b}-U OPENSSL-LISTEN:{{port}},bind=127.0.0.1,{o} STDIN",
                          f"socat {b}-u OPENSSL:127.0.0.1:{{port}},verify=0 STDOUT"),
                    keep_open=None if b else
                    f"socat OPENSSL-LISTEN:{{port}},bind=127.0.0.1,fork,{o} SYSTEM:cat",
                    latency=None if b else "socat -u OPENSSL:127.0.0.1:{port},verify=0 STDOUT",
                )
            )
        t.append(
            Tool(
                "plain-tcp",
                up=("socat -b 131072 -u TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr STDOUT",
                    "socat -b 131072 -u STDIN TCP:127.0.0.1:{port}"),
                down=("socat -b 131072 -U TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr STDIN",
                      "socat -b 131072 -u TCP:127.0.0.1:{port} STDOUT"),
            )
        )
    return t


# ---------------------------------------------------------------- bulk


def parse_time(path):
    """/usr/bin/time -f '%e %U %S %M' output: wall, cpu, peak RSS KiB."""
    line = Path(path).read_text().strip().splitlines()[-1].split()
    wall, user, sys_, rss = float(line[0]), float(line[1]), float(line[2]), int(line[3])
    return wall, user + sys_, rss


def bulk_once(tool, size, upload, tmp):
    """One transfer; returns a dict, or None if bytes were lost."""
    port = free_port()
    st, ct = tmp / "server.time", tmp / "client.time"
    count = tmp / "count"
    timed = f"{TIME} -f '%e %U %S %M'"
    src = f"head -c {size} /dev/zero"
    # upload: the client sends; download: the server sends. The receiver's stdout goes to
    # wc -c, which checks the count.
    server_cmd, client_cmd = (tool.up if upload else tool.down)
    server_cmd, client_cmd = server_cmd.format(port=port), client_cmd.format(port=port)
    if upload:
        # s_server ends the connection at its stdin EOF: its stdin stays open until the
        # client is done. Every other server gets an empty stdin.
        held = "" if tool.name == "openssl" else "< /dev/null"
        server = f"{timed} -o {st} {server_cmd} {held} | wc -c > {count}"
        client = f"{src} | {timed} -o {ct} {client_cmd} > /dev/null"
    else:
        server = f"{src} | {timed} -o {st} {server_cmd} > /dev/null"
        client = f"{timed} -o {ct} {client_cmd} < /dev/null | wc -c > {count}"
    srv = subprocess.Popen(["sh", "-c", server], stdin=subprocess.PIPE, stderr=subprocess.DEVNULL)
    if not wait_listening(port):
        srv.kill()
        print(f"  {tool.name}: the server did not start", file=sys.stderr)
        return None
    start = time.time()
    try:
        cli = subprocess.run(["sh", "-c", client], stderr=subprocess.DEVNULL, timeout=120)
    except subprocess.TimeoutExpired:
        # A peer that never finishes: no result. (s_server can stall after its first stdin
        # chunk; -nbio avoids that, but its non-blocking loop then spins and would be unfair.)
        srv.kill()
        subprocess.run(["pkill", "-f", f"127.0.0.1:{port}"], stderr=subprocess.DEVNULL)
        print(f"  {tool.name}: the transfer did not finish in 120 s; run refused", file=sys.stderr)
        return None
    srv.stdin.close()
    try:
        srv.wait(timeout=60)
    except subprocess.TimeoutExpired:
        srv.kill()
        print(f"  {tool.name}: the server did not finish", file=sys.stderr)
        return None
    wall = time.time() - start
    got = int(count.read_text().strip() or 0)
    if got != size:
        print(f"  {tool.name}: {got} of {size} bytes arrived; run refused", file=sys.stderr)
        return None
    _, scpu, srss = parse_time(st)
    _, ccpu, crss = parse_time(ct)
    gib = size / GIB
    return {
        "mb_per_s": size / wall / 1e6,
        "cpu_per_gib": (scpu + ccpu) / gib,
        "server_rss_kib": srss,
        "client_rss_kib": crss,
        "ok": cli.returncode == 0,
    }


def bench_bulk(all_tools, size, repeats, tmp):
    results = {}
    for direction, upload in (("upload", True), ("download", False)):
        for r in range(repeats):
            for tool in all_tools:  # alternate tools within each repeat
                res = bulk_once(tool, size, upload, tmp)
                if res:
                    results.setdefault(f"{tool.name}/{direction}", []).append(res)
                print(f"  bulk {direction} #{r + 1} {tool.name}: {fmt(res)}", file=sys.stderr)
    return results


def fmt(res):
    if not res:
        return "failed"
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in res.items())


# ---------------------------------------------------------------- handshakes


def bench_handshakes(all_tools, seconds, repeats):
    results = {}
    for r in range(repeats):
        for tool in all_tools:
            if not tool.keep_open:
                continue
            port = free_port()
            srv = subprocess.Popen(
                ["sh", "-c", "exec " + tool.keep_open.format(port=port)],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            wait_listening(port)
            before = cpu_of(srv.pid)
            out = subprocess.run(
                ["openssl", "s_time", "-connect", f"127.0.0.1:{port}", "-new", "-time", str(seconds)],
                capture_output=True,
                text=True,
                timeout=seconds + 60,
            ).stdout
            time.sleep(0.3)
            after = cpu_of(srv.pid) + sum(cpu_of(p) for p in tree(srv.pid)[1:])
            srv.kill()
            srv.wait()
            m = re.search(r"(\d+) connections in ([\d.]+)s", out)
            if not m:
                print(f"  handshakes {tool.name}: no result", file=sys.stderr)
                continue
            n, secs = int(m.group(1)), float(m.group(2))
            res = {"per_s": n / secs, "cpu_ms_per_handshake": (after - before) * 1000 / max(n, 1)}
            results.setdefault(tool.name, []).append(res)
            print(f"  handshakes #{r + 1} {tool.name}: {fmt(res)}", file=sys.stderr)
    return results


# ---------------------------------------------------------------- latency


def bench_latency(all_tools, runs):
    if not have("hyperfine"):
        print("SKIP latency: hyperfine is not installed", file=sys.stderr)
        return {}
    port = free_port()
    # One server for every client: it answers each connection with one line and closes.
    srv = subprocess.Popen(
        [str(STLS), "listen", "-q", "-k", f"127.0.0.1:{port}", "-e", "echo hi"],
        stdin=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_listening(port)
    pin = None
    # The ephemeral certificate's fingerprint is not printed under -q: ask the server.
    pem = ssl.get_server_certificate(("127.0.0.1", port))
    der = ssl.PEM_cert_to_DER_cert(pem)
    import hashlib

    pin = hashlib.sha256(der).hexdigest()
    cmds = []
    for tool in all_tools:
        if tool.latency:
            cmd = tool.latency.format(port=port)
            if tool.name == "stls":
                cmd = re.sub(r"--pin \S+", f"--pin {pin}", cmd)
            cmds.append((tool.name, cmd + " < /dev/null > /dev/null 2>&1"))
    out = Path(tempfile.mkstemp(suffix=".json")[1])
    subprocess.run(
        ["hyperfine", "--shell=sh", "--warmup", "3", "--runs", str(runs),
         "--export-json", str(out)] + [c for _, c in cmds],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=600,
    )
    srv.kill()
    srv.wait()
    data = json.loads(out.read_text())["results"]
    results = {}
    for (name, _), r in zip(cmds, data):
        results[name] = [{"ms": t * 1000} for t in r["times"]]
        print(f"  latency {name}: median {statistics.median(r['times']) * 1000:.1f} ms", file=sys.stderr)
    return results


# ---------------------------------------------------------------- idle connections


def hold_connections(port, n):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    held = []
    for _ in range(n):
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        held.append(ctx.wrap_socket(raw, server_hostname="localhost"))
    return held


def bench_idle(all_tools, n, repeats):
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    results = {}
    for r in range(repeats):
        for tool in all_tools:
            if not tool.keep_open:
                continue
            if tool.name == "openssl":
                continue  # s_server serves one connection at a time
            port = free_port()
            srv = subprocess.Popen(
                ["sh", "-c", "ulimit -n 65536 2>/dev/null; exec " + tool.keep_open.format(port=port)],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            wait_listening(port)
            base = memory_kib(srv.pid)
            try:
                held = hold_connections(port, n)
            except (OSError, ssl.SSLError) as e:
                print(f"  idle {tool.name}: {e}", file=sys.stderr)
                srv.kill()
                srv.wait()
                continue
            time.sleep(1.0)
            kib = memory_kib(srv.pid)
            for s in held:
                s.close()
            srv.kill()
            srv.wait()
            res = {"kib": kib, "kib_per_conn": (kib - base) / n}
            results.setdefault(tool.name, []).append(res)
            print(f"  idle #{r + 1} {tool.name}: {fmt(res)}", file=sys.stderr)
    return results


# ---------------------------------------------------------------- unix


def wait_unix(path, timeout=10.0):
    """Wait until something listens on the Unix socket at path (from /proc/net/unix, without
    connecting: a connection would be the one a one-shot server serves)."""
    end = time.time() + timeout
    while time.time() < end:
        for line in Path("/proc/net/unix").read_text().splitlines()[1:]:
            f = line.split()
            if len(f) > 7 and f[3] == "00010000" and f[7] == str(path):
                return True
        time.sleep(0.02)
    return False


def reap(proc, deadline):
    """Wait for proc until deadline (time.time()); its CPU seconds from wait4, or None if it
    had to be killed. (Not its peak RSS: wait4 counts what the forking Python had.)"""
    while True:
        pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return ru.ru_utime + ru.ru_stime
        if time.time() > deadline:
            proc.kill()
            os.wait4(proc.pid, 0)
            proc.returncode = -9
            return None
        time.sleep(0.005)


class Run:
    """The processes of one transfer: the TLS ends (whose CPU counts; those that serve many
    connections are stopped with SIGTERM once the data is through) and the rest (feeder, sink,
    wc), every one killed if the run fails."""

    def __init__(self):
        self.ends, self.keep_open, self.others = [], [], []

    def start(self, cmd, kind="other", **kw):
        kw.setdefault("stdin", subprocess.DEVNULL)
        kw.setdefault("stdout", subprocess.DEVNULL)
        kw.setdefault("stderr", subprocess.DEVNULL)
        proc = subprocess.Popen(cmd, **kw)
        {"end": self.ends, "keep_open": self.keep_open, "other": self.others}[kind].append(proc)
        return proc

    def kill(self):
        for p in self.ends + self.keep_open + self.others:
            if p.returncode is None:
                p.kill()
                try:
                    os.wait4(p.pid, 0)
                except ChildProcessError:
                    pass
                p.returncode = -9


def unix_tools(cert, key, pin, tmp):
    """The ways size bytes go from a pipe to a counting sink: each a function of (run, port,
    size) that starts the parts in `run`, in order, and says whether they all started."""
    s = str(STLS)
    sock, inn, out = tmp / "tls.sock", tmp / "in.sock", tmp / "out.sock"
    count = tmp / "count"

    def counted(run, cmd, kind):
        """cmd with its stdout counted by wc -c into the count file."""
        proc = run.start(cmd, kind, stdout=subprocess.PIPE)
        with open(count, "w") as f:
            run.start(["wc", "-c"], stdin=proc.stdout, stdout=f)
        proc.stdout.close()

    def fed(run, cmd, kind, size):
        """cmd with size zero bytes on its stdin."""
        head = run.start(["head", "-c", str(size), "/dev/zero"], stdout=subprocess.PIPE)
        run.start(cmd, kind, stdin=head.stdout)
        head.stdout.close()

    def stls_pipe(server_addr, client_addr, ready):
        def start(run, port, size):
            counted(run, [s, "listen", "-q", server_addr.format(port=port), "--recv-only",
                          "--cert", str(cert), "--key", str(key)], "end")
            if not ready(port):
                return False
            fed(run, [s, "connect", "-q", client_addr.format(port=port), "--pin", pin,
                      "--send-only"], "end", size)
            return True
        return start

    def unix_ends(tls_server, tls_client, kind):
        """feeder -> in.sock -> TLS client end -> TCP -> TLS server end -> out.sock -> sink."""
        def start(run, port, size):
            counted(run, ["socat", "-b", "131072", "-u", f"UNIX-LISTEN:{out}", "STDOUT"], "other")
            if not wait_unix(out):
                return False
            run.start(tls_server(port), kind)
            if not wait_listening(port):
                return False
            run.start(tls_client(port), kind)
            if not wait_unix(inn):
                return False
            fed(run, ["socat", "-b", "131072", "-u", "STDIN", f"UNIX-CONNECT:{inn}"], "other",
                size)
            return True
        return start

    def socat_ends(b):
        o = f"cert={cert},key={key},verify=0,reuseaddr"
        return unix_ends(
            lambda port: ["socat", *b, "-u", f"OPENSSL-LISTEN:{port},bind=127.0.0.1,{o}",
                          f"UNIX-CONNECT:{out}"],
            lambda port: ["socat", *b, "-u", f"UNIX-LISTEN:{inn}",
                          f"OPENSSL:127.0.0.1:{port},verify=0"],
            "end",
        )

    tools = {
        "stls-unix": stls_pipe(f"unix:{sock}", f"unix:{sock}", lambda _: wait_unix(sock)),
        "stls-tcp": stls_pipe("127.0.0.1:{port}", "127.0.0.1:{port}", wait_listening),
        "stls-unix-ends": unix_ends(
            lambda port: [s, "listen", "-q", f"127.0.0.1:{port}", "--to", f"unix:{out}",
                          "--cert", str(cert), "--key", str(key)],
            lambda port: [s, "connect", "-q", f"127.0.0.1:{port}", "--pin", pin,
                          "--from", f"unix:{inn}"],
            "keep_open",
        ),
    }
    if have("socat"):
        tools["socat-unix-ends"] = socat_ends([])
        tools["socat-b128k-unix-ends"] = socat_ends(["-b", "131072"])

    def clean():
        for p in (sock, inn, out, count):
            p.unlink(missing_ok=True)

    return tools, count, clean


def unix_once(name, start, count, clean, size):
    """One transfer; a dict, or None if it failed or lost a byte."""
    clean()
    run = Run()
    port = free_port()
    if not start(run, port, size):
        run.kill()
        print(f"  unix {name}: a part did not start", file=sys.stderr)
        return None
    # The feeder has just started: the clock runs from here until the sink has counted
    # everything and every one-shot part has exited.
    began = time.time()
    deadline = began + 120
    for p in run.others:
        try:
            p.wait(timeout=max(0.1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            break
    cpu, whole = 0.0, all(p.returncode is not None for p in run.others)
    for p in run.ends:
        got = reap(p, deadline) if whole else None
        whole = whole and got is not None
        cpu += got or 0.0
    wall = time.time() - began
    for p in run.keep_open:
        p.send_signal(signal.SIGTERM)
        got = reap(p, time.time() + 10) if whole else None
        whole = whole and got is not None
        cpu += got or 0.0
    if not whole:
        run.kill()
        print(f"  unix {name}: the transfer did not finish in 120 s; run refused", file=sys.stderr)
        return None
    got = int(count.read_text().strip() or 0)
    if got != size:
        print(f"  unix {name}: {got} of {size} bytes arrived; run refused", file=sys.stderr)
        return None
    return {"mb_per_s": size / wall / 1e6, "cpu_per_gib": cpu / (size / GIB)}


def bench_unix(cert, key, pin, size, repeats, tmp):
    tools, count, clean = unix_tools(cert, key, pin, tmp)
    results = {}
    for r in range(repeats):
        for name, start in tools.items():  # alternate within each repeat
            res = unix_once(name, start, count, clean, size)
            if res:
                results.setdefault(name, []).append(res)
            print(f"  unix #{r + 1} {name}: {fmt(res)}", file=sys.stderr)
    return results


def unix_table(summary, size):
    """The README's table: each way's medians, and stls over a Unix socket divided by it."""
    rows = {k.split(" ", 1)[1]: v for k, v in summary.items() if k.startswith("unix ")}
    ours = rows.get("stls-unix")
    lines = [f"| {size >> 20} MiB, client -> server | MB/s | CPU s per GiB, both TLS ends | "
             "stls unix: / this, MB/s | stls unix: / this, CPU |", "|---|---|---|---|---|"]
    for name, v in rows.items():
        mb, cpu = v.get("mb_per_s"), v.get("cpu_per_gib")
        if mb is None or cpu is None:
            continue
        mb_ratio = f"{ours['mb_per_s'] / mb:.2f}" if ours and name != "stls-unix" else ""
        cpu_ratio = f"{ours['cpu_per_gib'] / cpu:.2f}" if ours and name != "stls-unix" else ""
        lines.append(f"| {name} | {mb:.0f} | {cpu:.2f} | {mb_ratio} | {cpu_ratio} |")
    return "\n".join(lines)


# ---------------------------------------------------------------- report


def median(rows, key):
    vals = [row[key] for row in rows if key in row]
    return statistics.median(vals) if vals else None


def summarise(raw):
    s = {}
    for name, rows in raw.get("bulk", {}).items():
        s[f"bulk {name}"] = {
            k: median(rows, k) for k in ("mb_per_s", "cpu_per_gib", "server_rss_kib", "client_rss_kib")
        }
    for name, rows in raw.get("handshakes", {}).items():
        s[f"handshakes {name}"] = {k: median(rows, k) for k in ("per_s", "cpu_ms_per_handshake")}
    for name, rows in raw.get("latency", {}).items():
        s[f"latency {name}"] = {"ms": median(rows, "ms")}
    for name, rows in raw.get("idle", {}).items():
        s[f"idle {name}"] = {k: median(rows, k) for k in ("kib", "kib_per_conn")}
    for name, rows in raw.get("unix", {}).items():
        s[f"unix {name}"] = {k: median(rows, k) for k in ("mb_per_s", "cpu_per_gib")}
    return s


def table(summary):
    lines = ["| measure | tool | value | stls ÷ tool |", "|---|---|---|---|"]
    groups = {}
    for key, vals in summary.items():
        kind, name = key.split(" ", 1)
        if kind == "unix":
            continue  # a table of its own (unix_table)
        tool = name.split("/")[0]
        sub = name.split("/")[1] if "/" in name else ""
        for metric, v in vals.items():
            if v is None:
                continue
            groups.setdefault((kind, sub, metric), {})[tool] = v
    units = {
        "mb_per_s": "MB/s", "cpu_per_gib": "CPU s/GiB (both ends)", "server_rss_kib": "KiB peak RSS (server)",
        "client_rss_kib": "KiB peak RSS (client)", "per_s": "handshakes/s",
        "cpu_ms_per_handshake": "listener CPU ms/handshake", "ms": "ms start→exit", "kib": "KiB with 1,000 idle",
        "kib_per_conn": "KiB per idle connection",
    }
    for (kind, sub, metric), by_tool in groups.items():
        ours = by_tool.get("stls")
        for tool, v in by_tool.items():
            ratio = f"{ours / v:.2f}" if ours is not None and v and tool != "stls" else ""
            label = f"{kind} {sub} {units.get(metric, metric)}".replace("  ", " ")
            lines.append(f"| {label} | {tool} | {v:.4g} | {ratio} |")
    return "\n".join(lines)


def chart(summary, path):
    """A grouped horizontal bar chart, each measure scaled to its largest value."""
    picks = [
        ("bulk", "upload", "cpu_per_gib", "bulk upload: CPU s/GiB (lower is better)"),
        ("bulk", "download", "cpu_per_gib", "bulk download: CPU s/GiB (lower is better)"),
        ("bulk", "upload", "mb_per_s", "bulk upload: MB/s (higher is better)"),
        ("handshakes", "", "per_s", "handshakes/s (higher is better)"),
        ("latency", "", "ms", "connect latency ms (lower is better)"),
        ("idle", "", "kib", "KiB with 1,000 idle connections (lower is better)"),
    ]
    colours = {"stls": "#2b7bba", "openssl": "#c0392b", "ncat": "#8e44ad", "socat": "#27ae60",
               "socat-b128k": "#16a085", "plain-tcp": "#7f8c8d"}
    rows = []
    for kind, sub, metric, title in picks:
        vals = []
        for key, v in summary.items():
            k, name = key.split(" ", 1)
            tool, _, s = name.partition("/")
            if k == kind and s == sub and v.get(metric) is not None:
                vals.append((tool, v[metric]))
        if vals:
            rows.append((title, vals))
    bar_h, gap, left, width = 16, 28, 130, 420
    height = sum(gap + bar_h * len(v) for _, v in rows) + 20
    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + width + 90}" height="{height}" '
           'font-family="sans-serif" font-size="11">',
           '<rect width="100%" height="100%" fill="white"/>']
    y = 10
    for title, vals in rows:
        svg.append(f'<text x="4" y="{y + 14}" font-weight="bold">{title}</text>')
        y += gap - 6
        top = max(v for _, v in vals) or 1
        for tool, v in vals:
            w = max(1, int(width * v / top))
            c = colours.get(tool, "#555")
            svg.append(f'<text x="4" y="{y + 12}">{tool}</text>')
            svg.append(f'<rect x="{left}" y="{y + 2}" width="{w}" height="{bar_h - 4}" fill="{c}"/>')
            svg.append(f'<text x="{left + w + 4}" y="{y + 12}">{v:.4g}</text>')
            y += bar_h
        y += 6
    svg.append("</svg>")
    path.write_text("\n".join(svg) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes and one repeat (a smoke run)")
    ap.add_argument("--only", default="bulk,handshakes,latency,idle,unix")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--binary", help="this stls instead of a release build of the tree")
    args = ap.parse_args()
    parts = set(args.only.split(","))
    size = (64 << 20) if args.quick else GIB
    repeats = 1 if args.quick else args.repeats

    for prog in ("openssl", TIME):
        if not have(prog):
            sys.exit(f"bench: {prog} is needed")
    global STLS
    if args.binary:
        STLS = Path(args.binary).resolve()
    else:
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    tmp = Path(tempfile.mkdtemp(prefix="stls-bench-"))
    pki = tmp / "pki"
    out = subprocess.run([str(STLS), "cert", "server", "--out", str(pki)], capture_output=True, text=True,
                         check=True).stdout
    pin = re.search(r"([0-9A-F]{2}(:[0-9A-F]{2}){31})", out).group(1)
    cert, key = pki / "server.pem", pki / "server.key"
    all_tools = tools(cert, key, pin)
    print("tools: " + ", ".join(t.name for t in all_tools), file=sys.stderr)

    raw = {"machine": {"cores": os.cpu_count(), "when": time.strftime("%Y-%m-%d %H:%M:%S"),
                       "size_bytes": size, "repeats": repeats}}
    if "bulk" in parts:
        raw["bulk"] = bench_bulk(all_tools, size, repeats, tmp)
    if "handshakes" in parts:
        raw["handshakes"] = bench_handshakes(all_tools, 3 if args.quick else 8, repeats)
    if "latency" in parts:
        raw["latency"] = bench_latency(all_tools, 10 if args.quick else 40)
    if "idle" in parts:
        raw["idle"] = bench_idle(all_tools, 200 if args.quick else 1000, repeats)
    if "unix" in parts:
        raw["unix"] = bench_unix(cert, key, pin, size, repeats, tmp)
    summary = summarise(raw)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "latest.json").write_text(json.dumps({"raw": raw, "summary": summary}, indent=1) + "\n")
    with open(OUT / "latest.csv", "w") as f:
        f.write("measure,metric,median\n")
        for k, vals in summary.items():
            for metric, v in vals.items():
                f.write(f"{k},{metric},{'' if v is None else f'{v:.6g}'}\n")
    chart(summary, OUT / "chart.svg")
    tables = []
    if parts - {"unix"}:
        tables.append(table(summary))
    if "unix" in parts:
        tables.append(unix_table(summary, size))
    md = "\n\n".join(tables)
    (OUT / "latest.md").write_text(md + "\n")
    print(md)
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

"""What the benchmark scripts share: building stls, free ports, waiting for a listener, and
timing a command."""

import os
import socket
import subprocess
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CERTS = os.path.join(ROOT, "certs")


def build():
    """Build stls (release); its path."""
    subprocess.run(["cargo", "build", "--release", "--locked", "-q"], cwd=ROOT, check=True)
    return os.path.join(ROOT, "target", "release", "stls")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port):
    """Wait until something listens on the port (read from /proc: a test connection would be
    taken by a one-shot server)."""
    needle = f":{port:04X} "
    for _ in range(1000):
        for table in ["/proc/net/tcp", "/proc/net/tcp6"]:
            with open(table) as f:
                for line in f.readlines()[1:]:
                    cols = line.split()
                    if (cols[1] + " ").endswith(needle) and cols[3] == "0A":
                        return
        time.sleep(0.01)
    raise SystemExit(f"nothing listens on {port}")


def drain(stream):
    """Read a stream to its end, keeping nothing."""
    for _ in stream:
        pass


def start_listener(binary, *args):
    """`stls listen -k 127.0.0.1:0 ARGS…` with the demo certificate, stdin /dev/null; the
    process and the port it announced."""
    proc = subprocess.Popen(
        [binary, "listen", "-k", "127.0.0.1:0", "--cert", os.path.join(CERTS, "server.pem"),
         "--key", os.path.join(CERTS, "server.key"), *args],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:
        if "listening on" in line:
            # What it says later is read and dropped: a full pipe would hold the listener up.
            threading.Thread(target=drain, args=(proc.stderr,), daemon=True).start()
            return proc, int(line.rsplit(":", 1)[1])
    raise SystemExit("stls listen did not start")


def timed(cmd, must_succeed=True, **kw):
    """Run cmd with stdin /dev/null: wall seconds, stdout, stderr, exit status."""
    start = time.monotonic()
    done = subprocess.run(cmd, stdin=kw.pop("stdin", subprocess.DEVNULL), capture_output=True,
                          **kw)
    wall = time.monotonic() - start
    if must_succeed and done.returncode != 0:
        raise SystemExit(f"{cmd[0]} exited {done.returncode}: {done.stderr.decode()[-400:]}")
    return wall, done.stdout.decode(errors="replace"), done.stderr.decode(errors="replace"), \
        done.returncode

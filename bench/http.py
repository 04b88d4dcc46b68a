"""HTTP benchmark on loopback: ``python -m bench.http`` (or ``bench/run``).

Serves one file from this server (``python -m appliance.http`` in its own
process, with 2 event loops and with 1), Python's stdlib ``http.server``
(a thread per connection, no sendfile) and nginx (Debian's build, from its
.deb with its own temporary config — installing it would start a service on
:80), fetches it with curl, and prints MB/s and the ratio to nginx:

- one client, 64 MiB, best of 3;
- 32 concurrent clients, 32 MiB each: aggregate MB/s (total bytes / wall time).

Everything runs on 127.0.0.1; every process started here is terminated by
PID (its own process group) at the end, also on errors and Ctrl-C.
Results go to stdout and are written to ``bench/RESULTS.md`` between the
HTTP markers (the rest of the file is kept).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.results import write_block
from bench.tftp import stop_process
from tests.helpers import free_port

REPO = Path(__file__).resolve().parent.parent
CACHE = REPO / ".cache" / "bench"
MB = 1_000_000
HOST = "127.0.0.1"
CLIENT_TIMEOUT = 300


def nginx_binary() -> Path:
    """Debian's nginx (what nginx-light installs) extracted from its .deb."""
    path = CACHE / "root/usr/sbin/nginx"
    if not path.exists():
        debs = CACHE / "debs"
        debs.mkdir(parents=True, exist_ok=True)
        subprocess.run(["apt-get", "download", "nginx"], cwd=debs, check=True, timeout=300,
                       stdout=subprocess.DEVNULL)
        for deb in debs.glob("nginx_*.deb"):
            subprocess.run(["dpkg-deb", "-x", str(deb), str(CACHE / "root")], check=True, timeout=120)
    return path


def answers(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.3):
            return True
    except OSError:
        return False


@dataclass
class Server:
    name: str
    cmd: list[str]
    port: int
    proc: subprocess.Popen | None = field(default=None, repr=False)

    def start(self) -> Server:
        self.proc = subprocess.Popen(self.cmd, cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, start_new_session=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace")[-500:]
                raise RuntimeError(f"{self.name} exited at start ({self.proc.returncode}): {err}")
            if answers(self.port):
                return self
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not answer on {HOST}:{self.port}")

    def stop(self) -> None:
        stop_process(self.proc)


def nginx_server(root: Path, work: Path) -> Server:
    port = free_port(socket.SOCK_STREAM)
    for d in ("body", "proxy", "fastcgi", "uwsgi", "scgi", "logs"):
        (work / d).mkdir(exist_ok=True)
    conf = work / "nginx.conf"
    conf.write_text(f"""daemon off;
worker_processes auto;
pid {work}/nginx.pid;
error_log {work}/logs/error.log;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    default_type application/octet-stream;
    client_body_temp_path {work}/body;
    proxy_temp_path {work}/proxy;
    fastcgi_temp_path {work}/fastcgi;
    uwsgi_temp_path {work}/uwsgi;
    scgi_temp_path {work}/scgi;
    server {{ listen {HOST}:{port}; root {root}; }}
}}
""")
    return Server("nginx", [str(nginx_binary()), "-p", str(work), "-c", str(conf), "-e", f"{work}/logs/error.log"],
                  port)


def curl(port: int, name: str) -> subprocess.Popen:
    return subprocess.Popen(["curl", "-sS", "--fail", "-o", "/dev/null", "--max-time", str(CLIENT_TIMEOUT),
                             "-w", "%{size_download}", f"http://{HOST}:{port}/{name}"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)


def fetch_all(port: int, name: str, clients: int, expected: int) -> float:
    """Aggregate MB/s of ``clients`` concurrent curls fetching the whole file."""
    start = time.monotonic()
    procs = [curl(port, name) for _ in range(clients)]
    for proc in procs:
        out, err = proc.communicate(timeout=CLIENT_TIMEOUT + 10)
        if proc.returncode != 0 or int(out or 0) != expected:
            raise RuntimeError(f"curl failed ({proc.returncode}, {out!r} bytes): {err.decode(errors='replace')}")
    elapsed = time.monotonic() - start
    return clients * expected / elapsed / MB


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.http", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="runs per scenario; the best counts")
    parser.add_argument("--no-write", action="store_true", help="do not update bench/RESULTS.md")
    args = parser.parse_args(argv)
    py = sys.executable
    with tempfile.TemporaryDirectory(prefix="netboot-bench-http-") as tmp:
        os.chmod(tmp, 0o755)             # nginx's workers run as nobody
        root = Path(tmp) / "root"
        root.mkdir()
        big, small = root / "big.bin", root / "each.bin"
        chunk = os.urandom(1 << 20)
        with open(big, "wb") as f:
            for _ in range(64):
                f.write(chunk)
        with open(small, "wb") as f:
            for _ in range(32):
                f.write(chunk)
        (Path(tmp) / "nginx").mkdir()
        servers = [
            nginx_server(root, Path(tmp) / "nginx"),
            Server("appliance (2 loops)", [py, "-m", "appliance.http", "--root", str(root), "--workers", "2",
                                           "--listen", f"{HOST}:{(p := free_port(socket.SOCK_STREAM))}"], p),
            Server("appliance (1 loop)", [py, "-m", "appliance.http", "--root", str(root), "--workers", "1",
                                          "--listen", f"{HOST}:{(p := free_port(socket.SOCK_STREAM))}"], p),
            Server("stdlib http.server", [py, "-m", "http.server", "--bind", HOST, "--directory", str(root),
                                          str(p := free_port(socket.SOCK_STREAM))], p),
        ]
        rows: list[tuple[str, float, float]] = []
        try:
            for server in servers:
                server.start()
            # Interleave servers round by round so machine load hits all alike.
            best: dict[str, list[float]] = {s.name: [0.0, 0.0] for s in servers}
            for _ in range(args.rounds):
                for server in servers:
                    one = fetch_all(server.port, big.name, 1, big.stat().st_size)
                    many = fetch_all(server.port, small.name, 32, small.stat().st_size)
                    b = best[server.name]
                    b[0], b[1] = max(b[0], one), max(b[1], many)
            rows = [(name, one, many) for name, (one, many) in best.items()]
        finally:
            for server in servers:
                server.stop()
    ref = dict((n, (o, m)) for n, o, m in rows)["nginx"]
    lines = [f"HTTP on loopback, curl clients, best of {args.rounds} "
             f"({datetime.date.today()}, {platform.node()}, {os.cpu_count()} cores)", "",
             "| server | 1 client, 64 MiB | ratio | 32 clients × 32 MiB, aggregate | ratio |",
             "|---|---|---|---|---|"]
    for name, one, many in rows:
        lines.append(f"| {name} | {one:.0f} MB/s | {one / ref[0]:.2f}× | {many:.0f} MB/s | {many / ref[1]:.2f}× |")
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        write_results(text)
    return 0


def write_results(text: str) -> None:
    write_block("http", "HTTP throughput", text)


if __name__ == "__main__":
    sys.exit(main())

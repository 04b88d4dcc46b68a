"""Follow latency: a new profile generation link → first TFTP byte of the new ``cmdline.txt``.

Builds a demo store in a temporary directory, starts ``netboot serve`` on a
free loopback port (waiting for READY=1 on a notify socket), then for each of
N generations: makes the toplevel, starts the clock, links it as the next
generation and points the profile at it (what ``nix-env --set`` does), and
polls ``<prefix>/cmdline.txt`` with raw RRQs until the first DATA packet
carries the new ``init=``.  Prints median / p90 / max.  Goal: median < 100 ms.

    python -m bench.follow_latency [--generations 50] [--keep]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from appliance.demo import build_demo
from bench.tftp import stop_process
from tests.helpers import free_port
from appliance.demo.store import add_generation, make_toplevel

HOST = "pi-desktop"
PATH = "dc-a6-32-01-02-03/cmdline.txt"
GOAL_MEDIAN = 0.100
PER_GENERATION_DEADLINE = 5.0


def start_daemon(config: Path, log: Path) -> tuple[subprocess.Popen, socket.socket]:
    name = f"netboot-bench-{os.getpid()}-{time.monotonic_ns()}"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind("\0" + name)
    env = dict(os.environ, NOTIFY_SOCKET="@" + name)
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "appliance.cli.main", "-c", str(config), "serve"],
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                start_new_session=True)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"daemon exited with {proc.returncode}:\n{log.read_text()}")
        notify.settimeout(0.2)
        try:
            if "READY=1" in notify.recv(4096).decode().splitlines():
                return proc, notify
        except socket.timeout:
            continue
    stop_process(proc)
    raise SystemExit("daemon did not report READY=1 within 20 s")


def first_block(port: int, path: str) -> bytes | None:
    """One RRQ (no options) from a fresh port (a new TID, as clients do): the first DATA payload,
    acknowledged; None on error/timeout."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.5)
        sock.sendto(b"\0\1" + path.encode() + b"\0octet\0", ("127.0.0.1", port))
        try:
            pkt, peer = sock.recvfrom(2048)
        except socket.timeout:
            return None
        return _ack_first(sock, pkt, peer)


def _ack_first(sock: socket.socket, pkt: bytes, peer: tuple) -> bytes | None:
    op, block = struct.unpack("!HH", pkt[:4])
    if op != 3:
        return None
    sock.sendto(struct.pack("!HH", 4, block), peer)
    if len(pkt) - 4 == 512:        # more blocks follow: tell the server we stop here
        sock.sendto(b"\0\5\0\0Early terminate\0", peer)
    return pkt[4:]


def measure(root: Path, generations: int) -> list[float]:
    port = free_port()
    layout = build_demo(root, port=port)
    profile = layout.profiles / HOST
    log = root / "daemon.log"
    proc, notify = start_daemon(layout.config, log)
    latencies: list[float] = []
    try:
        assert first_block(port, PATH), "daemon does not serve cmdline.txt"
        for i in range(generations):
            top = make_toplevel(layout.store, HOST, f"26.05.{i}", kernel_size=4096, initrd_size=4096)
            want = f"init={top}/init".encode()
            start = time.perf_counter()
            add_generation(profile, top)
            while True:
                data = first_block(port, PATH)
                now = time.perf_counter()
                if data is not None and data.startswith(want):
                    latencies.append(now - start)
                    break
                if now - start > PER_GENERATION_DEADLINE:
                    raise SystemExit(f"generation {i + 3} not served within {PER_GENERATION_DEADLINE} s; "
                                     f"log:\n{log.read_text()[-2000:]}")
                time.sleep(0.001)
    finally:
        stop_process(proc)
        notify.close()
    return latencies


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generations", type=int, default=50)
    parser.add_argument("--keep", action="store_true", help="keep the temporary store")
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="netboot-follow-"))
    try:
        lat = sorted(measure(root, args.generations))
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    ms = [x * 1000 for x in lat]
    median = statistics.median(ms)
    p90 = ms[min(len(ms) - 1, int(round(0.9 * (len(ms) - 1))))]
    print(f"follow latency over {len(ms)} generations (new link → first byte of new cmdline.txt):")
    print(f"  min {ms[0]:.1f} ms  median {median:.1f} ms  p90 {p90:.1f} ms  max {ms[-1]:.1f} ms")
    verdict = "ok" if median < GOAL_MEDIAN * 1000 else "ABOVE GOAL"
    print(f"  goal: median < {GOAL_MEDIAN * 1000:.0f} ms: {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

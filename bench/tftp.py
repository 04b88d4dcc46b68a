"""TFTP benchmark on loopback: ``python -m bench.tftp`` (or ``bench/run``).

Serves one 32 MiB file from this server (``python -m appliance.tftp`` in its
own process, so its CPU time is measurable), tftpd-hpa, dnsmasq and atftpd,
fetches it with the same client, and prints MB/s and the ratio to tftpd-hpa.
This server runs in three shapes: ``appliance`` (default: one transfer
worker process per CPU, requests admitted by the main process),
``appliance 1-proc`` (one process, ``--workers 0``) and ``appliance
reuseport`` (one independent single-process server per CPU sharing the port
with SO_REUSEPORT; the kernel spreads clients by address hash).

- lock-step, one curl client, blksize 1024 and 1468;
- 8 and 32 concurrent curl clients at blksize 1024: aggregate MB/s, server
  CPU seconds, the slowest client's time (flagged above 30 s), and for 32
  clients the peak resident memory of the server's processes (summed);
- windowsize 8/16/32 at blksize 1468 with the atftp client, against this
  server and atftpd (the only other server with RFC 7440);
- every row: server CPU µs per DATA packet (CPU seconds / blocks sent).

``--baseline DIR`` also runs this server from another checkout (rows
``baseline`` and ``baseline 1-proc``), interleaved with the rest: an A/B of
a change in one run, under the same load.  ``--skip NAME ...`` leaves
servers out (not tftpd-hpa or atftpd: the ratios need them).

tftpd-hpa and atftpd come from their .debs (``apt-get download`` +
``dpkg-deb -x`` into ``.cache/bench/``): installing them would start a
service on :69.  dnsmasq can only serve TFTP on port 69; it is bound to
127.0.0.1 only and skipped if 127.0.0.1:69 is taken.  Everything runs on
127.0.0.1; every process started here is terminated by PID (its own process
group) at the end, also on errors and Ctrl-C.  Results go to stdout and
``bench/RESULTS.md`` (text after the notes marker there is kept).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import math
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.helpers import free_port

REPO = Path(__file__).resolve().parent.parent
CACHE = REPO / ".cache" / "bench"
RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
NOTES_MARKER = "<!-- notes: kept across runs -->"
FILE_SIZE = 32 * 1024 * 1024
MB = 1_000_000
SLOW_CLIENT_SECONDS = 30.0
CLIENT_TIMEOUT = 180
HOST = "127.0.0.1"
CPUS = max(1, len(os.sched_getaffinity(0)))


# -- tools -------------------------------------------------------------------------

def extracted_binaries() -> dict[str, Path]:
    """tftpd-hpa and atftpd (plus libwrap0 for tftpd-hpa) from their .debs."""
    root = CACHE / "root"
    wanted = {"tftpd-hpa": root / "usr/sbin/in.tftpd", "atftpd": root / "usr/sbin/atftpd"}
    if not all(p.exists() for p in wanted.values()) or not (root / "usr/lib/x86_64-linux-gnu/libwrap.so.0").exists():
        debs = CACHE / "debs"
        debs.mkdir(parents=True, exist_ok=True)
        subprocess.run(["apt-get", "download", "tftpd-hpa", "atftpd", "libwrap0"], cwd=debs, check=True,
                       timeout=300, stdout=subprocess.DEVNULL)
        for deb in debs.glob("*.deb"):
            subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True, timeout=120)
    return wanted


def dnsmasq_binary() -> Path | None:
    found = shutil.which("dnsmasq") or ("/usr/sbin/dnsmasq" if os.path.exists("/usr/sbin/dnsmasq") else None)
    if found:
        return Path(found)
    debs = CACHE / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    subprocess.run(["apt-get", "download", "dnsmasq-base"], cwd=debs, check=True, timeout=300,
                   stdout=subprocess.DEVNULL)
    for deb in debs.glob("dnsmasq-base_*.deb"):
        subprocess.run(["dpkg-deb", "-x", str(deb), str(CACHE / "root")], check=True, timeout=120)
    path = CACHE / "root/usr/sbin/dnsmasq"
    return path if path.exists() else None


def port_69_free() -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind((HOST, 69))
        except OSError:
            return False
    return True


def tftp_probe(port: int, name: str = "probe.bin", timeout: float = 0.3) -> bool:
    """One RRQ; True when DATA 1 (or an OACK) comes back."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((HOST, 0))
        s.settimeout(timeout)
        s.sendto(b"\0\1" + name.encode() + b"\0octet\0", (HOST, port))
        try:
            data, addr = s.recvfrom(2048)
        except OSError:
            return False
        if data[:2] == b"\0\3":
            s.sendto(b"\0\4" + data[2:4], addr)          # it is a tiny file: one ACK ends it
            return True
        return False


# -- servers ---------------------------------------------------------------------

def stop_process(proc: subprocess.Popen | None, wait: float = 5.0) -> None:
    """SIGTERM to the process group (started with ``start_new_session``: the server and its
    forks or workers), SIGKILL if it lingers past ``wait`` seconds."""
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(wait)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(wait)
    except ProcessLookupError:
        pass


@dataclass
class Server:
    name: str
    cmd: list[str]
    port: int
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen | None = None
    cwd: Path = REPO

    def start(self) -> Server:
        env = dict(os.environ)
        env.update(self.env)
        self.proc = subprocess.Popen(self.cmd, env=env, cwd=self.cwd, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     start_new_session=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace")[-500:]
                raise RuntimeError(f"{self.name} exited at start ({self.proc.returncode}): {err}")
            if tftp_probe(self.port):
                return self
        raise RuntimeError(f"{self.name} did not answer on {HOST}:{self.port}")

    def stop(self) -> None:
        stop_process(self.proc)


def _stat_ticks(pid: int) -> tuple[int, int]:
    """(session id, utime + stime) of one process, from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[3]), int(fields[11]) + int(fields[12])


def _rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class CpuMeter:
    """CPU time and peak resident memory of a server and every process it forks.

    tftpd-hpa forks one child per transfer and ignores SIGCHLD, so children
    never show up in its cutime: they are sampled from /proc (same session,
    since each server starts its own) every 20 ms and their last value kept.
    Processes that existed before the measurement (transfer workers, the
    processes sharing a port) count from their value at the start.
    """

    def __init__(self, server: Server) -> None:
        self.pid = server.proc.pid
        self.children: dict[int, int] = {}
        self.child_base: dict[int, int] = {}
        self.base = _stat_ticks(self.pid)[1]
        self.peak_rss = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._sample(baseline=True)

    def _sample(self, baseline: bool = False) -> None:
        rss = 0
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            pid = int(entry.name)
            try:
                session, ticks = _stat_ticks(pid)
                if session != self.pid:
                    continue
                rss += _rss_bytes(pid)
            except (OSError, ValueError, IndexError):
                continue
            if pid == self.pid:
                continue
            if baseline:
                self.child_base[pid] = ticks
            self.children[pid] = ticks - self.child_base.get(pid, 0)
        self.peak_rss = max(self.peak_rss, rss)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self._sample()

    def __enter__(self) -> CpuMeter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def seconds(self) -> float:
        own = _stat_ticks(self.pid)[1] - self.base
        return (own + sum(self.children.values())) / os.sysconf("SC_CLK_TCK")

def make_servers(root: Path, include_dnsmasq: bool, baseline: Path | None = None,
                 skip: frozenset[str] = frozenset()) -> tuple[dict[str, Server], list[str]]:
    notes = []
    tools = extracted_binaries()
    libs = {"LD_LIBRARY_PATH": str(CACHE / "root/usr/lib/x86_64-linux-gnu")}
    servers = {}
    port = free_port()
    ours = [sys.executable, "-m", "appliance.tftp", "--root", str(root), "--listen", f"{HOST}:{port}"]
    servers["appliance"] = Server("appliance", ours, port)
    port = free_port()
    ours = [sys.executable, "-m", "appliance.tftp", "--root", str(root), "--listen", f"{HOST}:{port}"]
    servers["appliance 1-proc"] = Server("appliance 1-proc", ours + ["--workers", "0"], port)
    port = free_port()
    ours = [sys.executable, "-m", "appliance.tftp", "--root", str(root), "--listen", f"{HOST}:{port}"]
    one = shlex.join(ours + ["--workers", "0", "--reuse-port"])
    servers["appliance reuseport"] = Server("appliance reuseport",
                                            ["sh", "-c", " & ".join([one] * CPUS) + " & wait"], port)
    if baseline is not None:
        # ``-m`` imports from the working directory first: the other checkout's code.
        port = free_port()
        ours = [sys.executable, "-m", "appliance.tftp", "--root", str(root), "--listen", f"{HOST}:{port}"]
        servers["baseline"] = Server("baseline", ours, port, cwd=baseline)
        port = free_port()
        ours = [sys.executable, "-m", "appliance.tftp", "--root", str(root), "--listen", f"{HOST}:{port}"]
        servers["baseline 1-proc"] = Server("baseline 1-proc", ours + ["--workers", "0"], port, cwd=baseline)
    for name in skip:
        servers.pop(name, None)
    port = free_port()
    servers["tftpd-hpa"] = Server("tftpd-hpa", [str(tools["tftpd-hpa"]), "-L", "-a", f"{HOST}:{port}",
                                                "-s", str(root)], port, libs)
    port = free_port()
    servers["atftpd"] = Server("atftpd", [str(tools["atftpd"]), "--daemon", "--no-fork", "--port", str(port),
                                          "--bind-address", HOST, "--logfile", "/dev/null",
                                          "--maxthread", "200", str(root)], port, libs)
    if include_dnsmasq:
        binary = dnsmasq_binary()
        if binary is None:
            notes.append("dnsmasq: binary not available, skipped")
        elif not port_69_free():
            notes.append("dnsmasq: 127.0.0.1:69 is in use, skipped")
        else:
            servers["dnsmasq"] = Server("dnsmasq", [str(binary), "--keep-in-foreground", "--port=0",
                                                    "--conf-file=/dev/null", "--enable-tftp",
                                                    f"--tftp-root={root}", "--listen-address=127.0.0.1",
                                                    "--bind-interfaces", "--tftp-max=100", "--user=root",
                                                    "--pid-file=", "--log-facility=/dev/null"], 69)
    return servers, notes


# -- clients -----------------------------------------------------------------------

def curl_cmd(port: int, blksize: int) -> list[str]:
    return ["curl", "-s", "--max-time", str(CLIENT_TIMEOUT), "--tftp-blksize", str(blksize),
            "-o", "/dev/null", f"tftp://{HOST}:{port}/big.bin"]


def atftp_cmd(port: int, blksize: int, windowsize: int) -> list[str]:
    return ["atftp", "--option", f"blksize {blksize}", "--option", f"windowsize {windowsize}",
            "-g", "-r", "big.bin", "-l", "/dev/null", HOST, str(port)]


@dataclass
class Run:
    seconds: list[float]        # per client
    wall: float
    cpu: float
    failures: int
    peak_rss: int = 0           # bytes, summed over the server's processes

    @property
    def mbps(self) -> float:
        ok = len(self.seconds) - self.failures
        return ok * FILE_SIZE / MB / self.wall if self.wall > 0 else 0.0


def run_clients(server: Server, cmd: list[str], count: int) -> Run:
    with CpuMeter(server) as meter:
        return _run_clients(cmd, count, meter)


def _run_clients(cmd: list[str], count: int, meter: CpuMeter) -> Run:
    ended = [0.0] * count
    codes = [0] * count
    started = time.monotonic()
    procs = [subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True) for _ in range(count)]

    def wait(i: int) -> None:
        # A blocking wait (Popen.wait with a timeout polls with sleeps of up to
        # 50 ms, which would quantize the fast runs); a timer bounds it instead.
        watchdog = threading.Timer(CLIENT_TIMEOUT + 30, os.killpg, (procs[i].pid, signal.SIGKILL))
        watchdog.start()
        try:
            codes[i] = procs[i].wait()
        finally:
            watchdog.cancel()
        ended[i] = time.monotonic()

    threads = [threading.Thread(target=wait, args=(i,)) for i in range(count)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
    wall = max(ended) - started
    time.sleep(0.05)
    meter._sample()
    return Run([e - started for e in ended], wall, meter.seconds(), sum(1 for c in codes if c != 0),
               meter.peak_rss)


# -- the benchmark -----------------------------------------------------------------

@dataclass
class Row:
    test: str
    server: str
    mbps: float
    cpu: float | None = None
    slowest: float | None = None
    failures: int = 0
    ratio: float | None = None
    note: str = ""
    us_per_packet: float | None = None
    peak_rss: int = 0


def best(runs: list[Run]) -> Run:
    return max(runs, key=lambda r: r.mbps)


def row(test: str, name: str, runs: list[Run], blksize: int, base: float | None, note: str = "",
        rss: bool = False) -> Row:
    r = best(runs)
    slow = max(r.seconds)
    packets = (len(r.seconds) - r.failures) * math.ceil((FILE_SIZE + 1) / blksize)
    if slow > SLOW_CLIENT_SECONDS:
        note = "; ".join(filter(None, [note, "SLOW CLIENT > 30 s"]))
    return Row(test, name, r.mbps, r.cpu, slow, r.failures, r.mbps / base if base else None, note,
               r.cpu / packets * 1e6 if packets else None, r.peak_rss if rss else 0)


def benchmark(repeat: int, include_dnsmasq: bool, concurrency: list[int], windows: list[int],
              baseline: Path | None = None, skip: frozenset[str] = frozenset()) -> tuple[list[Row], list[str]]:
    rows: list[Row] = []
    workdir = Path(tempfile.mkdtemp(prefix="tftp-bench-"))
    os.chmod(workdir, 0o755)            # tftpd-hpa and atftpd drop to nobody
    servers: dict[str, Server] = {}
    try:
        with open(workdir / "big.bin", "wb") as f:
            f.write(os.urandom(FILE_SIZE))
        (workdir / "probe.bin").write_bytes(b"probe")
        for p in workdir.iterdir():
            os.chmod(p, 0o644)
        servers, notes = make_servers(workdir, include_dnsmasq, baseline, skip)
        for s in servers.values():
            s.start()
        time.sleep(1.0)                 # transfer workers and port-sharing processes come up
        lockstep_servers = list(servers)

        notes.append(f"load average at start: {os.getloadavg()[0]:.2f}")
        for blksize in (1024, 1468):
            results: dict[str, list[Run]] = {n: [] for n in lockstep_servers}
            for _ in range(repeat):                 # interleaved: load drifts hit every server alike
                for name in lockstep_servers:
                    results[name].append(run_clients(servers[name], curl_cmd(servers[name].port, blksize), 1))
            base = best(results["tftpd-hpa"]).mbps
            for name in lockstep_servers:
                rows.append(row(f"lock-step bs {blksize} (curl)", name, results[name], blksize, base))

        for count in concurrency:
            results = {n: [] for n in lockstep_servers}
            for name in lockstep_servers:
                results[name].append(run_clients(servers[name], curl_cmd(servers[name].port, 1024), count))
            base = best(results["tftpd-hpa"]).mbps
            for name in lockstep_servers:
                rows.append(row(f"{count} clients bs 1024 (curl)", name, results[name], 1024, base,
                                rss=count == max(concurrency)))

        notes.append(f"load average after the concurrency rows: {os.getloadavg()[0]:.2f}")
        hpa_1468 = next(r.mbps for r in rows if r.test == "lock-step bs 1468 (curl)" and r.server == "tftpd-hpa")
        window_servers = [n for n in ("appliance", "appliance 1-proc", "baseline", "baseline 1-proc", "atftpd")
                          if n in servers]
        for windowsize in windows:
            results = {n: [] for n in window_servers}
            for _ in range(repeat):
                for name in window_servers:
                    results[name].append(run_clients(servers[name], atftp_cmd(servers[name].port, 1468, windowsize), 1))
            atftpd = best(results["atftpd"]).mbps
            for name in window_servers:
                rows.append(row(f"windowsize {windowsize} bs 1468 (atftp)", name, results[name], 1468, hpa_1468,
                                f"ratio vs tftpd-hpa lock-step bs 1468; × atftpd {best(results[name]).mbps / atftpd:.2f}"))
        notes.append(f"load average at the end: {os.getloadavg()[0]:.2f}")
        return rows, notes
    finally:
        for s in servers.values():
            try:
                s.stop()
            except Exception as exc:  # keep stopping the others
                print(f"could not stop {s.name} (pid {s.proc.pid if s.proc else '-'}): {exc}", file=sys.stderr)
        shutil.rmtree(workdir, ignore_errors=True)


def table(rows: list[Row]) -> str:
    lines = ["| test | server | MB/s | × tftpd-hpa | server CPU s | CPU µs / DATA | slowest client s | peak RSS MB "
             "| failed | note |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {r.test} | {r.server} | {r.mbps:.1f} | "
                     f"{'' if r.ratio is None else f'{r.ratio:.2f}'} | "
                     f"{'' if r.cpu is None else f'{r.cpu:.2f}'} | "
                     f"{'' if r.us_per_packet is None else f'{r.us_per_packet:.1f}'} | "
                     f"{'' if r.slowest is None else f'{r.slowest:.1f}'} | "
                     f"{f'{r.peak_rss / 1e6:.0f}' if r.peak_rss else ''} | {r.failures or ''} | {r.note} |")
    return "\n".join(lines)


def write_results(rows: list[Row], notes: list[str], repeat: int) -> None:
    kept = ""
    if RESULTS.exists():
        text = RESULTS.read_text()
        if NOTES_MARKER in text:
            kept = text.split(NOTES_MARKER, 1)[1]
    load = os.getloadavg()
    header = (f"# TFTP benchmark results\n\n"
              f"Measured {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')} with `python -m bench.tftp` "
              f"(`bench/run`): loopback, one 32 MiB file, best of {repeat} for single-client rows; "
              f"{os.cpu_count()} CPUs, {platform.python_implementation()} {platform.python_version()}, "
              f"load average when written {load[0]:.2f}.\n"
              f"MB = 10^6 bytes. Server CPU = user + system seconds of the server's processes "
              f"(workers and per-transfer forks included); CPU µs / DATA = that / DATA packets sent. "
              f"Peak RSS = resident memory summed over the server's processes during the largest "
              f"concurrency row (shared pages counted once per process).\n\n")
    body = table(rows) + "\n"
    if notes:
        body += "\n" + "\n".join(f"- {n}" for n in notes) + "\n"
    RESULTS.write_text(header + body + "\n" + NOTES_MARKER + (kept or "\n"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.tftp", description="TFTP benchmark on loopback")
    parser.add_argument("--repeat", type=int, default=3, help="runs per single-client row (best is kept)")
    parser.add_argument("--no-dnsmasq", action="store_true", help="skip dnsmasq (it needs 127.0.0.1:69)")
    parser.add_argument("--concurrency", type=int, nargs="*", default=[8, 32])
    parser.add_argument("--windows", type=int, nargs="*", default=[8, 16, 32])
    parser.add_argument("--no-write", action="store_true", help=f"do not update {RESULTS.name}")
    parser.add_argument("--baseline", type=Path, metavar="DIR",
                        help="also run this server from another checkout (A/B in one run)")
    parser.add_argument("--skip", nargs="*", default=[], metavar="NAME",
                        help="servers to leave out, e.g. 'appliance reuseport' dnsmasq")
    args = parser.parse_args(argv)
    if {"tftpd-hpa", "atftpd"} & set(args.skip):
        parser.error("tftpd-hpa and atftpd are the references of the ratios; they cannot be skipped")
    if args.baseline is not None and not (args.baseline / "appliance" / "tftp").is_dir():
        parser.error(f"--baseline {args.baseline}: not a checkout of this project")
    for tool in ("curl", "atftp"):
        if shutil.which(tool) is None:
            print(f"{tool} is required (apt-get install -y curl atftp)", file=sys.stderr)
            return 2
    rows, notes = benchmark(max(1, args.repeat), not args.no_dnsmasq, args.concurrency, args.windows,
                            args.baseline, frozenset(args.skip))
    print(table(rows))
    for n in notes:
        print(n)
    if not args.no_write:
        write_results(rows, notes, args.repeat)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)

"""Loss-rate figures: ``python -m bench.loss`` (or ``bench/run``).

Fetches a 200 kB file through the fault-injecting proxy of the test suite
(``tests/tftp/lossy_proxy.py``) with real clients (curl, tftp-hpa, atftp
lock-step and windowsize 16, tftpy), for each fault (outages of 1, 3 and 8 s,
the first 1–3 ACKs of a block lost, 10 % drop + duplication + reordering both
ways), from this server (``python -m appliance.tftp``, default settings: give
up after 30 s without progress) and from tftpd-hpa, and reports per fault and
client: transfers tried / succeeded (byte-identical) / median and slowest
time.  Client settings (``tests/tftp/fault_matrix.py``) let each client
outlast the faults, so the servers are what is compared.  Everything runs on
127.0.0.1; servers are stopped by PID.  Results go to stdout and
``bench/LOSS.md``.
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import sys
import tempfile
from pathlib import Path

from bench.tftp import HOST, Server, extracted_binaries, free_port
from tests.tftp.fault_matrix import CLIENTS, SCENARIOS, download, missing_binary
from tests.tftp.lossy_proxy import LossyProxy

RESULTS = Path(__file__).resolve().parent / "LOSS.md"
FILE_SIZE = 200_000


def make_servers(root: Path, names: list[str]) -> dict[str, Server]:
    servers = {}
    if "appliance" in names:
        port = free_port()
        servers["appliance"] = Server("appliance", [sys.executable, "-m", "appliance.tftp", "--root", str(root),
                                                    "--listen", f"{HOST}:{port}"], port)
    if "tftpd-hpa" in names:
        tools = extracted_binaries()
        libs = {"LD_LIBRARY_PATH": str(tools["tftpd-hpa"].parents[2] / "usr/lib/x86_64-linux-gnu")}
        port = free_port()
        servers["tftpd-hpa"] = Server("tftpd-hpa", [str(tools["tftpd-hpa"]), "-L", "-a", f"{HOST}:{port}",
                                                    "-s", str(root)], port, libs)
    return servers


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.loss", description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=1, help="transfers per fault, client and server")
    parser.add_argument("--servers", default="appliance,tftpd-hpa")
    parser.add_argument("--no-write", action="store_true", help="print only, leave bench/LOSS.md alone")
    args = parser.parse_args(argv)
    clients = [c for c in CLIENTS if not missing_binary(c)]
    skipped = [c for c in CLIENTS if missing_binary(c)]
    rows = []
    totals: dict[str, list[int]] = {}
    with tempfile.TemporaryDirectory(prefix="netboot-loss-") as tmp:
        root = Path(tmp) / "root"
        root.mkdir()
        payload = os.urandom(FILE_SIZE)
        (root / "f.bin").write_bytes(payload)
        (root / "probe.bin").write_bytes(b"x")
        servers = make_servers(root, args.servers.split(","))
        try:
            for server in servers.values():
                server.start()
            for scenario, impairment in SCENARIOS.items():
                for client in clients:
                    for name, server in servers.items():
                        times, ok, failures = [], 0, []
                        for r in range(args.repeat):
                            out = Path(tmp) / f"out-{r}"
                            out.unlink(missing_ok=True)
                            with LossyProxy((HOST, server.port), impairment, seed=100 + r) as proxy:
                                outcome = download(client, proxy.address[1], "f.bin", out, payload)
                            times.append(outcome.seconds)
                            ok += outcome.ok
                            if not outcome.ok:
                                failures.append(outcome.detail.splitlines()[-1][:80] if outcome.detail else "?")
                        total = totals.setdefault(name, [0, 0])
                        total[0] += args.repeat
                        total[1] += ok
                        row = (scenario, client, name, args.repeat, ok, statistics.median(times), max(times),
                               "; ".join(sorted(set(failures))))
                        rows.append(row)
                        print(f"{scenario:30} {client:20} {name:10} {ok}/{args.repeat} "
                              f"median {row[5]:.1f}s max {row[6]:.1f}s {row[7]}", flush=True)
        finally:
            for server in servers.values():
                server.stop()
    text = render(rows, totals, skipped, args.repeat)
    print(text)
    if not args.no_write:
        RESULTS.write_text(text)
    return 0


def render(rows: list[tuple], totals: dict[str, list[int]], skipped: list[str], repeat: int) -> str:
    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    lines = ["# TFTP under injected faults", "",
             f"Measured {stamp} with `python -m bench.loss --repeat {repeat}`: a {FILE_SIZE // 1000} kB file "
             "through the fault proxy of the test suite on loopback; success = byte-identical file. "
             "Client settings: tests/tftp/fault_matrix.py (each client outlasts the faults itself).", "",
             "| fault | client | server | tried | succeeded | median s | slowest s | failures |",
             "|---|---|---|---:|---:|---:|---:|---|"]
    for scenario, client, name, tried, ok, median, slowest, failures in rows:
        lines.append(f"| {scenario} | {client} | {name} | {tried} | {ok} | {median:.1f} | {slowest:.1f} | {failures} |")
    lines.append("")
    for name, (tried, ok) in totals.items():
        lines.append(f"- {name}: {ok} of {tried} transfers succeeded")
    if skipped:
        lines.append(f"- clients not installed, skipped: {', '.join(skipped)}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())

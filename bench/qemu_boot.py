"""x86 boot to root in the QEMU lab, TFTP only vs HTTP: ``python -m bench.qemu_boot`` (root).

The lab of ``qemu-tests/test_firmware.py``: a bridge in a private network namespace,
dnsmasq handing out addresses only, the appliance (real LIO, proxyDHCP) in a server
VM.  The same client VM boots the same host (same kernel, initrd and iSCSI root) once
with ``http_listen`` off — kernel and initrd over TFTP — and once with it on — over
HTTP — the appliance restarted in between with only that key changed.  Measured: wall
time from QEMU start to the root filesystem's marker, and the kernel + initrd transfer
times the appliance recorded.  Clients: SeaBIOS with QEMU's iPXE ROM (default), and
with ``--uefi`` also OVMF's own PXE chain-loading ipxe.efi.

Needs root (namespaces, taps) and the packages of scripts/install.sh; ~4 minutes on a
busy 2-core machine (server VM ~1.5 min, each BIOS boot 20–60 s, each UEFI boot 1–2 min).
Results go to stdout and to bench/RESULTS.md between the qemu-boot markers.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bench.results import write_block

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "qemu-tests"))

from e2e.clients import ovmf_argv, x86_ipxe_argv          # noqa: E402
from e2e.harness import PC, E2E, LabUnavailable, lab_session  # noqa: E402

HTTP_PORT = 8080
IPXE_NBPS = Path("/usr/lib/ipxe")
GOAL = 0.6


@dataclass
class Measured:
    client: str
    transport: str
    outcome: str
    seconds: float               # QEMU start → marker
    transfer_seconds: float      # kernel + initrd, as the appliance recorded them
    transports: set[str]


def boot(e2e: E2E, client: str, http: bool) -> Measured:
    transport = "http" if http else "tftp"
    e2e.appliance.restart(http=http)
    name = f"{client} {transport}"
    console = e2e.workdir / f"{client}-{transport}.console.log"
    if client == "uefi":
        argv = ovmf_argv(console, e2e.net.client_tap, PC.mac, e2e.workdir / f"{client}-{transport}.vars.fd")
    else:
        argv = x86_ipxe_argv(console, e2e.net.client_tap, PC.mac)
    result = e2e.boot(name, PC, "marker", argv=argv)
    gen = f"{PC.mac.replace(':', '-')}/generations/"
    loads = [ev for ev in e2e.appliance.events(PC.name, since=result.started - 2)
             if ev["outcome"] == "complete" and ev["path"].startswith(gen)
             and ev["path"].endswith(("/kernel", "/initrd"))]
    return Measured(client, transport, result.outcome, result.seconds,
                    sum(float(ev.get("duration") or 0) for ev in loads),
                    {ev.get("transport") or "tftp" for ev in loads})


def table(results: list[Measured]) -> tuple[str, bool]:
    """The Markdown table, and whether every boot reached its marker over the transport it should."""
    lines = [f"x86 boot to root in the QEMU lab, TFTP only vs HTTP, one run "
             f"({datetime.date.today()}, {platform.node()}, TCG, busy 2 cores)", "",
             "| client | TFTP only: boot to marker | kernel+initrd | HTTP: boot to marker | kernel+initrd | ratio |",
             "|---|---|---|---|---|---|"]
    valid = True
    for client in dict.fromkeys(r.client for r in results):
        tftp = next(r for r in results if r.client == client and r.transport == "tftp")
        http = next(r for r in results if r.client == client and r.transport == "http")
        ok = (tftp.outcome == http.outcome == "marker" and tftp.transports == {"tftp"}
              and http.transports == {"http"})
        valid = valid and ok
        ratio = f"{http.seconds / tftp.seconds:.2f}×" if ok else "invalid"
        label = {"bios": "SeaBIOS + iPXE ROM", "uefi": "OVMF PXE → ipxe.efi"}[client]
        lines.append(f"| {label} | {tftp.seconds:.1f} s ({tftp.outcome}) | {tftp.transfer_seconds:.1f} s "
                     f"| {http.seconds:.1f} s ({http.outcome}) | {http.transfer_seconds:.1f} s | {ratio} |")
    lines += ["", f"Goal: HTTP ≤ {GOAL}× the TFTP-only time."]
    return "\n".join(lines), valid


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uefi", action="store_true", help="also boot OVMF (UEFI PXE → ipxe.efi), ~3 min more")
    parser.add_argument("--no-write", action="store_true", help="do not update bench/RESULTS.md")
    args = parser.parse_args(argv)
    clients = ["bios", *(["uefi"] if args.uefi else [])]
    results: list[Measured] = []
    workdir = Path(tempfile.mkdtemp(prefix="bench-qemu-boot-"))
    try:
        with lab_session(workdir, dhcp_boot_options=False, router_advertisements=True, http_port=HTTP_PORT,
                         proxy_dhcp=True, ipxe_firmware=IPXE_NBPS) as e2e:
            for client in clients:
                for http in (False, True):
                    results.append(boot(e2e, client, http))
    except LabUnavailable as e:
        print(f"bench.qemu_boot: skipped: {e}", file=sys.stderr)
        return 0
    text, valid = table(results)
    print("\n" + text)
    if not args.no_write:
        write_block("qemu-boot", "x86 boot to root: TFTP only vs HTTP", text)
    return 0 if valid else 1


if __name__ == "__main__":
    sys.exit(main())

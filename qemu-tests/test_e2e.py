"""End-to-end netboot: real client VMs boot from the appliance running in the server VM.

kernel + initrd over the appliance's TFTP, the root filesystem from its LIO
target, generations picked per MAC.  One server VM (real LIO, ``netboot serve``)
for the whole module, on a bridge in a private network namespace with dnsmasq
for DHCP; one client VM at a time.  Run with ``qemu-tests/e2e/run``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from e2e.artifacts import build_arch                      # noqa: E402
from e2e.clients import (Boot, arm64_uboot_argv, format_timeline, raspi3b_argv, run_client,  # noqa: E402
                         x86_ipxe_argv, UBOOT_BIOS)
from e2e.net import Client, Lab                           # noqa: E402
from e2e.server import Appliance, initiator_iqn, target_iqn  # noqa: E402
from e2e.store import HostSpec, build_store               # noqa: E402

pytestmark = pytest.mark.vm

PC = HostSpec("pc", "ipxe", "amd64", "52:54:00:e2:00:11", 11, "ttyS0,115200", generations=(1, 2, 3), failing=(3,))
INTRUDER = HostSpec("intruder", "ipxe", "amd64", "52:54:00:e2:00:12", 12, "ttyS0,115200", rootfs=False)
ARM = HostSpec("arm", "uboot", "arm64", "52:54:00:e2:00:21", 21, "ttyAMA0,115200")
PI = HostSpec("pi", "rpi", "arm64", "dc:a6:32:e2:00:31", 31, "ttyAMA0,115200")
HOSTS = [PC, INTRUDER, ARM, PI]

CLIENT_TIMEOUT = float(os.environ.get("E2E_CLIENT_TIMEOUT", "240"))


def _missing_requirements() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces, taps)"
    for tool in ("qemu-system-x86_64", "qemu-system-aarch64", "dnsmasq", "ip", "mke2fs", "apt-get", "dpkg-deb"):
        if shutil.which(tool) is None:
            return f"{tool} not installed (scripts/install.sh)"
    if not Path("/dev/net/tun").exists():
        return "no /dev/net/tun"
    return None


class Summary:
    """Collects one row per boot; printed at the end of the pytest run."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str, float]] = []
        self.timelines: list[str] = []
        self.setup_seconds = 0.0

    def pytest_terminal_summary(self, terminalreporter) -> None:
        tr = terminalreporter
        tr.section("end-to-end netboot")
        tr.write_line(f"setup (artifacts + server VM + appliance): {self.setup_seconds:.1f} s")
        tr.write_line(f"{'scenario':<34} {'outcome':<28} {'expected':<22} {'seconds':>8}")
        for scenario, outcome, expected, seconds in self.rows:
            tr.write_line(f"{scenario:<34} {outcome:<28} {expected:<22} {seconds:>8.1f}")


class E2E:
    def __init__(self, net: Lab, appliance: Appliance, workdir: Path, summary: Summary, arches: dict) -> None:
        self.net = net
        self.appliance = appliance
        self.workdir = workdir
        self.summary = summary
        self.arches = arches
        self.registered = {h.name: 1 for h in HOSTS}

    def ip(self, spec: HostSpec) -> str:
        return f"{self.net.prefix}.{spec.octet}"

    def register(self, spec: HostSpec, n: int) -> None:
        """Register generations of ``spec`` up to ``n`` (in order, so numbers match)."""
        while self.registered[spec.name] < n:
            k = self.registered[spec.name] + 1
            out = self.appliance.netboot("register", spec.name, self.appliance.built.toplevels[spec.name][k])
            assert f"generation {k}" in out, out
            self.registered[spec.name] = k

    def boot(self, scenario: str, spec: HostSpec, expected: str, reboot: bool = False,
             until: str = "marker", stop_on_failure: bool = True, argv: list[str] | None = None) -> Boot:
        console = self.workdir / f"{scenario}.console.log"
        if argv is None:
            make = x86_ipxe_argv if spec.arch == "amd64" else arm64_uboot_argv
            argv = make(console, self.net.client_tap, spec.mac, reboot=reboot)
        boot = run_client(scenario, argv, self.net.name, self.workdir, timeout=CLIENT_TIMEOUT, until=until,
                          stop_on_failure=stop_on_failure)
        self.report(scenario, spec, boot, expected)
        return boot

    def report(self, scenario: str, spec: HostSpec, boot: Boot, expected: str) -> None:
        self.appliance.measure_clock()
        events = self.appliance.events(spec.name, since=boot.started - 2)
        timeline = format_timeline(boot, events, self.appliance.clock_offset, self.net.dhcp_acks(spec.mac))
        print("\n" + timeline, flush=True)
        self.summary.timelines.append(timeline)
        with open(self.workdir / "timelines.txt", "a") as f:
            f.write(timeline + "\n\n")
        gens = boot.generations()
        outcome = f"{boot.outcome}" + (f" (generation {','.join(gens)})" if gens else "")
        self.summary.rows.append((scenario, outcome, expected, boot.seconds))


@pytest.fixture(scope="module")
def e2e(request, tmp_path_factory):
    why = _missing_requirements()
    if why:
        pytest.skip(why)
    summary = Summary()
    request.config.pluginmanager.register(summary, f"e2e-summary-{id(summary)}")
    started = time.monotonic()
    workdir = tmp_path_factory.mktemp("e2e")
    print(f"\ne2e: logs in {workdir}", flush=True)
    arches = {a: build_arch(a) for a in ("amd64", "arm64")}
    built = build_store(HOSTS, arches)
    net = Lab(workdir=workdir)
    net.clients = [Client(h.name, h.mac, f"{net.prefix}.{h.octet}") for h in HOSTS]
    with net:
        appliance = Appliance(
            netns=net.name, tap=net.server_tap, server_ip=net.server_ip, built=built, hosts=HOSTS,
            workdir=workdir / "server",
            cmdline_override={INTRUDER.name: (f"netboot.iscsi_initiator={initiator_iqn(INTRUDER.name)} "
                                              f"netboot.iscsi_target={target_iqn(PC.name)} "
                                              f"netboot.iscsi_portal={net.server_ip}")})
        appliance.start()
        try:
            summary.setup_seconds = time.monotonic() - started
            print(f"e2e: server VM + appliance ready after {summary.setup_seconds:.1f} s", flush=True)
            yield E2E(net, appliance, workdir, summary, arches)
        finally:
            appliance.stop()


# -- 1. x86_64 iPXE ----------------------------------------------------------------------------

def test_x86_ipxe_boots_generation_over_tftp_and_iscsi(e2e: E2E) -> None:
    boot = e2e.boot("1 x86 iPXE", PC, "marker generation 1")
    assert boot.outcome == "marker", boot.text()[-3000:]
    assert boot.generations() == ["1"]
    assert "init=generation-1" in boot.markers[0]
    events = e2e.appliance.events(PC.name, since=boot.started - 2)
    paths = [e["path"] for e in events if e["outcome"] == "complete"]
    assert "boot.ipxe" in paths
    assert f"{PC.mac.replace(':', '-')}/generations/1/kernel" in paths
    assert f"{PC.mac.replace(':', '-')}/generations/1/initrd" in paths
    status = e2e.appliance.status(PC.name)["hosts"][PC.name]
    assert status["served"] == 1

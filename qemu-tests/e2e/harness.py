"""What the end-to-end modules share: the lab's hosts, the per-boot summary and the
``E2E`` handle scenarios use (network, appliance, boot + report)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest

from .artifacts import build_arch
from .clients import Boot, arm64_uboot_argv, format_timeline, run_client, x86_ipxe_argv
from .net import Client, Lab
from .server import Appliance
from .store import HostSpec, build_store

PC = HostSpec("pc", "ipxe", "amd64", "52:54:00:e2:00:11", 11, "ttyS0,115200", generations=(1, 2, 3), failing=(3,))
INTRUDER = HostSpec("intruder", "ipxe", "amd64", "52:54:00:e2:00:12", 12, "ttyS0,115200", rootfs=False)
ARM = HostSpec("arm", "uboot", "arm64", "52:54:00:e2:00:21", 21, "ttyAMA0,115200")
PI = HostSpec("pi", "rpi", "arm64", "dc:a6:32:e2:00:31", 31, "ttyAMA0,115200", kernel_gz=True)
HOSTS = [PC, INTRUDER, ARM, PI]

# A give-up bound: a boot that fails ends at its failure line. Boots took up to ~110 s on a busy
# machine (TFTP from a TCG server); twice that on a heavily loaded one is still not a hang.
CLIENT_TIMEOUT = float(os.environ.get("E2E_CLIENT_TIMEOUT", "480"))


def missing_requirements() -> str | None:
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

    def wait_sessions_gone(self, spec: HostSpec, timeout: float = 90) -> float:
        """Seconds until LIO holds no session of ``spec``'s target (bounded; goes on after ``timeout``).

        A client switched off while logged in leaves its session behind until LIO notices.  So
        that each scenario tests one thing, the lab waits; the power-cut scenario in test_e2e.py
        boots without waiting, which LIO handles by reinstating the session."""
        def gone() -> bool:
            return not self.appliance.status(spec.name)["hosts"][spec.name]["iscsi"]["session"]
        started = time.monotonic()
        while not gone() and time.monotonic() - started < timeout:
            time.sleep(2)
        return time.monotonic() - started

    def boot(self, scenario: str, spec: HostSpec, expected: str, reboot: bool = False,
             until: str = "marker", stop_on_failure: bool = True, argv: list[str] | None = None,
             wait_stale_session: bool = True) -> Boot:
        """Boot ``spec``'s client once (after its previous client's iSCSI session is gone, unless
        ``wait_stale_session`` is false: a machine that lost power logs in again at once)."""
        if spec.rootfs and wait_stale_session:
            waited = self.wait_sessions_gone(spec)
            print(f"\n{scenario}: {spec.name}'s previous iSCSI session gone after {waited:.0f} s", flush=True)
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
        timeline = format_timeline(boot, events, self.appliance.clock_offset, self.net.dhcp_log(spec.mac))
        print("\n" + timeline, flush=True)
        self.summary.timelines.append(timeline)
        with open(self.workdir / "timelines.txt", "a") as f:
            f.write(timeline + "\n\n")
        gens = boot.generations()
        outcome = f"{boot.outcome}" + (f" (generation {','.join(gens)})" if gens else "")
        self.summary.rows.append((scenario, outcome, expected, boot.seconds))


class LabUnavailable(RuntimeError):
    """This machine cannot run the lab (not root, a tool missing)."""


@contextlib.contextmanager
def lab_session(workdir: Path, summary: Summary | None = None, *,
                cmdline_override: dict[str, Callable[[str], str]] | None = None,
                dhcp_boot_options: bool = True, router_advertisements: bool = False,
                **appliance_options) -> Iterator[E2E]:
    """One lab: artifacts, the bridge with dnsmasq, the server VM running ``netboot serve``;
    torn down on exit, also after a failure or SIGTERM.

    ``dhcp_boot_options=False`` makes dnsmasq hand out addresses only (a home router), for
    the appliance's proxyDHCP; ``router_advertisements`` puts IPv6 RAs on the bridge (see ``Lab``);
    ``appliance_options`` go to ``Appliance`` (HTTP, proxyDHCP, iPXE NBPs);
    ``cmdline_override`` maps a host to a function of the server address giving its command line.
    """
    why = missing_requirements()
    if why:
        raise LabUnavailable(why)

    def interrupted(signum, frame):   # a killed run still tears down VMs, dnsmasq and the namespace
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupted)
    summary = summary or Summary()
    try:
        started = time.monotonic()
        print(f"\ne2e: logs in {workdir}", flush=True)
        arches = {a: build_arch(a) for a in ("amd64", "arm64")}
        built = build_store(HOSTS, arches)
        net = Lab(workdir=workdir, boot_file="boot.ipxe" if dhcp_boot_options else None,
                  router_advertisements=router_advertisements)
        net.clients = [Client(h.name, h.mac, f"{net.prefix}.{h.octet}") for h in HOSTS]
        with net:
            appliance = Appliance(
                netns=net.name, tap=net.server_tap, server_ip=net.server_ip, built=built, hosts=HOSTS,
                workdir=workdir / "server",
                cmdline_override={name: make(net.server_ip) for name, make in (cmdline_override or {}).items()},
                **appliance_options)
            appliance.start()
            try:
                summary.setup_seconds = time.monotonic() - started
                print(f"e2e: server VM + appliance ready after {summary.setup_seconds:.1f} s", flush=True)
                yield E2E(net, appliance, workdir, summary, arches)
            finally:
                appliance.stop()
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def module_lab(request, workdir: Path, **options) -> Iterator[E2E]:
    """``lab_session`` for a module-scoped pytest fixture: skipped where the lab cannot run,
    its per-boot summary printed at the end of the run."""
    summary = Summary()
    request.config.pluginmanager.register(summary, f"e2e-summary-{id(summary)}")
    try:
        with lab_session(workdir, summary, **options) as e2e:
            yield e2e
    except LabUnavailable as e:
        pytest.skip(str(e))

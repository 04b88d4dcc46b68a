"""End-to-end netboot: real client VMs boot from the appliance running in the server VM.

kernel + initrd over the appliance's TFTP, the root filesystem from its LIO
target, generations picked per MAC.  One server VM (real LIO, ``netboot serve``)
for the whole module, on a bridge in a private network namespace with dnsmasq
for DHCP; one client VM at a time.  Run with ``qemu-tests/e2e/run``.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from e2e.artifacts import build_arch                      # noqa: E402
from e2e.clients import (Boot, arm64_uboot_argv, format_timeline, raspi3b_argv, run_client,  # noqa: E402
                         x86_ipxe_argv, UBOOT_BIOS)
from e2e.net import Client, Lab                           # noqa: E402
from e2e.server import CONFIG, Appliance, initiator_iqn, target_iqn  # noqa: E402
from e2e.store import HostSpec, build_store               # noqa: E402
from tests.helpers import eventually                      # noqa: E402

pytestmark = pytest.mark.vm

PC = HostSpec("pc", "ipxe", "amd64", "52:54:00:e2:00:11", 11, "ttyS0,115200", generations=(1, 2, 3), failing=(3,))
INTRUDER = HostSpec("intruder", "ipxe", "amd64", "52:54:00:e2:00:12", 12, "ttyS0,115200", rootfs=False)
ARM = HostSpec("arm", "uboot", "arm64", "52:54:00:e2:00:21", 21, "ttyAMA0,115200")
PI = HostSpec("pi", "rpi", "arm64", "dc:a6:32:e2:00:31", 31, "ttyAMA0,115200", kernel_gz=True)
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
        timeline = format_timeline(boot, events, self.appliance.clock_offset, self.net.dhcp_log(spec.mac))
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
    def interrupted(signum, frame):   # a killed run still tears down VMs, dnsmasq and the namespace
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupted)
    request.addfinalizer(lambda: signal.signal(signal.SIGTERM, previous))
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


# -- 6. isolation: a foreign initiator IQN cannot log into another host's LUN -----------------

def test_foreign_initiator_is_refused_at_login(e2e: E2E) -> None:
    # "intruder" boots its own kernel + initrd, but its command line names pc's target.
    boot = e2e.boot("6 isolation (wrong IQN)", INTRUDER, "login refused, no marker")
    text = boot.text()
    assert not boot.markers, text[-3000:]
    assert "e2e-initrd: iscsi login initiator=" + initiator_iqn(INTRUDER.name) in text
    assert any("iscsi login rejected" in f for f in boot.failures), text[-3000:]
    assert "e2e-initrd: root mounted" not in text
    assert "authorization failure" in text, text[-3000:]      # iscsistart: login rejected by the target
    dmesg = e2e.appliance.dmesg()
    refused = [line for line in dmesg.splitlines()
               if "not authorized" in line and initiator_iqn(INTRUDER.name).lower() in line.lower()]
    assert refused, "no 'not authorized' line for the intruder in the server's kernel log"
    print("server kernel log: " + refused[-1].strip())
    # No session of pc's target belongs to the intruder: the appliance reads LIO's sessions
    # (a list, or None when the target has none; "unknown" would mean it could not tell).
    pc = e2e.appliance.status(PC.name)["hosts"][PC.name]
    sessions = pc["iscsi"]["session"]
    assert sessions is None or isinstance(sessions, list), sessions
    assert initiator_iqn(INTRUDER.name) not in {s["initiator"] for s in sessions or ()}, sessions


# -- 4. rollback per MAC ----------------------------------------------------------------------

def _wait_served(e2e: E2E, spec: HostSpec, number: int, reason: str | None = None, timeout: float = 20) -> dict:
    def served() -> dict | None:
        st = e2e.appliance.status(spec.name)["hosts"][spec.name]
        return st if st["served"] == number and (reason is None or st["reason"] == reason) else None

    st, _ = eventually(served, timeout, f"{spec.name} served {number} ({reason or 'any reason'})", interval=0.5)
    return st


def _boot_ipxe_text(e2e: E2E, spec: HostSpec) -> str:
    return e2e.appliance.netboot("cat", spec.name, "boot.ipxe")


def test_register_then_rollback_changes_the_booted_generation(e2e: E2E) -> None:
    e2e.register(PC, 2)
    _wait_served(e2e, PC, 2, "follow")
    boot = e2e.boot("4a rollback: registered 2", PC, "marker generation 2")
    assert boot.outcome == "marker", boot.text()[-3000:]
    assert boot.generations() == ["2"]
    assert "init=generation-2" in boot.markers[0]

    out = e2e.appliance.netboot("rollback", PC.name)
    assert "serving generation 1" in out, out
    _wait_served(e2e, PC, 1, "pin")
    boot = e2e.boot("4b rollback: rolled back", PC, "marker generation 1")
    assert boot.outcome == "marker", boot.text()[-3000:]
    assert boot.generations() == ["1"]
    events = e2e.appliance.events(PC.name, since=boot.started - 2)
    assert {e["generation"] for e in events if "/generations/" in e["path"]} == {1}, events


# -- 5. trial: a generation that does not come up is reverted on its next fetch ----------------

def test_failed_trial_reverts_on_refetch(e2e: E2E) -> None:
    # Generation 1 pinned before 2 and 3 exist, so this test needs no earlier one.
    if e2e.appliance.status(PC.name)["hosts"][PC.name]["pin"] != 1:
        e2e.appliance.netboot("pin", PC.name, "1")
    _wait_served(e2e, PC, 1, "pin")
    e2e.register(PC, 3)
    _wait_served(e2e, PC, 1)
    out = e2e.appliance.netboot("trial", PC.name, "3")
    assert "serving generation 3 (trial)" in out, out
    _wait_served(e2e, PC, 3, "trial")
    # One client run: generation 3's init reboots the machine, iPXE fetches boot.ipxe again,
    # the appliance reverts the trial and the second boot comes up on generation 1.
    boot = e2e.boot("5 trial: failing gen 3", PC, "fail 3, then marker 1", reboot=True, stop_on_failure=False)
    text = boot.text()
    assert any("generation=3" in f for f in boot.failures), text[-3000:]
    assert boot.outcome == "marker", text[-3000:]
    assert boot.generations() == ["1"]
    st = _wait_served(e2e, PC, 1)
    assert st["trial"] is None
    reverted = [h for h in st["history"] if h.get("event") == "trial-reverted"]
    assert reverted and reverted[-1]["generation"] == 3, st["history"]
    assert "again before the trial of generation 3 was confirmed" in reverted[-1]["reason"]
    print("netboot status: trial reverted: " + reverted[-1]["reason"])
    human = e2e.appliance.netboot("status", PC.name)
    assert "trial-reverted" in human, human


# -- 2. aarch64 U-Boot ------------------------------------------------------------------------

def test_aarch64_uboot_boots_via_boot_scr_and_pxelinux_menu(e2e: E2E) -> None:
    if not UBOOT_BIOS.exists():
        pytest.skip(f"{UBOOT_BIOS} missing (u-boot-qemu)")
    boot = e2e.boot("2 aarch64 U-Boot", ARM, "marker generation 1")
    text = boot.text()
    assert boot.outcome == "marker", text[-4000:]
    assert boot.generations() == ["1"]
    events = e2e.appliance.events(ARM.name, since=boot.started - 2)
    paths = [e["path"] for e in events if e["outcome"] == "complete"]
    assert "boot.scr.uimg" in paths, paths
    assert f"pxelinux.cfg/01-{ARM.mac.replace(':', '-')}" in paths, paths
    assert f"{ARM.mac.replace(':', '-')}/generations/1/kernel" in paths, paths


# -- 3. Raspberry Pi: EEPROM emulator fetches the tree, QEMU raspi3b boots it ------------------

def test_raspi_tree_fetched_like_the_eeprom_then_raspi3b_boots_it(e2e: E2E) -> None:
    from e2e.rpi import emulate_pi_boot

    prefix = PI.mac.replace(":", "-") + "/"
    peer = e2e.net.add_peer_namespace("pi", PI.mac, e2e.ip(PI))
    fetched = e2e.workdir / "pi-fetched"
    started = time.time()
    try:
        # The EEPROM gives each file 30 s; E2E_PI_FILE_TIMEOUT relaxes it on a very slow machine.
        result = emulate_pi_boot(peer, e2e.net.server_ip, prefix, fetched,
                                 extra_files=("bcm2711-rpi-4-b.dtb", "bcm2837-rpi-3-b.dtb"),
                                 per_file_timeout=float(os.environ.get("E2E_PI_FILE_TIMEOUT", "30")))
    finally:
        e2e.net.remove_peer_namespace(peer)
    print("\nPi bootloader emulator: " + ", ".join(
        f"{n} {s} B in {result['durations'][n]:.1f} s" for n, s in result["files"].items()))
    print(f"  tsize probe start4.elf = {result['tsize']['start4.elf']} B; missing as expected: {result['missing']}")
    cmdline = (fetched / "cmdline.txt").read_text().strip()
    config = (fetched / "config.txt").read_text()
    assert "kernel=kernel8.img" in config and "initramfs initrd followkernel" in config
    assert "netboot.generation=1" in cmdline and f"netboot.iscsi_initiator={initiator_iqn(PI.name)}" in cmdline
    events = e2e.appliance.events(PI.name, since=started - 2)
    early = [e for e in events if e["path"] == prefix + "start4.elf" and e["outcome"] != "complete"]
    assert early, "the tsize probe's early terminate should be a recorded (aborted) transfer"
    e2e.summary.rows.append(("3a Pi EEPROM emulator (TFTP)", "tree fetched", "all files, probes ok",
                             round(result["seconds"], 1)))

    console = e2e.workdir / "3 raspi3b.console.log"
    argv = raspi3b_argv(console, e2e.net.client_tap, PI.mac, fetched / "kernel8.img",
                        fetched / "bcm2837-rpi-3-b.dtb", fetched / "initrd", cmdline)
    boot = e2e.boot("3b raspi3b (fetched files)", PI, "marker generation 1", argv=argv)
    assert boot.outcome == "marker", boot.text()[-4000:]
    assert boot.generations() == ["1"]


# -- 7. menu_timeout = 0: real iPXE and real U-Boot boot the default at once -------------------

def _set_menu_timeout(e2e: E2E, seconds: int) -> None:
    """Edit every host's menu_timeout in the server's config and wait for the daemon's reload."""
    before = e2e.appliance.log().count("configuration reloaded")
    e2e.appliance.sh(f"sed -i 's/^menu_timeout = .*/menu_timeout = {seconds}/' {CONFIG}")
    eventually(lambda: e2e.appliance.log().count("configuration reloaded") > before, 30,
               "the appliance to reload its config", interval=0.5)


def test_menu_timeout_zero_boots_the_default_at_once(e2e: E2E) -> None:
    _set_menu_timeout(e2e, 0)
    try:
        script = _boot_ipxe_text(e2e, PC)
        assert "choose" not in script and "\nmenu " not in script, script
        served = e2e.appliance.status(PC.name)["hosts"][PC.name]["served"]
        boot = e2e.boot("7a menu_timeout=0 iPXE", PC, f"marker generation {served}")
        text = boot.text()
        assert boot.outcome == "marker", text[-3000:]          # a 'choose --timeout 0' waits forever
        assert boot.generations() == [str(served)]
        assert "Generations (newest first)" not in text          # no menu was drawn

        if not UBOOT_BIOS.exists():
            pytest.skip(f"{UBOOT_BIOS} missing (u-boot-qemu)")
        menu = e2e.appliance.netboot("cat", ARM.name, f"pxelinux.cfg/01-{ARM.mac.replace(':', '-')}")
        assert "TIMEOUT 1\n" in menu and "MENU TITLE" not in menu, menu
        served = e2e.appliance.status(ARM.name)["hosts"][ARM.name]["served"]
        boot = e2e.boot("7b menu_timeout=0 U-Boot", ARM, f"marker generation {served}")
        text = boot.text()
        assert boot.outcome == "marker", text[-4000:]
        assert boot.generations() == [str(served)]
        assert "Enter choice" not in text                       # U-Boot did not stop at its menu prompt
    finally:
        _set_menu_timeout(e2e, 1)

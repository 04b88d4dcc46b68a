"""End-to-end netboot: real client VMs boot from the appliance running in the server VM.

kernel + initrd over the appliance's TFTP, the root filesystem from its LIO
target, generations picked per MAC.  One server VM (real LIO, ``netboot serve``)
for the whole module, on a bridge in a private network namespace with dnsmasq
for DHCP; one client VM at a time.  Run with ``qemu-tests/e2e/run``.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from e2e.clients import raspi3b_argv, UBOOT_BIOS          # noqa: E402
from e2e.harness import ARM, INTRUDER, PC, PI, E2E, module_lab  # noqa: E402
from e2e.server import CONFIG, initiator_iqn, target_iqn  # noqa: E402
from e2e.store import HostSpec                            # noqa: E402
from tests.helpers import eventually                      # noqa: E402

pytestmark = pytest.mark.vm


@pytest.fixture(scope="module")
def e2e(request, tmp_path_factory):
    intruder_cmdline = (lambda server_ip: f"netboot.iscsi_initiator={initiator_iqn(INTRUDER.name)} "
                        f"netboot.iscsi_target={target_iqn(PC.name)} netboot.iscsi_portal={server_ip}")
    with module_lab(request, tmp_path_factory.mktemp("e2e"), cmdline_override={INTRUDER.name: intruder_cmdline}) as e2e:
        yield e2e


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


def _iscsi_sessions(e2e: E2E, spec: HostSpec) -> list[dict]:
    return e2e.appliance.status(spec.name)["hosts"][spec.name]["iscsi"]["session"] or []


def test_a_client_that_lost_power_while_logged_in_boots_again_at_once(e2e: E2E) -> None:
    # A Pi whose power is cut leaves its session in LIO until LIO notices it is gone; switched
    # on again, it logs in with the same initiator name meanwhile, and LIO must reinstate the
    # session and give it its disk (RFC 7143 section 6.3.5).
    if not _iscsi_sessions(e2e, PC):
        boot = e2e.boot("1b power cut: first boot", PC, "marker generation 1")
        assert boot.outcome == "marker", boot.text()[-3000:]
    held = _iscsi_sessions(e2e, PC)
    assert [s["initiator"].lower() for s in held] == [initiator_iqn(PC.name).lower()], held
    boot = e2e.boot("1b power cut: boots again", PC, "marker generation 1", wait_stale_session=False)
    assert boot.outcome == "marker", boot.text()[-3000:]
    assert boot.generations() == ["1"]


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

def _wait_served(e2e: E2E, spec: HostSpec, number: int, reason: str | None = None, timeout: float = 180) -> dict:
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
    eventually(lambda: e2e.appliance.log().count("configuration reloaded") > before, 180,
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

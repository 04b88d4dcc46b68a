"""Client machines that netboot from the appliance, and the timeline of each boot.

One client at a time, ``-smp 1``, TCG.  The console goes to a file that is
watched while the VM runs; the first time each milestone line appears is
recorded (host clock, seconds from QEMU start).  QEMU is started in the test's
namespace and killed by its PID when the boot ends, also on failure.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from .artifacts import FAILED, MARKER

UBOOT_BIOS = Path("/usr/lib/u-boot/qemu_arm64/u-boot.bin")
OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS.fd")

# (label, regex) milestones in console order; the first match of each is timed.
MILESTONES = (
    ("firmware: DHCP", r"Configuring \(net0|BOOTP broadcast|DHCP client bound|sending discover"
                       r"|>>Start (PXE|HTTP Boot) over IPv4"),
    ("firmware: NBP downloaded", r"Downloading NBP file|Downloading\.\.\.|NBP file downloaded"),
    ("iPXE started", r"iPXE initialising devices"),
    ("firmware: boot script", r"boot\.ipxe\.\.\.|boot\.scr\.uimg|Retrieving file: pxelinux\.cfg|## Executing script"),
    ("kernel started", r"Linux version \d"),
    ("initrd: start", r"e2e-initrd: start"),
    ("initrd: DHCP ok", r"e2e-initrd: dhcp ok"),
    ("initrd: iSCSI login ok", r"e2e-initrd: iscsi login ok"),
    ("initrd: iSCSI login FAILED", r"e2e-initrd: FAILED: iscsi"),
    ("initrd: root mounted", r"e2e-initrd: root mounted"),
    ("init: marker", MARKER),
    ("init: failed (reboot)", FAILED),
)


# The firmware found nothing to boot: no point waiting for the timeout.
FIRMWARE_GAVE_UP = ("No bootable device", "Kernel panic", "SCRIPT FAILED", "netboot-appliance: pxe boot failed",
                    "UEFI Interactive Shell", "Boot Manager Menu")


@dataclass
class Boot:
    name: str
    console: Path
    started: float                      # host time.time() at QEMU start
    seen: list[tuple[float, str, str]] = field(default_factory=list)   # (seconds, label, line)
    markers: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    outcome: str = "running"            # marker | failed | exited | timeout
    seconds: float = 0.0

    def text(self) -> str:
        return self.console.read_text(errors="replace") if self.console.exists() else ""

    def generations(self) -> list[str]:
        return [m.group(1) for line in self.markers if (m := re.search(r"generation=(\S+)", line))]


def _qemu_common(console: Path) -> list[str]:
    return ["-accel", "tcg", "-smp", "1", "-nodefaults", "-display", "none",
            "-chardev", f"file,id=con,path={console}", "-serial", "chardev:con"]


def x86_ipxe_argv(console: Path, tap: str, mac: str, reboot: bool = False) -> list[str]:
    return ["qemu-system-x86_64", *_qemu_common(console), "-machine", "pc,graphics=off", "-vga", "none",
            "-m", "512", "-boot", "n", *([] if reboot else ["-no-reboot"]),
            "-netdev", f"tap,id=n0,ifname={tap},script=no,downscript=no",
            "-device", f"virtio-net-pci,netdev=n0,mac={mac}"]


def ovmf_argv(console: Path, tap: str, mac: str, vars_copy: Path, http_boot: bool = False) -> list[str]:
    """x86-64 UEFI (OVMF) whose own network stack boots: ``romfile=`` keeps the iPXE option ROM
    out of the NIC.  PXE over IPv6 is switched off (the lab boots over IPv4); ``http_boot``
    also switches off PXE over IPv4, so that UEFI HTTP Boot is the first boot option."""
    shutil.copyfile(OVMF_VARS, vars_copy)
    opts = ["IPv6PXESupport", *(["IPv4PXESupport"] if http_boot else [])]
    return ["qemu-system-x86_64", *_qemu_common(console), "-machine", "pc", "-m", "512", "-no-reboot",
            "-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}",
            "-drive", f"if=pflash,format=raw,unit=1,file={vars_copy}",
            *[a for opt in opts for a in ("-fw_cfg", f"name=opt/org.tianocore/{opt},string=n")],
            "-netdev", f"tap,id=n0,ifname={tap},script=no,downscript=no",
            "-device", f"virtio-net-pci,netdev=n0,mac={mac},romfile=,bootindex=1"]


def arm64_uboot_argv(console: Path, tap: str, mac: str, reboot: bool = False) -> list[str]:
    return ["qemu-system-aarch64", *_qemu_common(console), "-M", "virt", "-cpu", "cortex-a57", "-m", "768",
            "-bios", str(UBOOT_BIOS), *([] if reboot else ["-no-reboot"]),
            "-netdev", f"tap,id=n0,ifname={tap},script=no,downscript=no",
            "-device", f"virtio-net-pci,netdev=n0,mac={mac},romfile=,disable-legacy=on"]


def raspi3b_argv(console: Path, tap: str, mac: str, kernel: Path, dtb: Path, initrd: Path, cmdline: str) -> list[str]:
    return ["qemu-system-aarch64", "-M", "raspi3b", "-accel", "tcg", "-display", "none", "-no-reboot",
            "-kernel", str(kernel), "-dtb", str(dtb), "-initrd", str(initrd), "-append", cmdline,
            "-chardev", f"file,id=con,path={console}", "-serial", "chardev:con", "-serial", "null",
            "-netdev", f"tap,id=n0,ifname={tap},script=no,downscript=no",
            "-device", f"usb-net,netdev=n0,mac={mac}"]


def run_client(name: str, argv: Sequence[str], netns: str, workdir: Path, timeout: float = 300,
               until: str = "marker", stop_on_failure: bool = True) -> Boot:
    """Boot one client; returns when the marker appears (``until="marker"``), a failure line
    appears (and ``stop_on_failure``), QEMU exits, or ``timeout`` passes.  The VM is then killed."""
    workdir.mkdir(parents=True, exist_ok=True)
    console = Path(next(a.split("path=", 1)[1].split(",")[0] for a in argv if a.startswith("file,id=con,path=")))
    if console.exists():
        console.unlink()
    qemu_log = open(workdir / f"{name}.qemu.log", "wb")
    started = time.time()
    proc = subprocess.Popen(["ip", "netns", "exec", netns, *argv], stdin=subprocess.DEVNULL, stdout=qemu_log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    boot = Boot(name=name, console=console, started=started)
    done_labels: set[str] = set()
    offset = 0
    partial = b""
    try:
        while True:
            exited = proc.poll() is not None
            if console.exists():
                with open(console, "rb") as f:
                    f.seek(offset)
                    chunk = f.read()
                offset += len(chunk)
                data = partial + chunk
                lines = data.split(b"\n")
                partial = lines.pop()
                now = time.time() - started
                for raw in lines:
                    line = raw.decode(errors="replace").replace("\r", "").strip()
                    # Firmware consoles redraw lines with escape sequences; strip them.
                    line = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", line)
                    for label, pattern in MILESTONES:
                        if label not in done_labels and re.search(pattern, line):
                            done_labels.add(label)
                            boot.seen.append((round(now, 1), label, line[:160]))
                    if MARKER in line:
                        boot.markers.append(line)
                    if FAILED in line or "e2e-initrd: FAILED" in line or any(f in line for f in FIRMWARE_GAVE_UP):
                        boot.failures.append(line)
                if until == "marker" and boot.markers:
                    boot.outcome = "marker"
                    break
                if stop_on_failure and boot.failures:
                    time.sleep(1.0)   # let the failure's context reach the console
                    boot.outcome = "failed"
                    break
            if exited:
                boot.outcome = "exited"
                break
            if time.time() - started > timeout:
                boot.outcome = "timeout"
                break
            time.sleep(0.2)
    finally:
        boot.seconds = round(time.time() - started, 1)
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)   # our own QEMU, by PID (ip netns exec execs it)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        qemu_log.close()
    return boot


def dhcp_events(lines: Sequence[str], since: float) -> list[tuple[float, str]]:
    """(host time, "DHCPACK 10.x.y.z") from dnsmasq's log lines (1 s resolution), at or after ``since``."""
    out = []
    year = time.localtime(since).tm_year
    for line in lines:
        m = re.match(r"(\w{3}\s+\d+ \d\d:\d\d:\d\d) dnsmasq-dhcp\[\d+\]: \d+ (DHCP\w+)\(\S+\) (\S+)", line)
        if not m:
            continue
        when = time.mktime(time.strptime(f"{year} {m.group(1)}", "%Y %b %d %H:%M:%S"))
        kind = m.group(2)
        if when < int(since) or kind not in ("DHCPDISCOVER", "DHCPACK"):
            continue
        if kind == "DHCPDISCOVER" and out and out[-1][1].startswith("DHCPDISCOVER"):
            continue   # retransmissions of one exchange
        out.append((when, f"{kind} {m.group(3)}"))
    return out


def format_timeline(boot: Boot, events: Sequence[dict], clock_offset: float, dhcp: Sequence[str] = ()) -> str:
    """Console milestones and the appliance's TFTP and HTTP boot events on one time axis."""
    rows: list[tuple[float, str]] = []
    for t, label, line in boot.seen:
        rows.append((t, f"{label:<28} {line[:90]}"))
    for ev in events:
        end = ev.get("time", 0) + clock_offset - boot.started
        dur = float(ev.get("duration") or 0)
        kib = (ev.get("bytes") or 0) / 1024
        rate = f"{kib / 1024 / dur:.1f} MiB/s" if dur > 0 else "-"
        transport = str(ev.get("transport") or "tftp").upper()
        rows.append((end - dur, f"{transport + ' ' + str(ev.get('outcome')):<28} {ev.get('path')} "
                                f"gen {ev.get('generation')}: {kib:.0f} KiB in {dur:.2f} s ({rate})"))
    for when, what in dhcp_events(dhcp, boot.started):
        rows.append((when - boot.started, f"{'DHCP (dnsmasq)':<28} {what}"))
    rows.sort(key=lambda r: r[0])
    out = [f"timeline {boot.name}: outcome {boot.outcome} after {boot.seconds:.1f} s"]
    out += [f"  {t:7.1f} s  {text}" for t, text in rows]
    return "\n".join(out)

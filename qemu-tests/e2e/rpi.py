"""The Pi 4 EEPROM bootloader emulator (``tests/peers/pi_bootloader.py``) against the appliance.

It runs in a namespace of its own whose NIC has the Pi's MAC and address (the
appliance decides whose files a client may read by its MAC), fetches the
host's tree as the EEPROM does (tsize probe + early terminate, missing-file
probes, two parallel requests, blksize 1024, all under the MAC prefix) and
writes what it fetched to a directory for QEMU ``raspi3b``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from .store import REPO

RUNNER = r"""
import json, sys, time
from pathlib import Path
from tests.peers.pi_bootloader import PI_BOOT_FILES, Pi4Bootloader

server, prefix, out, timeout = sys.argv[1], sys.argv[2], Path(sys.argv[3]), float(sys.argv[4])
extra = tuple(sys.argv[5:])
# The server is a TCG VM on a possibly loaded machine: "not found" within a third of a file's budget.
pi = Pi4Bootloader((server, 69), prefix=prefix, per_file_timeout=timeout, missing_within=timeout / 3)
t0 = time.monotonic()
result = pi.boot(files=PI_BOOT_FILES + extra)
for name, data in result.files.items():
    (out / name).write_bytes(data)
json.dump({"files": {n: len(d) for n, d in result.files.items()}, "durations": result.durations,
           "tsize": result.tsize, "missing": result.missing, "seconds": time.monotonic() - t0},
          open(out / "pi-boot.json", "w"), indent=2)
"""


def emulate_pi_boot(netns: str, server_ip: str, prefix: str, out: Path, extra_files: tuple[str, ...],
                    per_file_timeout: float, timeout: float = 600) -> dict:
    """Run the bootloader emulator inside ``netns``; returns its summary (raises on failure)."""
    out.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["ip", "netns", "exec", netns, sys.executable, "-c", RUNNER, server_ip, prefix, str(out),
                           str(per_file_timeout), *extra_files],
                          capture_output=True, text=True, timeout=timeout, cwd=REPO,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
    if proc.returncode != 0:
        raise AssertionError(f"Pi bootloader emulator failed (rc {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return json.loads((out / "pi-boot.json").read_text())

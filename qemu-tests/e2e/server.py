"""The appliance under test: ``netboot serve`` inside the lab's server VM (real LIO),
with its NIC on the test's bridge.

Reuses ``qemu-tests/lab`` (image, Python dependencies, ``ServerVM`` and its agent);
the only addition is running QEMU inside the test's network namespace, done
here by wrapping ``ServerVM.qemu_argv``.
"""

from __future__ import annotations

import json
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from lab import Share, ServerVM, build_pydeps, build_server_image, default_cache_dir
from lab.project import GUEST_DEPS, GUEST_REPO, REPO

from .store import BuiltStore, HostSpec

CONFIG = "/etc/netboot/appliance.toml"
LUN_DIR = "/var/lib/netboot/luns"
PROFILES = "/nix/var/nix/profiles/netboot"
TARGET_PREFIX = "iqn.2026-11.lan.netboot-e2e"
SERVER_MAC = "52:54:00:e2:00:02"


def initiator_iqn(host: str) -> str:
    return f"iqn.2026-11.lan.e2e-client:{host}"


def target_iqn(host: str) -> str:
    return f"{TARGET_PREFIX}:{host}"


@dataclass
class NetnsServerVM(ServerVM):
    """A ``ServerVM`` whose QEMU runs in a network namespace (``ip netns exec`` execs QEMU,
    so the PID the lab kills is QEMU's own)."""

    netns: str = ""

    def qemu_argv(self) -> list[str]:
        argv = super().qemu_argv()
        return ["ip", "netns", "exec", self.netns, *argv] if self.netns else argv


@dataclass
class Appliance:
    """Start the VM, put the store and LUNs in place, write the config, run ``netboot serve``."""

    netns: str
    tap: str
    server_ip: str
    built: BuiltStore
    hosts: Sequence[HostSpec]
    workdir: Path
    cmdline_override: dict[str, str] = field(default_factory=dict)   # host → cmdline (isolation)
    vm: NetnsServerVM | None = None
    clock_offset: float = 0.0       # host time - guest time

    def start(self) -> None:
        cache = default_cache_dir()
        image = build_server_image(cache)
        deps = build_pydeps(cache)
        env = {"PYTHONPATH": f"{GUEST_REPO}:{GUEST_DEPS}", "PYTHONDONTWRITEBYTECODE": "1",
               "PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root"}
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.vm = NetnsServerVM(
            image, netns=self.netns, user_net=False, smp=1, memory_mb=1024, env=env, workdir=self.workdir,
            shares=[Share(REPO, GUEST_REPO, readonly=True), Share(deps, GUEST_DEPS, readonly=True),
                    Share(self.built.store, "/nix/store", readonly=True),
                    Share(self.built.luns, "/lab/luns", readonly=True)],
            extra_args=["-netdev", f"tap,id=lan,ifname={self.tap},script=no,downscript=no",
                        "-device", f"virtio-net-pci,netdev=lan,mac={SERVER_MAC}"])
        self.vm.start()
        try:
            self._setup()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        if self.vm is not None:
            try:
                if self.vm.pid is not None:
                    self.vm.run("cp /var/log/netboot.log /tmp/ 2>/dev/null; dmesg > /var/log/dmesg.txt", timeout=20)
                    self._save_logs()
            except Exception:
                pass
            self.vm.stop()

    def _save_logs(self) -> None:
        assert self.vm
        for name in ("netboot.log", "dmesg.txt"):
            r = self.vm.run(f"cat /var/log/{name}", timeout=30)
            (self.workdir / f"server-{name}").write_text(r.stdout)

    def sh(self, cmd: str, timeout: float = 120, check: bool = True) -> str:
        assert self.vm
        r = self.vm.run(cmd, timeout=timeout)
        if check:
            r.check()
        return r.stdout

    def netboot(self, *args: str, check: bool = True, timeout: float = 120) -> str:
        return self.sh("netboot -c " + CONFIG + " " + shlex.join(args), timeout=timeout, check=check)

    def config_text(self) -> str:
        lines = ["[server]", 'state_dir = "/var/lib/netboot/state"', 'store_dir = "/nix/store"',
                 'tftp_listen = ["0.0.0.0:69"]', 'gcroots_dir = "/var/lib/netboot/gcroots"', "",
                 "[iscsi]", "enable = true", f'portals = ["{self.server_ip}:3260"]',
                 f'target_prefix = "{TARGET_PREFIX}"', "",
                 "[firmware.rpi]", f'path = "{self.built.firmware}"', ""]
        for h in self.hosts:
            cmdline = self.cmdline_override.get(h.name) or (
                f"netboot.iscsi_initiator={initiator_iqn(h.name)} netboot.iscsi_target={target_iqn(h.name)} "
                f"netboot.iscsi_portal={self.server_ip}")
            lines += [f"[hosts.{h.name}]", f'boot = "{h.boot}"', f'mac = "{h.mac}"',
                      f'profile = "{PROFILES}/{h.name}"', f'cmdline = "{cmdline}"', "menu_timeout = 1",
                      "trial_confirm_after = 600", "",
                      f"[hosts.{h.name}.iscsi]", f'initiator = "{initiator_iqn(h.name)}"',
                      f'lun = {{ file = "{LUN_DIR}/{h.name}.img", size = {self.built.lun_bytes} }}', ""]
        return "\n".join(lines)

    def _setup(self) -> None:
        assert self.vm
        self.sh(f"sysctl -q -w net.ipv6.conf.all.disable_ipv6=1; ip link set eth0 up && "
                f"ip addr add {self.server_ip}/24 dev eth0")
        self.vm.write_file("/usr/bin/netboot", '#!/bin/sh\nexec python3 -m appliance.cli.main "$@"\n', 0o755)
        self.sh(f"mkdir -p /etc/netboot {LUN_DIR} {PROFILES} /var/lib/netboot/state /var/log && "
                f"for f in /lab/luns/*.img; do cp \"$f\" {LUN_DIR}/; done")
        self.vm.write_file(CONFIG, self.config_text())
        self.netboot("check")
        for h in self.hosts:
            self.netboot("register", h.name, self.built.toplevels[h.name][h.generations[0]])
        self.sh(f"setsid netboot -c {CONFIG} serve >/var/log/netboot.log 2>&1 </dev/null &")
        # The daemon loads its netlink library before it serves: tens of seconds under TCG.
        deadline = time.monotonic() + 300
        while True:
            log = self.sh("cat /var/log/netboot.log")
            if "serving TFTP on" in log:
                break
            if time.monotonic() > deadline or "Traceback" in log:
                raise RuntimeError(f"netboot serve did not start:\n{log}")
            time.sleep(1)
        self.measure_clock()

    def measure_clock(self) -> None:
        t0 = time.time()
        guest = float(self.sh("python3 -c 'import time; print(time.time())'").strip())
        t1 = time.time()
        self.clock_offset = (t0 + t1) / 2 - guest

    def log(self) -> str:
        return self.sh("cat /var/log/netboot.log")

    def dmesg(self) -> str:
        return self.sh("dmesg")

    def status(self, host: str | None = None) -> dict:
        out = self.netboot("status", "--json", *([host] if host else []))
        return json.loads(out)

    def events(self, host: str, since: float) -> list[dict]:
        """Boot events of ``host`` at or after host time ``since`` (all of them, from the state dir)."""
        out = self.sh("cat /var/lib/netboot/state/events.jsonl 2>/dev/null || true")
        events = []
        for line in out.splitlines():
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            if ev.get("host") == host and ev.get("time", 0) + self.clock_offset >= since:
                events.append(ev)
        return events

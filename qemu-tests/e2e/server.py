"""The appliance under test: ``netboot serve`` inside the lab's server VM (real LIO),
with its NIC on the test's bridge.

Reuses ``qemu-tests/lab`` (image, Python dependencies, ``ServerVM`` and its agent);
the only addition is running QEMU inside the test's network namespace, done
here by wrapping ``ServerVM.qemu_argv``.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from lab import Share, ServerVM, build_pydeps, build_server_image, default_cache_dir
from lab.project import REPO, code_shares, compile_project, guest_env

from .store import BuiltStore, HostSpec

CONFIG = "/etc/netboot/appliance.toml"
LUN_DIR = "/var/lib/netboot/luns"
PROFILES = "/nix/var/nix/profiles/netboot"
TARGET_PREFIX = "iqn.2026-11.lan.netboot-e2e"
SERVER_MAC = "52:54:00:e2:00:02"
IPXE_FIRMWARE = "/lab/ipxe"
IPXE_NBPS = ("undionly.kpxe", "ipxe.efi", "snponly.efi")


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
    http_port: int | None = None    # [server] http_listen on the wildcard address
    proxy_dhcp: bool = False        # [dhcp] on the lab NIC: boot options from the appliance, addresses from dnsmasq
    ipxe_firmware: Path | None = None   # Debian's iPXE NBPs (/usr/lib/ipxe) as the ipxe hosts' firmware
    vm: NetnsServerVM | None = None
    clock_offset: float = 0.0       # host time - guest time

    def start(self) -> None:
        cache = default_cache_dir()
        image = build_server_image(cache)
        deps = build_pydeps(cache)
        compile_project(REPO)
        env = guest_env()
        self.workdir.mkdir(parents=True, exist_ok=True)
        nbps = self._copy_ipxe_nbps() if self.ipxe_firmware else None
        self.vm = NetnsServerVM(
            image, netns=self.netns, user_net=False, smp=1, memory_mb=1024, env=env, workdir=self.workdir,
            shares=[*code_shares(REPO, deps), Share(self.built.store, "/nix/store", readonly=True),
                    Share(self.built.luns, "/lab/luns", readonly=True),
                    *([Share(nbps, IPXE_FIRMWARE, readonly=True)] if nbps else [])],
            extra_args=["-netdev", f"tap,id=lan,ifname={self.tap},script=no,downscript=no",
                        "-device", f"virtio-net-pci,netdev=lan,mac={SERVER_MAC}"])
        self.vm.start()
        try:
            self._setup()
        except BaseException:
            self.stop()
            raise

    def _copy_ipxe_nbps(self) -> Path:
        """The NBPs as plain files: Debian's /usr/lib/ipxe links into the host's /boot, which
        the VM does not see (in a Nix store they are plain files)."""
        assert self.ipxe_firmware
        out = self.workdir / "ipxe-nbps"
        out.mkdir(exist_ok=True)
        for name in IPXE_NBPS:
            shutil.copyfile(self.ipxe_firmware / name, out / name)
        return out

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
        for path in ("/var/log/netboot.log", "/var/log/dmesg.txt", "/var/lib/netboot/state/events.jsonl"):
            r = self.vm.run(f"cat {path}", timeout=30)
            (self.workdir / f"server-{Path(path).name}").write_text(r.stdout)

    def sh(self, cmd: str, timeout: float = 120, check: bool = True) -> str:
        assert self.vm
        r = self.vm.run(cmd, timeout=timeout)
        if check:
            r.check()
        return r.stdout

    def netboot(self, *args: str, check: bool = True, timeout: float = 120) -> str:
        return self.sh("netboot -c " + CONFIG + " " + shlex.join(args), timeout=timeout, check=check)

    def config_text(self, http: bool = True) -> str:
        """The appliance's config; ``http=False`` leaves HTTP off (TFTP-only, for comparisons)."""
        lines = ["[server]", 'state_dir = "/var/lib/netboot/state"', 'store_dir = "/nix/store"',
                 'tftp_listen = ["0.0.0.0:69"]', 'gcroots_dir = "/var/lib/netboot/gcroots"',
                 *([f'http_listen = ["0.0.0.0:{self.http_port}"]'] if self.http_port and http else []), "",
                 "[iscsi]", "enable = true", f'portals = ["{self.server_ip}:3260"]',
                 f'target_prefix = "{TARGET_PREFIX}"', "",
                 "[firmware.rpi]", f'path = "{self.built.firmware}"', ""]
        if self.ipxe_firmware:
            lines += ["[firmware.ipxe]", f'path = "{IPXE_FIRMWARE}"', ""]
        if self.proxy_dhcp:
            lines += ["[dhcp]", "enable = true", 'interface = "eth0"', f'server_address = "{self.server_ip}"', ""]
        for h in self.hosts:
            cmdline = self.cmdline_override.get(h.name) or (
                f"netboot.iscsi_initiator={initiator_iqn(h.name)} netboot.iscsi_target={target_iqn(h.name)} "
                f"netboot.iscsi_portal={self.server_ip}")
            lines += [f"[hosts.{h.name}]", f'boot = "{h.boot}"', f'mac = "{h.mac}"',
                      f'profile = "{PROFILES}/{h.name}"', f'cmdline = "{cmdline}"',
                      *(["menu_timeout = 1"] if h.boot in ("uboot", "ipxe") else []),   # the menus' wait
                      *(['firmware = "ipxe"'] if self.ipxe_firmware and h.boot == "ipxe" else []),
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
        self._serve()
        self.measure_clock()

    def _serve(self) -> None:
        """Start ``netboot serve`` (its PID in /run/netboot.pid) and wait until it serves: its
        listeners are up (the proxyDHCP starts after TFTP) and TFTP answers."""
        ready = ["serving TFTP on", *(["proxyDHCP on"] if self.proxy_dhcp else [])]
        before = self.log()
        starts = {line: before.count(line) for line in ready}
        self.sh("setsid sh -c 'echo $$ >/run/netboot.pid; exec netboot -c " + CONFIG +
                " serve >>/var/log/netboot.log 2>&1 </dev/null' &")
        # Under TCG (byte-compiled, 1 vCPU) it serves 15-30 s after start on a loaded machine.
        deadline = time.monotonic() + 180
        while True:
            log = self.log()
            if all(log.count(line) > starts[line] for line in ready):
                break
            if time.monotonic() > deadline or "Traceback" in log:
                raise RuntimeError(f"netboot serve did not start:\n{log}")
            time.sleep(1)
        self.wait_answering()

    def restart(self, http: bool = True) -> None:
        """Stop ``netboot serve``, rewrite the config (HTTP on or off) and start it again."""
        assert self.vm
        # Wait for its whole session (serve started it with setsid: TFTP transfer workers included)
        # to be gone: a worker still holding UDP 69 would swallow the next client's requests.
        # The guest's init does not reap orphans, so a zombie counts as gone.
        self.sh("sid=$(cat /run/netboot.pid); kill $sid; for i in $(seq 300); do alive=; "
                "for st in /proc/[0-9]*/stat; do set -- $(sed 's/.*) //' $st 2>/dev/null) x x x x; "
                "[ \"$4\" = \"$sid\" ] && [ \"$1\" != Z ] && alive=1; done; "
                "[ -z \"$alive\" ] && exit 0; sleep 0.2; done; exit 1", timeout=180)
        self.vm.write_file(CONFIG, self.config_text(http=http))
        self._serve()

    def wait_answering(self, timeout: float = 120) -> float:
        """Seconds until TFTP answers a request from the lab network (a refusal counts).

        Right after start the daemon is still busy for a while under TCG (its first pass
        over the hosts); a client booted then waits for its first answer."""
        started = time.monotonic()
        url = f"tftp://{self.server_ip}/boot.ipxe"      # from the bridge's address: no such host
        while True:
            rc = subprocess.run(["ip", "netns", "exec", self.netns, "curl", "-s", "-o", "/dev/null",
                                 "--max-time", "3", url], capture_output=True, timeout=30).returncode
            if rc != 28:                                # 28: timed out; anything else is an answer
                return time.monotonic() - started
            if time.monotonic() - started > timeout:
                raise RuntimeError(f"TFTP on {self.server_ip} did not answer within {timeout:.0f} s")

    def measure_clock(self) -> None:
        t0 = time.time()
        guest = float(self.sh("python3 -c 'import time; print(time.time())'").strip())
        t1 = time.time()
        self.clock_offset = (t0 + t1) / 2 - guest

    def log(self) -> str:
        return self.sh("cat /var/log/netboot.log 2>/dev/null || true")

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

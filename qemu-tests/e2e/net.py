"""A private network for one test run: a namespace with a bridge, taps and dnsmasq DHCP.

    with Lab() as net:                  # ip netns nbe2e-<pid>, bridge, taps, dnsmasq
        net.netns_argv(["qemu-system-x86_64", ...])

Addresses (10.213.<n>.0/24) exist only inside the namespace.  Everything is
torn down on exit, also after failures: dnsmasq is killed by its PID, the
namespace (and with it the bridge and taps) is deleted.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True)


@dataclass(frozen=True)
class Client:
    name: str
    mac: str
    ip: str


@dataclass
class Lab:
    workdir: Path
    boot_file: str | None = "boot.ipxe"     # None: addresses only, like a home router (proxyDHCP for boot)
    # IPv6 router advertisements on the bridge (IPv4 stays the boot path): iPXE's "Configuring"
    # waits for its IPv6 autoconfiguration too, ~15 s when no router answers.
    router_advertisements: bool = False
    clients: Sequence[Client] = ()
    subnet: int = field(default_factory=lambda: 16 + os.getpid() % 200)
    name: str = field(default_factory=lambda: f"nbe2e-{os.getpid()}")

    bridge: str = "nbe2e-br"
    server_tap: str = "nbe2e-srv"
    client_tap: str = "nbe2e-cli"
    _dnsmasq: subprocess.Popen | None = field(default=None, init=False, repr=False)
    _extra_ns: list[str] = field(default_factory=list, init=False, repr=False)

    @property
    def prefix(self) -> str:
        return f"10.213.{self.subnet}"

    @property
    def ipv6_prefix(self) -> str:     # a unique local prefix, only with router_advertisements
        return f"fd5b:e2e:0:{self.subnet:x}::"

    @property
    def gateway_ip(self) -> str:      # the bridge: where dnsmasq answers
        return f"{self.prefix}.1"

    @property
    def server_ip(self) -> str:
        return f"{self.prefix}.2"

    @property
    def dnsmasq_log(self) -> Path:
        return self.workdir / "dnsmasq.log"

    def netns_argv(self, argv: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.name, *argv]

    def __enter__(self) -> "Lab":
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if _ip("netns", "list").stdout.split().count(self.name):
            raise RuntimeError(f"network namespace {self.name} already exists")
        _ip("netns", "add", self.name)
        ns = ["-n", self.name]
        sysctl = self.netns_argv(["sysctl", "-q", "-w"])
        # No IPv6 in the namespace (the bridge only with router_advertisements).
        for key in ("net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"):
            subprocess.run([*sysctl, key], check=True, capture_output=True)
        _ip(*ns, "link", "set", "lo", "up")
        _ip(*ns, "link", "add", self.bridge, "type", "bridge", "forward_delay", "0", "stp_state", "0")
        ipv6 = "0" if self.router_advertisements else "1"
        subprocess.run([*sysctl, f"net.ipv6.conf.{self.bridge}.disable_ipv6={ipv6}"], check=True, capture_output=True)
        if self.router_advertisements:
            _ip(*ns, "addr", "add", f"{self.ipv6_prefix}1/64", "dev", self.bridge, "nodad")
        _ip(*ns, "addr", "add", f"{self.gateway_ip}/24", "dev", self.bridge)
        _ip(*ns, "link", "set", self.bridge, "up")
        for tap in (self.server_tap, self.client_tap):
            _ip(*ns, "tuntap", "add", "dev", tap, "mode", "tap")
            _ip(*ns, "link", "set", tap, "master", self.bridge)
            _ip(*ns, "link", "set", tap, "up")
        self._start_dnsmasq()

    def _start_dnsmasq(self) -> None:
        argv = ["dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--port=0", "--no-resolv", "--no-hosts",
                f"--interface={self.bridge}", "--bind-interfaces", "--except-interface=lo",
                f"--dhcp-range={self.prefix}.100,{self.prefix}.199,255.255.255.0,1h",
                *([f"--dhcp-boot={self.boot_file},,{self.server_ip}"] if self.boot_file else []),
                "--dhcp-option=option:router",      # no default route: nothing is routed
                "--dhcp-option=option:dns-server",
                *([f"--dhcp-range={self.ipv6_prefix},ra-only", "--enable-ra"] if self.router_advertisements else []),
                "--no-ping", "--dhcp-authoritative", "--log-dhcp",
                f"--log-facility={self.dnsmasq_log}", f"--dhcp-leasefile={self.workdir / 'leases'}",
                f"--pid-file={self.workdir / 'dnsmasq.pid'}", "--user=root", "--group=root"]
        for c in self.clients:
            argv.append(f"--dhcp-host={c.mac},{c.ip},{c.name}")
        self._dnsmasq = subprocess.Popen(self.netns_argv(argv), stdin=subprocess.DEVNULL,
                                         stdout=open(self.workdir / "dnsmasq.out", "wb"), stderr=subprocess.STDOUT,
                                         start_new_session=True)
        deadline = time.monotonic() + 60     # a bound for a loaded machine; it starts in well under 1 s
        while time.monotonic() < deadline:
            if self._dnsmasq.poll() is not None:
                raise RuntimeError("dnsmasq exited: " + (self.workdir / "dnsmasq.out").read_text(errors="replace"))
            if self.dnsmasq_log.exists() and "DHCP, IP range" in self.dnsmasq_log.read_text(errors="replace"):
                return
            time.sleep(0.1)
        raise RuntimeError("dnsmasq did not start: " + (self.workdir / "dnsmasq.out").read_text(errors="replace"))

    def add_peer_namespace(self, suffix: str, mac: str, ip: str) -> str:
        """A second namespace joined to the bridge by a veth pair whose far end has ``mac``/``ip``
        (a stand-in client, e.g. a Pi bootloader emulator).  Returns its name."""
        peer_ns = f"{self.name}-{suffix}"
        _ip("netns", "add", peer_ns)
        self._extra_ns.append(peer_ns)
        br_end = f"nbe2e-v{suffix}"[:15]
        _ip("-n", self.name, "link", "add", br_end, "type", "veth", "peer", "name", "eth0", "netns", peer_ns)
        _ip("-n", self.name, "link", "set", br_end, "master", self.bridge)
        _ip("-n", self.name, "link", "set", br_end, "up")
        subprocess.run(["ip", "netns", "exec", peer_ns, "sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1"],
                       check=True, capture_output=True)
        _ip("-n", peer_ns, "link", "set", "eth0", "address", mac)
        _ip("-n", peer_ns, "addr", "add", f"{ip}/24", "dev", "eth0")
        _ip("-n", peer_ns, "link", "set", "eth0", "up")
        _ip("-n", peer_ns, "link", "set", "lo", "up")
        return peer_ns

    def remove_peer_namespace(self, peer_ns: str) -> None:
        if peer_ns in self._extra_ns:
            _ip("netns", "del", peer_ns, check=False)
            self._extra_ns.remove(peer_ns)

    def dhcp_log(self, mac: str) -> list[str]:
        """dnsmasq's DISCOVER / OFFER / REQUEST / ACK lines for ``mac``."""
        if not self.dnsmasq_log.exists():
            return []
        return [line for line in self.dnsmasq_log.read_text(errors="replace").splitlines()
                if re.search(rf"DHCP(DISCOVER|OFFER|REQUEST|ACK|NAK)\(\S+\) (\S+ )?{re.escape(mac)}", line)]

    def stop(self) -> None:
        proc, self._dnsmasq = self._dnsmasq, None
        if proc is not None and proc.poll() is None:
            # ``ip netns exec`` execs dnsmasq: the PID is dnsmasq's own.
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        for peer in list(self._extra_ns):
            self.remove_peer_namespace(peer)
        if self.name in _ip("netns", "list", check=False).stdout.split():
            for dev in (self.client_tap, self.server_tap, self.bridge):
                _ip("-n", self.name, "link", "del", dev, check=False)
            _ip("netns", "del", self.name, check=False)

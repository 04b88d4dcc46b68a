"""Host resolution by client IP → MAC and access control, with real neighbour entries (SPEC §6).

Each client is a network namespace joined to the root namespace by a veth
pair whose namespace side carries a configured host's MAC; the daemon listens
on the root-side addresses.  Names and the private /24 are unique per run and
removed in a finally, also on failure.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import subprocess

import pytest

from .control_harness import (CURL_ACCESS, CURL_NOT_FOUND, PC, PC_PREFIX, PI, PI_PREFIX, curl, eventually, get,
                             status)

pytestmark = pytest.mark.root

PC_MAC = "52:54:00:ab:cd:ef"
PI_MAC = "dc:a6:32:01:02:03"
STRANGER_MAC = "02:00:00:00:be:ef"


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


def _free_subnet() -> int:
    used = _ip("-4", "-o", "addr").stdout + _ip("-4", "route").stdout
    for _ in range(200):
        x = secrets.randbelow(250) + 3
        if f"10.254.{x}." not in used:
            return x
    pytest.skip("no free 10.254.x.0/24 for the test")


class Clients:
    """Network namespaces, one per client MAC, each behind a veth /30."""

    def __init__(self) -> None:
        self.tag = f"{os.getpid() % 10000}{secrets.token_hex(2)}"
        self.subnet = _free_subnet()
        self.namespaces: list[str] = []
        self.links: list[str] = []
        self.clients: dict[str, tuple[str, str, str]] = {}   # label → (netns, server ip, client ip)

    def add(self, label: str, mac: str) -> tuple[str, str, str]:
        i = len(self.clients)
        ns = f"nb-{self.tag}-{i}"
        root_if, ns_if = f"nb{self.tag}{i}r", f"nb{self.tag}{i}n"
        server_ip, client_ip = f"10.254.{self.subnet}.{4 * i + 1}", f"10.254.{self.subnet}.{4 * i + 2}"
        _ip("netns", "add", ns)
        self.namespaces.append(ns)
        _ip("link", "add", root_if, "type", "veth", "peer", "name", ns_if)
        self.links.append(root_if)
        _ip("link", "set", ns_if, "netns", ns)
        _ip("addr", "add", f"{server_ip}/30", "dev", root_if)
        _ip("link", "set", root_if, "up")
        _ip("-n", ns, "link", "set", ns_if, "address", mac)
        _ip("-n", ns, "addr", "add", f"{client_ip}/30", "dev", ns_if)
        _ip("-n", ns, "link", "set", ns_if, "up")
        _ip("-n", ns, "link", "set", "lo", "up")
        self.clients[label] = (ns, server_ip, client_ip)
        return self.clients[label]

    def cleanup(self) -> None:
        for ns in self.namespaces:
            _ip("netns", "del", ns, check=False)
        for link in self.links:
            _ip("link", "del", link, check=False)


@pytest.fixture
def clients():
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces")
    c = Clients()
    try:
        yield c
    finally:
        c.cleanup()


def test_hosts_are_resolved_by_client_mac_and_other_hosts_files_refused(store, make_daemon, clients):
    pc_ns, pc_server, _ = clients.add("pc", PC_MAC)
    pi_ns, pi_server, pi_ip = clients.add("pi", PI_MAC)
    other_ns, other_server, _ = clients.add("stranger", STRANGER_MAC)
    for a in (pc_server, pi_server, other_server):
        assert ipaddress.ip_address(a).is_private
    listen = ", ".join(f'"{a}:{store.port}"' for a in ("127.0.0.1", pc_server, pi_server, other_server))
    store.write_config(store.read_config().replace(f'tftp_listen = ["127.0.0.1:{store.port}"]',
                                                   f"tftp_listen = [{listen}]"))
    d = make_daemon(store.config).start()

    # pc's iPXE asks for the unprefixed boot.ipxe: resolved by its MAC
    script = get(store.port, "boot.ipxe", host=pc_server, netns=pc_ns, blksize=1468)
    assert script.startswith(b"#!ipxe") and b"host pc" in script
    assert get(store.port, PC_PREFIX + "boot.ipxe", host=pc_server, netns=pc_ns) == script

    # the Pi asks for unprefixed files: its own tree, by IP → MAC
    cmdline = get(store.port, "cmdline.txt", host=pi_server, netns=pi_ns)
    assert cmdline.startswith(store.init_of(PI, 2).encode())
    assert get(store.port, "kernel8.img", host=pi_server, netns=pi_ns) == store.kernel_bytes(PI, 2)
    assert get(store.port, PI_PREFIX + "config.txt", host=pi_server, netns=pi_ns)

    # ... and is refused pc's files (error 2), prefixed or not
    assert curl(store.port, PC_PREFIX + "boot.ipxe", host=pi_server, netns=pi_ns).rc == CURL_ACCESS
    assert curl(store.port, PC_PREFIX + "generations/2/initrd", host=pi_server, netns=pi_ns).rc == CURL_ACCESS
    assert curl(store.port, "boot.ipxe", host=pi_server, netns=pi_ns).rc == CURL_ACCESS
    # pc is refused the Pi's
    assert curl(store.port, PI_PREFIX + "initrd", host=pc_server, netns=pc_ns).rc == CURL_ACCESS
    # a MAC no host has: refused every host's files; its unprefixed paths are unknown
    assert curl(store.port, PI_PREFIX + "cmdline.txt", host=other_server, netns=other_ns).rc == CURL_ACCESS
    assert curl(store.port, "cmdline.txt", host=other_server, netns=other_ns).rc == CURL_NOT_FOUND
    eventually(lambda: "denied" in d.log() and PI_MAC in d.log(), what="denial logged")

    # boot events carry the client address
    evs = status(store.config, PI)["hosts"][PI]["last_boot_events"]
    assert any(e["client"].startswith(pi_ip + ":") and e["outcome"] == "complete" for e in evs)

    # loopback (MAC unknown): "open" serves, "strict" refuses
    assert get(store.port, PC_PREFIX + "boot.ipxe") == script
    store.write_config(store.set_host_option(PC, 'tftp_access = "strict"'))
    eventually(lambda: curl(store.port, PC_PREFIX + "boot.ipxe").rc == CURL_ACCESS, what="strict for unknown MACs")
    # strict does not affect the host itself, whose MAC is known
    assert get(store.port, "boot.ipxe", host=pc_server, netns=pc_ns) == script

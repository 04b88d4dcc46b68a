"""Host resolution by client IP → MAC and access control, with real neighbour entries (README: TFTP server).

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

from appliance.config import load_config
from appliance.control.neighbours import NeighbourTable
from appliance.control.resolver import BootResolver
from appliance.control.snapshot import build_snapshot
from appliance.nix import StoreCache
from appliance.tftp import TftpServer

from helpers import free_subnet, ip_command as _ip

from .control_harness import (CURL_ACCESS, CURL_NOT_FOUND, PC, PC_PREFIX, PI, PI_PREFIX, curl, eventually, get,
                             status)

pytestmark = pytest.mark.root

PC_MAC = "52:54:00:ab:cd:ef"
PI_MAC = "dc:a6:32:01:02:03"
STRANGER_MAC = "02:00:00:00:be:ef"


class Clients:
    """Network namespaces, one per client MAC, each behind a veth pair.

    Client ``i`` sits on its own /26 (IPv4) and /64 (IPv6) so it can be given
    fresh addresses, ones the server has never seen (``renumber``).
    """

    def __init__(self) -> None:
        self.tag = f"{os.getpid() % 10000}{secrets.token_hex(2)}"
        self.subnet = free_subnet("10.254")
        self.v6 = f"fd{secrets.token_hex(1)}:{secrets.token_hex(2)}:{secrets.token_hex(2)}"
        self.namespaces: list[str] = []
        self.links: list[str] = []
        self.clients: dict[str, tuple[str, str, str]] = {}   # label → (netns, server ip, client ip)
        self.ifaces: dict[str, tuple[str, str]] = {}           # label → (root side, namespace side)
        self.v6_clients: dict[str, tuple[str, str]] = {}       # label → (server ip, client ip)
        self.fresh: dict[str, int] = {}

    def add(self, label: str, mac: str) -> tuple[str, str, str]:
        i = len(self.clients)
        assert i < 4, "four /26 per test"
        ns = f"nb-{self.tag}-{i}"
        root_if, ns_if = f"nb{self.tag}{i}r", f"nb{self.tag}{i}n"
        server_ip, client_ip = f"10.254.{self.subnet}.{64 * i + 1}", f"10.254.{self.subnet}.{64 * i + 2}"
        server6, client6 = f"{self.v6}:{i}::1", f"{self.v6}:{i}::2"
        _ip("netns", "add", ns)
        self.namespaces.append(ns)
        _ip("link", "add", root_if, "type", "veth", "peer", "name", ns_if)
        self.links.append(root_if)
        _ip("link", "set", ns_if, "netns", ns)
        _ip("addr", "add", f"{server_ip}/26", "dev", root_if)
        _ip("addr", "add", f"{server6}/64", "dev", root_if, "nodad")
        _ip("link", "set", root_if, "up")
        _ip("-n", ns, "link", "set", ns_if, "address", mac)
        # renumber: removing the primary address must keep (promote) the new secondary one
        subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-qw", f"net.ipv4.conf.{ns_if}.promote_secondaries=1"],
                       check=True)
        _ip("-n", ns, "addr", "add", f"{client_ip}/26", "dev", ns_if)
        _ip("-n", ns, "addr", "add", f"{client6}/64", "dev", ns_if, "nodad")
        _ip("-n", ns, "link", "set", ns_if, "up")
        _ip("-n", ns, "link", "set", "lo", "up")
        self.clients[label] = (ns, server_ip, client_ip)
        self.ifaces[label] = (root_if, ns_if)
        self.v6_clients[label] = (server6, client6)
        self.fresh[label] = 2
        return self.clients[label]

    def silent(self, label: str) -> None:
        """The client knows the server's MAC already (a static entry): it sends no ARP request or
        neighbour solicitation, so the server's kernel learns nothing about it before its request."""
        ns, server_ip, _ = self.clients[label]
        root_if, ns_if = self.ifaces[label]
        server_mac = _ip("-j", "link", "show", root_if).stdout.split('"address":"', 1)[1].split('"', 1)[0]
        for addr in (server_ip, self.v6_clients[label][0]):
            _ip("-n", ns, "neigh", "replace", addr, "lladdr", server_mac, "nud", "permanent", "dev", ns_if)

    def renumber(self, label: str) -> tuple[str, str]:
        """Give the client fresh IPv4 and IPv6 addresses and forget it on the server side:
        the server's neighbour table has no entry for either (first contact)."""
        ns, _, _ = self.clients[label]
        root_if, ns_if = self.ifaces[label]
        i = list(self.clients).index(label)
        self.fresh[label] += 1
        n = self.fresh[label]
        assert n < 63
        ip4, ip6 = f"10.254.{self.subnet}.{64 * i + n}", f"{self.v6}:{i}::{n:x}"
        old4, old6 = f"10.254.{self.subnet}.{64 * i + n - 1}", f"{self.v6}:{i}::{n - 1:x}"
        # new before old: removing a link's last IPv4 address flushes its neighbour entries
        _ip("-n", ns, "addr", "add", f"{ip4}/26", "dev", ns_if)
        _ip("-n", ns, "addr", "add", f"{ip6}/64", "dev", ns_if, "nodad")
        _ip("-n", ns, "addr", "del", f"{old4}/26", "dev", ns_if)
        _ip("-n", ns, "addr", "del", f"{old6}/64", "dev", ns_if)
        self.silent(label)
        _ip("neigh", "flush", "dev", root_if, check=False)
        _ip("-6", "neigh", "flush", "dev", root_if, check=False)
        assert ip4 not in _ip("neigh", "show", "dev", root_if).stdout
        assert ip6 not in _ip("-6", "neigh", "show", "dev", root_if).stdout
        return ip4, ip6

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

    # boot events carry the client address (written by the daemon after the transfer)
    eventually(lambda: any(e["client"].startswith(pi_ip + ":") and e["outcome"] == "complete"
                           for e in status(store.config, PI)["hosts"][PI]["last_boot_events"]),
               what="the Pi's boot event with its address")

    # loopback (MAC unknown): "open" serves, "strict" refuses
    assert get(store.port, PC_PREFIX + "boot.ipxe") == script
    store.write_config(store.set_host_option(PC, 'tftp_access = "strict"'))
    eventually(lambda: curl(store.port, PC_PREFIX + "boot.ipxe").rc == CURL_ACCESS, what="strict for unknown MACs")
    # strict does not affect the host itself, whose MAC is known
    assert get(store.port, "boot.ipxe", host=pc_server, netns=pc_ns) == script


def _listen_everywhere(store, clients) -> None:
    addrs = [f'"127.0.0.1:{store.port}"']
    for _, server_ip, _ in clients.clients.values():
        addrs.append(f'"{server_ip}:{store.port}"')
    for server6, _ in clients.v6_clients.values():
        addrs.append(f'"[{server6}]:{store.port}"')
    store.write_config(store.read_config().replace(f'tftp_listen = ["127.0.0.1:{store.port}"]',
                                                   f"tftp_listen = [{', '.join(addrs)}]"))


def _first_contact_tries(store, clients, label: str, path: str, tries: int) -> dict[str, list[int]]:
    """``tries`` requests per address family, each from a fresh address: curl's exit codes
    (a refusal is immediate; the bound only gives a loaded machine time to answer)."""
    ns = clients.clients[label][0]
    server_ip = clients.clients[label][1]
    server6 = clients.v6_clients[label][0]
    codes: dict[str, list[int]] = {"ipv4": [], "ipv6": []}
    for _ in range(tries):
        clients.renumber(label)
        codes["ipv4"].append(curl(store.port, path, host=server_ip, netns=ns, timeout=15).rc)
        clients.renumber(label)
        codes["ipv6"].append(curl(store.port, path, host=f"[{server6}]", netns=ns, timeout=15).rc)
    return codes


def test_first_contact_is_decided_by_the_requesters_mac(store, make_daemon, clients):
    """A client the server has never seen (no neighbour entry, no ARP/ND before its request)
    is still known by its MAC: its own host's files are served, another host's are refused."""
    clients.add("pi", PI_MAC)
    clients.add("stranger", STRANGER_MAC)
    for label in clients.clients:
        clients.silent(label)
    _listen_everywhere(store, clients)
    d = make_daemon(store.config).start()
    initrd = PI_PREFIX + "initrd"
    right = _first_contact_tries(store, clients, "pi", initrd, 20)
    wrong = _first_contact_tries(store, clients, "stranger", initrd, 20)
    assert right == {"ipv4": [0] * 20, "ipv6": [0] * 20}, f"right MAC: {right}\n{d.log()}"
    assert wrong == {"ipv4": [CURL_ACCESS] * 20, "ipv6": [CURL_ACCESS] * 20}, f"wrong MAC: {wrong}"
    assert "frame-capture" not in d.log()      # decided from the request frames, not a fallback
    # unprefixed paths of a first contact resolve by its MAC too
    clients.renumber("pi")
    assert get(store.port, "cmdline.txt", host=clients.clients["pi"][1],
               netns=clients.clients["pi"][0]).startswith(store.init_of(PI, 2).encode())


def test_strict_serves_the_hosts_own_first_request(store, make_daemon, clients):
    clients.add("pi", PI_MAC)
    clients.add("stranger", STRANGER_MAC)
    for label in clients.clients:
        clients.silent(label)
    _listen_everywhere(store, clients)
    store.write_config(store.set_host_option(PI, 'tftp_access = "strict"'))
    make_daemon(store.config).start()
    initrd = PI_PREFIX + "initrd"
    assert _first_contact_tries(store, clients, "pi", initrd, 5) == {"ipv4": [0] * 5, "ipv6": [0] * 5}
    assert _first_contact_tries(store, clients, "stranger", initrd, 5) == {"ipv4": [CURL_ACCESS] * 5,
                                                                           "ipv6": [CURL_ACCESS] * 5}
    # loopback is not on a link: strict refuses it
    assert curl(store.port, initrd).rc == CURL_ACCESS


def test_without_frame_capture_a_first_contact_waits_for_its_neighbour_entry(store, clients):
    """No packet socket (no CAP_NET_RAW): the request waits while the kernel resolves the client
    (ARP / neighbour solicitation), other requests go on, and the MAC decides."""
    clients.add("pi", PI_MAC)
    clients.add("stranger", STRANGER_MAC)
    for label in clients.clients:
        clients.silent(label)
    _listen_everywhere(store, clients)
    config = load_config(store.config)
    neighbours = NeighbourTable()          # neighbour table and solicitations only
    resolver = BootResolver(build_snapshot(config, {}, StoreCache()), neighbours)
    initrd = PI_PREFIX + "initrd"
    try:
        with TftpServer(resolver, listen=[str(a) for a in config.server.tftp_listen]):
            right = _first_contact_tries(store, clients, "pi", initrd, 5)
            wrong = _first_contact_tries(store, clients, "stranger", initrd, 5)
    finally:
        neighbours.close()
    assert right == {"ipv4": [0] * 5, "ipv6": [0] * 5}
    assert wrong == {"ipv4": [CURL_ACCESS] * 5, "ipv6": [CURL_ACCESS] * 5}

"""The proxyDHCP against a client on a real interface, in a network namespace (root).

The server runs in this process, bound (SO_BINDTODEVICE) to the root side of
a veth pair; the client side, in a namespace of its own, carries the Pi's MAC
and runs ``netns_client.py`` (scapy on a raw socket, then a UDP socket).  Its
OFFER is decoded there by scapy — an independent decoder.  Names and the
private /24 are unique per run; everything is removed in a finally.

Not busybox udhcpc: it only runs its script after an ACK, and a proxy never
ACKs on port 67, so the OFFER would never be seen.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import free_subnet, ip_command as _ip

from .helpers import PI_MAC, STRANGER_MAC, config, started_proxy

pytestmark = pytest.mark.root

CLIENT = Path(__file__).with_name("netns_client.py")


@pytest.fixture
def link():
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2 for a network namespace")
    tag = f"{os.getpid() % 10000}{secrets.token_hex(2)}"
    ns, root_if, ns_if = f"nbdhcp-{tag}", f"nbd{tag}r", f"nbd{tag}n"
    x = free_subnet("10.253")
    server_ip = f"10.253.{x}.1"
    try:
        _ip("netns", "add", ns)
        _ip("link", "add", root_if, "type", "veth", "peer", "name", ns_if)
        _ip("link", "set", ns_if, "netns", ns)
        _ip("addr", "add", f"{server_ip}/24", "dev", root_if)
        _ip("link", "set", root_if, "up")
        _ip("-n", ns, "link", "set", ns_if, "address", PI_MAC)
        _ip("-n", ns, "link", "set", ns_if, "up")
        _ip("-n", ns, "link", "set", "lo", "up")
        yield {"ns": ns, "root_if": root_if, "ns_if": ns_if, "server_ip": server_ip,
               "client_ip": f"10.253.{x}.2", "lease_ip": f"10.253.{x}.50"}
    finally:
        _ip("netns", "del", ns, check=False)
        _ip("link", "del", root_if, check=False)


def test_a_pi_discover_on_a_real_link_gets_the_pxe_offer(link):
    cfg = config(server_address=link["server_ip"], interface=link["root_if"])
    leases: list[tuple[str, str]] = []
    server = started_proxy(cfg, link["root_if"], lambda ip, mac: leases.append((ip, mac)))
    try:
        run = subprocess.run(["ip", "netns", "exec", link["ns"], sys.executable, str(CLIENT), link["ns_if"], PI_MAC,
                              STRANGER_MAC, link["server_ip"], link["client_ip"], link["lease_ip"]],
                             capture_output=True, text=True, timeout=90)
        assert run.returncode == 0, run.stderr
        result = json.loads(run.stdout.strip().splitlines()[-1])
    finally:
        server.stop()

    # broadcast replies: the OFFERs to the Pi; nothing for the stranger, no ACK for the REQUEST
    replies = result["broadcast"]
    assert [r["xid"] for r in replies] == [1, 5], replies
    offer = replies[0]
    assert offer["dst"] == "255.255.255.255" and offer["eth_dst"] == "ff:ff:ff:ff:ff:ff" and offer["dport"] == 68
    assert offer["src"] == link["server_ip"]
    assert offer["yiaddr"] == "0.0.0.0" and offer["siaddr"] == link["server_ip"] and offer["file"] == ""
    opts = offer["options"]
    assert opts["message-type"] == 2
    assert opts["server_id"] == link["server_ip"]
    assert bytes.fromhex(opts["tftp_server_name"]) == link["server_ip"].encode("ascii")
    assert b"Raspberry Pi Boot" in bytes.fromhex(opts["vendor_specific"])
    assert bytes.fromhex(opts["vendor_class_id"]) == b"PXEClient"

    # the boot-server port answers the unicast REQUEST with an ACK, to the sender
    ack = result["ack"]
    assert ack is not None, run.stderr
    assert ack["xid"] == 4 and ack["options"]["message-type"] == 5 and ack["src"] == link["server_ip"]
    assert b"Raspberry Pi Boot" in bytes.fromhex(ack["options"]["vendor_specific"])

    # leases seen: the address the Pi asked the router for, then the one it used on port 4011
    assert leases == [(link["lease_ip"], PI_MAC), (link["client_ip"], PI_MAC)]
    stats = server.read_stats()
    assert stats.replies == 3 and stats.malformed == 0 and stats.internal_errors == 0 and stats.ignored >= 2

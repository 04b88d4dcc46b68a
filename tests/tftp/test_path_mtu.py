"""blksize is clamped to what one datagram carries on the path to the client (RFC 2348).

A DATA packet larger than the path MTU leaves the server as IP fragments, and
clients without reassembly (U-Boot built without CONFIG_IP_DEFRAG, some PXE
ROMs) never see it.  The client sits in a network namespace behind a veth
pair with a small MTU; names and the private /24 are unique per run and
removed in a finally, also on failure.
"""

from __future__ import annotations

import os
import secrets
import subprocess

import pytest

from helpers import free_port, free_subnet, ip_command

from .helpers import require_binary, serving

pytestmark = pytest.mark.root

PAYLOAD = os.urandom(20_000)


@pytest.fixture
def small_mtu_link():
    """(netns, server IPv4, server IPv6, MTU): a client namespace on a veth link of MTU 1280."""
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces")
    tag = f"{os.getpid() % 10000}{secrets.token_hex(2)}"
    subnet = free_subnet("10.253")
    v6 = f"fd{secrets.token_hex(1)}:{secrets.token_hex(2)}:{secrets.token_hex(2)}"
    ns, root_if, ns_if, mtu = f"nbmtu-{tag}", f"nbm{tag}r", f"nbm{tag}n", 1280
    try:
        ip_command("netns", "add", ns)
        ip_command("link", "add", root_if, "mtu", str(mtu), "type", "veth", "peer", "name", ns_if, "mtu", str(mtu))
        ip_command("link", "set", ns_if, "netns", ns)
        ip_command("addr", "add", f"10.253.{subnet}.1/24", "dev", root_if)
        ip_command("addr", "add", f"{v6}::1/64", "dev", root_if, "nodad")
        ip_command("link", "set", root_if, "up")
        ip_command("-n", ns, "addr", "add", f"10.253.{subnet}.2/24", "dev", ns_if)
        ip_command("-n", ns, "addr", "add", f"{v6}::2/64", "dev", ns_if, "nodad")
        ip_command("-n", ns, "link", "set", ns_if, "up")
        yield ns, f"10.253.{subnet}.1", f"{v6}::1", mtu
    finally:
        ip_command("netns", "del", ns, check=False)
        ip_command("link", "del", root_if, check=False)


@pytest.mark.parametrize("family, headers", [("ipv4", 20 + 8 + 4), ("ipv6", 40 + 8 + 4)])
def test_blksize_fits_the_path_mtu(small_mtu_link, family, headers):
    curl = require_binary("curl")
    ns, server4, server6, mtu = small_mtu_link
    server = server4 if family == "ipv4" else server6
    port = free_port(host=server)
    with serving({"kernel.img": PAYLOAD}, listen=(f"[{server}]:{port}" if family == "ipv6" else f"{server}:{port}",)) as s:
        url = f"tftp://[{server}]:{port}/kernel.img" if family == "ipv6" else f"tftp://{server}:{port}/kernel.img"
        fetched = subprocess.run(["ip", "netns", "exec", ns, curl, "-sS", "--max-time", "30",
                                  "--tftp-blksize", "1468", url], capture_output=True, timeout=60)
        assert fetched.returncode == 0, fetched.stderr
        assert fetched.stdout == PAYLOAD
        [record] = s.wait_records(1)
    assert record.outcome == "complete"
    assert record.blksize == mtu - headers      # the largest DATA that needs no fragment

"""``NetlinkSocket`` against the real kernel, in a network namespace made for the test.

The namespace holds a veth pair with IPv4/IPv6 subnets, a route through a
gateway for each family and neighbour entries in several NUD states.  The
answers are compared with iproute2's (``ip -j route get`` / ``ip -j neigh``)
in the same namespace; the namespace is removed in a finally, also on failure.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys

import pytest

pytestmark = pytest.mark.root

# Runs inside the namespace: every answer of NetlinkSocket as JSON.
PROBE = """
import json, socket, sys
from appliance.control.rtnetlink import NetlinkError, NetlinkSocket
nl = NetlinkSocket()
out = {"routes": {}, "neighbours": {}}
for dst in sys.argv[1:]:
    try:
        out["routes"][dst] = [[r.type, r.gateway, r.oif] for r in nl.route_to(dst)]
    except NetlinkError as exc:
        out["routes"][dst] = exc.errno
for family in (socket.AF_INET, socket.AF_INET6):
    out["neighbours"][family] = [[n.address, n.lladdr, n.state, n.ifindex] for n in nl.neighbours(family)]
nl.close()
print(json.dumps(out))
"""

NUD = {"PERMANENT": 0x80, "STALE": 0x04, "REACHABLE": 0x02, "NOARP": 0x40, "INCOMPLETE": 0x01, "DELAY": 0x08,
       "PROBE": 0x10, "FAILED": 0x20}


@pytest.fixture
def netns():
    name = f"nb-rtnl-{os.getpid() % 10000}-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def ip(ns: str, *args: str) -> str:
    return subprocess.run(["ip", "-n", ns, *args], check=True, capture_output=True, text=True).stdout


def test_routes_and_neighbours_match_iproute2(netns):
    ip(netns, "link", "add", "a0", "type", "veth", "peer", "name", "a1")
    for link in ("lo", "a0", "a1"):
        ip(netns, "link", "set", link, "up")
    ip(netns, "addr", "add", "10.77.0.1/24", "dev", "a0")
    ip(netns, "addr", "add", "fd77::1/64", "dev", "a0", "nodad")
    ip(netns, "route", "add", "10.88.0.0/16", "via", "10.77.0.254")
    ip(netns, "-6", "route", "add", "fd88::/64", "via", "fd77::fe")
    ip(netns, "neigh", "add", "10.77.0.5", "lladdr", "52:54:00:00:00:05", "dev", "a0", "nud", "permanent")
    ip(netns, "neigh", "add", "10.77.0.6", "lladdr", "52:54:00:00:00:06", "dev", "a0", "nud", "stale")
    ip(netns, "neigh", "add", "fd77::5", "lladdr", "52:54:00:00:00:55", "dev", "a0", "nud", "permanent")
    index = {link["ifname"]: link["ifindex"] for link in json.loads(ip(netns, "-j", "link", "show"))}
    a0 = index["a0"]

    destinations = ["10.77.0.5", "10.88.1.2", "10.77.0.1", "192.0.2.77", "fd77::5", "fd88::9", "2001:db8::1"]
    probe = subprocess.run(["ip", "netns", "exec", netns, sys.executable, "-c", PROBE, *destinations],
                           check=True, capture_output=True, text=True, timeout=60)
    got = json.loads(probe.stdout)
    routes, neighbours = got["routes"], {int(k): v for k, v in got["neighbours"].items()}

    assert routes["10.77.0.5"] == [[1, None, a0]]                 # on the link: unicast, no gateway
    assert routes["10.88.1.2"] == [[1, "10.77.0.254", a0]]        # through a router
    assert routes["10.77.0.1"][0][:2] == [2, None]                # our own address: RTN_LOCAL
    assert routes["192.0.2.77"] == 101                            # no route: ENETUNREACH, an answer
    assert routes["fd77::5"] == [[1, None, a0]]
    assert routes["fd88::9"] == [[1, "fd77::fe", a0]]
    assert routes["2001:db8::1"] == 101

    # Every answer agrees with iproute2's.
    for dst, answer in routes.items():
        ref = subprocess.run(["ip", "-n", netns, "-j", "route", "get", dst], capture_output=True, text=True)
        if isinstance(answer, int):
            assert ref.returncode != 0 and "unreachable" in ref.stderr.lower(), (dst, ref.stderr)
        else:
            (r,) = json.loads(ref.stdout)
            assert [answer[0][1], answer[0][2]] == [r.get("gateway"), index[r["dev"]]], (dst, r)

    # The kernel adds multicast entries (NOARP) of its own when links come up: compared are the others.
    for family, flag in ((2, "-4"), (10, "-6")):
        ref = json.loads(ip(netns, flag, "-j", "neigh", "show", "nud", "all"))
        expected = sorted([n["dst"], n.get("lladdr"), sum(NUD[s] for s in n["state"]), a0]
                          for n in ref if n.get("dev") == "a0" and "NOARP" not in n["state"])
        assert sorted(n for n in neighbours[family] if n[3] == a0 and n[2] != NUD["NOARP"]) == expected
    assert ["10.77.0.5", "52:54:00:00:00:05", 0x80, a0] in neighbours[2]
    assert ["10.77.0.6", "52:54:00:00:00:06", 0x04, a0] in neighbours[2]
    assert ["fd77::5", "52:54:00:00:00:55", 0x80, a0] in neighbours[10]

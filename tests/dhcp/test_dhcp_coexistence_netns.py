"""The proxyDHCP beside a real DHCP server and a real OS client, on a bridge (root).

The LAN: a bridge in this namespace carries the proxy (in this process, tied
to the bridge); dnsmasq, the router's DHCP server, runs in a namespace of its
own; busybox udhcpc, an operating system's DHCP client, runs in another with
the Pi's MAC.  The client must get its address from dnsmasq with the proxy
present and silent (it is not boot firmware), and the proxy must learn the
address from the client's REQUEST.  Names and the /24 are unique per run;
everything is removed in a finally.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from pathlib import Path

import pytest

from helpers import free_subnet, ip_command as _ip

from .helpers import PI_MAC, config, started_proxy

pytestmark = pytest.mark.root


@pytest.fixture
def lan(tmp_path):
    if os.geteuid() != 0 or not all(map(shutil.which, ("ip", "dnsmasq", "busybox"))):
        pytest.skip("needs root, iproute2, dnsmasq and busybox")
    tag = f"{os.getpid() % 10000}{secrets.token_hex(2)}"
    bridge, router_ns, client_ns = f"nbb{tag}", f"nbrouter-{tag}", f"nbclient-{tag}"
    x = free_subnet("10.253")
    net = f"10.253.{x}"
    dnsmasq = None
    try:
        _ip("link", "add", "name", bridge, "type", "bridge")
        _ip("addr", "add", f"{net}.1/24", "dev", bridge)
        _ip("link", "set", bridge, "up")
        for ns, side, mac in ((router_ns, "r", None), (client_ns, "c", PI_MAC)):
            _ip("netns", "add", ns)
            _ip("link", "add", f"nb{side}{tag}", "type", "veth", "peer", "name", f"nb{side}{tag}n")
            _ip("link", "set", f"nb{side}{tag}n", "netns", ns)
            _ip("link", "set", f"nb{side}{tag}", "master", bridge)
            _ip("link", "set", f"nb{side}{tag}", "up")
            if mac:
                _ip("-n", ns, "link", "set", f"nb{side}{tag}n", "address", mac)
            _ip("-n", ns, "link", "set", f"nb{side}{tag}n", "up")
            _ip("-n", ns, "link", "set", "lo", "up")
        _ip("-n", router_ns, "addr", "add", f"{net}.2/24", "dev", f"nbr{tag}n")
        dnsmasq = subprocess.Popen(
            ["ip", "netns", "exec", router_ns, "dnsmasq", "--no-daemon", "--port=0", "--conf-file=/dev/null",
             f"--interface=nbr{tag}n", "--bind-interfaces", f"--dhcp-range={net}.50,{net}.60,2m",
             f"--dhcp-leasefile={tmp_path}/leases", f"--pid-file={tmp_path}/dnsmasq.pid"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        yield {"bridge": bridge, "client_ns": client_ns, "client_if": f"nbc{tag}n", "server_ip": f"{net}.1",
               "router_ip": f"{net}.2", "net": net, "tmp": tmp_path}
    finally:
        if dnsmasq is not None:
            dnsmasq.terminate()
            try:
                dnsmasq.wait(10)
            except subprocess.TimeoutExpired:
                dnsmasq.kill()
                dnsmasq.wait(10)
        for ns in (router_ns, client_ns):
            _ip("netns", "del", ns, check=False)
        _ip("link", "del", bridge, check=False)


def test_an_os_client_on_a_configured_mac_gets_its_lease_from_the_router_untouched(lan):
    cfg = config(server_address=lan["server_ip"], interface=lan["bridge"])
    leases: list[tuple[str, str]] = []
    server = started_proxy(cfg, lan["bridge"], lambda ip, mac: leases.append((ip, mac)))
    script = Path(lan["tmp"]) / "udhcpc.sh"
    result = Path(lan["tmp"]) / "lease"
    script.write_text(f'#!/bin/sh\n[ "$1" = bound ] && echo "$ip $serverid" > {result}\nexit 0\n')
    script.chmod(0o755)
    try:
        # 20 DISCOVERs 1 s apart: dnsmasq, started just before, may be slow to listen on a loaded machine
        run = subprocess.run(["ip", "netns", "exec", lan["client_ns"], "busybox", "udhcpc", "-f", "-q", "-n",
                              "-t", "20", "-T", "1", "-i", lan["client_if"], "-s", str(script)],
                             capture_output=True, text=True, timeout=60)
    finally:
        server.stop()
    assert run.returncode == 0, run.stdout + run.stderr
    ip, server_id = result.read_text().split()
    assert server_id == lan["router_ip"] and ip.startswith(lan["net"] + ".")
    stats = server.read_stats()
    # udhcpc's DISCOVER and REQUEST reached the proxy, which answered neither (not boot firmware)
    assert stats.received >= 2 and stats.replies == 0 and stats.malformed == 0 and stats.internal_errors == 0
    assert leases == [(ip, PI_MAC)]        # learned from the client's broadcast REQUEST (option 50)

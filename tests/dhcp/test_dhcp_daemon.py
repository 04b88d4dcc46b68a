"""The daemon starts the proxyDHCP only when enabled, and learns leases from it."""

from __future__ import annotations

import os
import socket

import pytest

from appliance.control.daemon import Appliance
from appliance.dhcp import packet as p
from helpers import eventually

PI_MAC = "dc:a6:32:01:02:03"     # the demo's pi-desktop


def _with_dhcp(layout, enable: bool) -> Appliance:
    text = layout.config.read_text()
    layout.config.write_text(text + f'\n[dhcp]\nenable = {"true" if enable else "false"}\n'
                                    'interface = "lo"\nserver_address = "10.253.0.1"\n')
    return Appliance.open(layout.config)


def test_disabled_by_default(demo_layout):
    with Appliance.open(demo_layout.config) as app:
        app._start_dhcp()
        assert app.dhcp is None and app.config.dhcp.enable is False
    with _with_dhcp(demo_layout, enable=False) as app:
        app._start_dhcp()
        assert app.dhcp is None


@pytest.mark.root
def test_a_lease_seen_by_the_proxy_reaches_the_neighbour_table(demo_layout):
    if os.geteuid() != 0:
        pytest.skip("binds port 67")
    app = _with_dhcp(demo_layout, enable=True)
    app._start_dhcp()             # logs, does not raise, when the port cannot be bound
    if app.dhcp is None:
        app.close()
        pytest.skip("port 67 is taken on this machine")
    try:
        assert app.neighbours.lease_of("10.253.0.50") is None
        req = p.DhcpPacket(op=p.BOOTREQUEST, xid=5, chaddr=bytes.fromhex(PI_MAC.replace(":", "")),
                           options=((p.OPT_MESSAGE_TYPE, bytes((p.DHCPREQUEST,))),
                                    (p.OPT_REQUESTED_IP, bytes([10, 253, 0, 50])),
                                    (p.OPT_VENDOR_CLASS, b"PXEClient:Arch:00000:UNDI:002001")))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.sendto(p.encode_packet(req), ("127.0.0.1", 67))
        eventually(lambda: app.neighbours.lease_of("10.253.0.50") is not None, what="the lease to be learned")
        assert app.neighbours.lease_of("10.253.0.50") == PI_MAC
        assert app.dhcp.read_stats().leases_seen == 1
    finally:
        app.dhcp.stop()
        app.close()


def test_opening_is_explicit_and_close_releases_what_open_took(demo_layout):
    from appliance.config import load_config

    app = Appliance(demo_layout.config, load_config(demo_layout.config))
    assert app.inotify is None and not app.wake.is_open          # the constructor does no I/O
    assert not (demo_layout.root / "gcroots").exists()
    with Appliance.open(demo_layout.config) as app:
        fds = (app.inotify.fd, app.wake.fileno())
        assert all(os.fstat(fd) for fd in fds)
        assert any((demo_layout.root / "gcroots").iterdir())    # roots exist before anything is served
    assert app.inotify is None and not app.wake.is_open
    for fd in fds:
        with pytest.raises(OSError):
            os.fstat(fd)


def test_a_client_that_moves_to_another_address_leaves_no_stale_lease():
    """One MAC holds one DHCP lease: when a configured client shows a new address, its old one no
    longer names it (another machine may get that address), and a LAN peer repeating the client's
    DHCPREQUEST with ever new addresses (option 50) does not grow the table without bound."""
    from appliance.control.neighbours import NeighbourTable
    from appliance.dhcp import ProxyDhcpServer

    from .helpers import PC_MAC, config, request

    cfg = config()
    neighbours = NeighbourTable()
    server = ProxyDhcpServer(lambda: cfg, interface=None, on_lease=neighbours.learn)
    addresses = [f"10.{n // 250}.{n % 250}.7" for n in range(1, 2001)]
    for ip in addresses:
        req = request(PC_MAC, kind=p.DHCPREQUEST,
                      extra=((p.OPT_REQUESTED_IP, socket.inet_aton(ip)),))
        server.handle(p.encode_packet(req), ("0.0.0.0", 68), 67)
    assert server.read_stats().leases_seen == len(addresses)
    assert neighbours.lease_of(addresses[-1]) == PC_MAC
    assert [ip for ip in addresses if neighbours.lease_of(ip) is not None] == [addresses[-1]]

"""The proxyDHCP server's I/O on loopback: replies, malformed datagrams, leases, stop."""

from __future__ import annotations

import errno
import logging
import socket

import pytest

from appliance.dhcp import ProxyDhcpServer
from appliance.dhcp import packet as p

from helpers import eventually, poll

from .helpers import PC_MAC, PI_MAC, config, request

IPXE = ((p.OPT_IPXE_ENCAP, b"\x13\x01\x01"),)


def test_pxe_port_requests_are_answered_and_garbage_is_counted():
    cfg = config()
    leases: list[tuple[str, str]] = []
    server = ProxyDhcpServer(lambda: cfg, interface=None, host="127.0.0.1", port=0, pxe_port=0,
                             on_lease=lambda ip, mac: leases.append((ip, mac)))
    server.run_in_thread()
    try:
        (_, dhcp_port), (_, pxe_port) = server.addresses
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.bind(("127.0.0.1", 0))
            client.settimeout(5)
            # garbage first, on both ports: counted, dropped, the server goes on
            for junk in (b"", b"\x01", b"x" * 300, bytes(236) + b"\x63\x82\x53\x63\x35\x09"):
                client.sendto(junk, ("127.0.0.1", dhcp_port))
                client.sendto(junk, ("127.0.0.1", pxe_port))
            req = request(PC_MAC, kind=p.DHCPREQUEST, extra=IPXE, ciaddr="10.253.7.60", xid=77)
            client.sendto(p.encode_packet(req), ("127.0.0.1", pxe_port))
            reply = p.parse_packet(client.recv(2048))
        assert reply.xid == 77 and reply.message_type == p.DHCPACK and reply.file.endswith(b"boot.ipxe")
        eventually(lambda: server.read_stats().replies == 1, what="the reply to be counted")
        stats = server.read_stats()
        assert stats.malformed == 8 and stats.received == 9 and stats.internal_errors == 0
        assert leases == [("10.253.7.60", PC_MAC)]   # the reply went to the source, 127.0.0.1
    finally:
        server.stop()
    assert server.addresses == []


def test_an_unknown_client_and_a_repeated_lease_are_quiet():
    cfg = config()
    leases: list[tuple[str, str]] = []
    server = ProxyDhcpServer(lambda: cfg, interface=None, host="127.0.0.1", port=0, pxe_port=None,
                             on_lease=lambda ip, mac: leases.append((ip, mac)))
    server.start()
    try:
        source = ("127.0.0.1", 68)
        req = request(PI_MAC, kind=p.DHCPREQUEST, extra=((p.OPT_REQUESTED_IP, bytes([10, 253, 7, 50])),))
        for _ in range(3):
            server.handle(p.encode_packet(req), source, 67)
        server.handle(p.encode_packet(request("02:00:00:00:00:01")), source, 67)
        stats = server.read_stats(reset=True)
        assert stats.ignored == 4 and stats.replies == 0 and stats.leases_seen == 1
        assert leases == [("10.253.7.50", PI_MAC)]
        assert server.read_stats().received == 0
    finally:
        server.stop()


def test_a_flood_of_requests_does_not_flood_the_log(caplog):
    """Replies, refusals, send failures and garbage are counted per datagram but logged a bounded
    number of times: a LAN peer repeating a configured MAC's requests must not fill the journal."""
    cfg = config()
    server = ProxyDhcpServer(lambda: cfg, interface=None, host="127.0.0.1", port=0, pxe_port=0)
    server.run_in_thread()
    count = 100
    try:
        (_, dhcp_port), (_, pxe_port) = server.addresses
        caplog.set_level(logging.DEBUG, logger="appliance.dhcp")
        acked = p.encode_packet(request(PC_MAC, kind=p.DHCPREQUEST, extra=IPXE, ciaddr="10.253.7.60"))
        # a relay address the reply cannot be sent to (the server is bound to loopback)
        unsendable = p.encode_packet(request(PC_MAC, extra=IPXE, giaddr="10.253.7.254"))
        not_pxe = p.encode_packet(request(PC_MAC, vendor=b"udhcp 1.36"))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.bind(("127.0.0.1", 0))
            client.settimeout(5)
            for n in range(1, count + 1):
                for datagram in (unsendable, not_pxe, b"garbage"):
                    client.sendto(datagram, ("127.0.0.1", dhcp_port))
                client.sendto(acked, ("127.0.0.1", pxe_port))
                p.parse_packet(client.recv(2048))
                # Paced by the server's own count: an unpaced burst on a loaded machine would
                # overflow the socket's buffer, and what the kernel drops is never read.
                eventually(lambda: server.read_stats().received >= 4 * n, what=f"round {n} to be read")

        def counted():
            stats = server.read_stats()
            return (stats.replies, stats.send_errors, stats.ignored, stats.malformed)
        # A reply is counted just after it is sent: the client may see it first.
        poll(lambda: counted() == (count,) * 4)
        assert counted() == (count,) * 4
    finally:
        server.stop()
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("appliance.dhcp")]
    assert len(lines) <= 8, lines[:12]


def test_what_a_peer_varies_does_not_multiply_log_lines_or_throttle_keys(caplog):
    """A configured MAC's requests are logged once a minute per host and outcome, whatever else
    the sender varies: one line per client architecture (option 93, 65 536 values) would let any
    LAN peer write to the journal at the rate it sends, and grow the throttle's table with it."""
    cfg = config()
    server = ProxyDhcpServer(lambda: cfg, interface=None, host="127.0.0.1", port=0, pxe_port=None)
    caplog.set_level(logging.DEBUG, logger="appliance.dhcp")
    source = ("127.0.0.1", 68)
    for arch in range(20, 520):
        for vendor in (b"PXEClient:Arch:00020", b"HTTPClient:Arch:00020"):
            server.handle(p.encode_packet(request(PC_MAC, arch=arch, vendor=vendor)), source, 67)
    stats = server.read_stats()
    assert stats.received == 1000 and stats.ignored == 1000 and stats.internal_errors == 0
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("appliance.dhcp")]
    assert len(lines) <= 2, lines[:5]
    assert "architecture 20" in lines[0]           # the line still says what was refused


@pytest.mark.parametrize("logical", ["dhcp", "pxe"])
def test_a_port_another_server_holds_is_not_shared(logical):
    """A DHCP or PXE server on this machine that binds its port with SO_REUSEADDR (dnsmasq with
    --bind-interfaces does) must not find the proxy bound beside it: the kernel then delivers
    each unicast datagram (renewals, relayed requests) to one socket only, the proxy's, which
    drops them.  The proxy's bind fails instead (and the daemon reports it)."""
    other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    other.bind(("127.0.0.1", 0))
    held = other.getsockname()[1]
    cfg = config()
    kwargs = {"port": held, "pxe_port": None} if logical == "dhcp" else {"port": 0, "pxe_port": held}
    server = ProxyDhcpServer(lambda: cfg, interface=None, host="127.0.0.1", **kwargs)
    try:
        if logical == "dhcp":
            with pytest.raises(OSError) as failure:
                server.start()
            assert failure.value.errno == errno.EADDRINUSE
        else:
            server.start()                  # runs without the PXE port, as documented
            assert [port for _, port in server.addresses] != [held]
            assert len(server.addresses) == 1
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.sendto(b"unicast for the other server", ("127.0.0.1", held))
        other.settimeout(5)
        assert other.recv(100) == b"unicast for the other server"
    finally:
        server.stop()
        other.close()


def test_a_datagram_longer_than_the_receive_buffer_is_dropped_not_answered_from_its_start():
    """A datagram cut short by the receive buffer is counted as malformed, never decided on what
    fitted: here the client architecture (option 93, UEFI) lies past the cut, and answering the
    rest would send a UEFI client the BIOS binary."""
    from appliance.dhcp.server import MAX_DATAGRAM

    cfg = config(bios_bootfile="undionly.kpxe", efi_bootfile="ipxe.efi")
    server = ProxyDhcpServer(lambda: cfg, interface=None, host="127.0.0.1", port=0, pxe_port=None)
    server.run_in_thread()
    try:
        ((_, dhcp_port),) = server.addresses
        head = p.encode_packet(request(PC_MAC, arch=None, vendor=b"PXEClient:Arch:00007"), min_size=0)[:-1]  # no END
        datagram = head + bytes(MAX_DATAGRAM - len(head)) + bytes((p.OPT_CLIENT_ARCH, 2, 0, 7, p.OPT_END))
        whole = p.parse_packet(datagram)
        assert whole.option(p.OPT_CLIENT_ARCH) == b"\x00\x07"      # the whole datagram is a UEFI DISCOVER
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.sendto(datagram, ("127.0.0.1", dhcp_port))

        def handled():
            stats = server.read_stats()
            return stats.malformed + stats.ignored + stats.replies + stats.send_errors + stats.internal_errors
        eventually(lambda: handled() == 1, what="the datagram to be handled")
        stats = server.read_stats()
        assert (stats.malformed, stats.replies, stats.send_errors) == (1, 0, 0)
    finally:
        server.stop()

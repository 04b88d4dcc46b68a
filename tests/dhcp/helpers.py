"""Shared builders for the proxyDHCP tests: a configuration and client requests."""

from __future__ import annotations

import errno
from typing import Callable

import pytest

from appliance.config.parse import parse_config
from appliance.dhcp import packet as p

SERVER = "10.253.7.1"
PI_MAC = "dc:a6:32:01:02:03"
PC_MAC = "52:54:00:ab:cd:ef"
BOARD_MAC = "02:00:00:00:0b:0a"
STRANGER_MAC = "02:00:00:00:be:ef"
PI_UUID = b"\x00" + bytes(range(16))
PI_VENDOR = b"PXEClient:Arch:00000:UNDI:002001"


def config(dhcp: dict | None = None, **extra_dhcp):
    table = {"enable": True, "interface": "eth0", "server_address": SERVER}
    table.update(dhcp or {})
    table.update(extra_dhcp)
    return parse_config({
        "dhcp": table,
        "firmware": {"rpi": {"path": "/fw"}},
        "hosts": {
            "pi": {"boot": "rpi", "mac": PI_MAC, "profile": "/p/pi"},
            "pc": {"boot": "ipxe", "mac": PC_MAC, "profile": "/p/pc"},
            "board": {"boot": "uboot", "mac": BOARD_MAC, "profile": "/p/board"},
        },
    })


def mac_bytes(mac: str) -> bytes:
    return bytes.fromhex(mac.replace(":", ""))


def request(mac: str = PI_MAC, kind: int = p.DHCPDISCOVER, vendor: bytes | None = PI_VENDOR,
            arch: int | None = 0, extra: tuple[tuple[int, bytes], ...] = (), xid: int = 0x1234ABCD,
            **fields) -> p.DhcpPacket:
    options: list[tuple[int, bytes]] = [(p.OPT_MESSAGE_TYPE, bytes((kind,)))]
    if vendor is not None:
        options.append((p.OPT_VENDOR_CLASS, vendor))
    if arch is not None:
        options.append((p.OPT_CLIENT_ARCH, arch.to_bytes(2, "big")))
    options.append((p.OPT_PARAMETER_LIST, bytes([1, 3, 43, 60, 66, 67])))
    options.extend(extra)
    return p.DhcpPacket(op=p.BOOTREQUEST, xid=xid, chaddr=mac_bytes(mac), options=tuple(options), **fields)


def pi_discover(**kw) -> p.DhcpPacket:
    return request(PI_MAC, extra=((p.OPT_CLIENT_NDI, b"\x01\x02\x01"), (p.OPT_CLIENT_UUID, PI_UUID)), **kw)



def started_proxy(cfg, interface: str, on_lease: Callable[[str, str], None]):
    """A running ProxyDhcpServer tied to ``interface``; skips the test if port 67 or 4011 is taken."""
    from appliance.dhcp import ProxyDhcpServer

    server = ProxyDhcpServer(lambda: cfg, interface=interface, on_lease=on_lease)
    try:
        server.run_in_thread()
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            pytest.skip(f"port 67 or 4011 is taken on this machine: {exc}")
        raise
    return server

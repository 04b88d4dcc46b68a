"""Client IP → MAC, from the kernel neighbour table (pyroute2) and DHCP leases seen.

The only I/O for host resolution of unprefixed TFTP paths and for access
control.  One netlink socket, opened lazily and kept; used from the TFTP
thread only.
"""

from __future__ import annotations

import ipaddress
import logging
from typing import Mapping

log = logging.getLogger(__name__)

# NUD states that carry a usable link-layer address (reachable, stale, delay, probe, permanent, noarp).
_USABLE_NUD = 0x02 | 0x04 | 0x08 | 0x10 | 0x80 | 0x40


def canonical_ip(ip: str) -> str:
    """Strip IPv4-mapped IPv6 (``::ffff:10.0.0.5`` → ``10.0.0.5``) and scope ids."""
    text = ip.split("%", 1)[0]
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return text
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
        return str(addr.ipv4_mapped)
    return str(addr)


class NeighbourTable:
    """``mac_of(ip)`` → lower-case colon MAC, or None when it cannot be determined."""

    def __init__(self, static: Mapping[str, str] | None = None) -> None:
        self._static = dict(static or {})      # leases seen by the proxyDHCP, tests
        self._ipr = None
        self._broken = False

    def learn(self, ip: str, mac: str) -> None:
        self._static[canonical_ip(ip)] = mac.lower()

    def mac_of(self, ip: str) -> str | None:
        """The kernel's neighbour table first (authoritative on the link), then leases seen."""
        ip = canonical_ip(ip)
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return None
        if not addr.is_loopback and not self._broken:
            mac = self._kernel_mac(ip, addr.version)
            if mac is not None:
                return mac
        return self._static.get(ip)

    def _kernel_mac(self, ip: str, version: int) -> str | None:
        try:
            if self._ipr is None:
                from pyroute2 import IPRoute

                self._ipr = IPRoute()
            family = 10 if version == 6 else 2
            for msg in self._ipr.get_neighbours(family=family, dst=ip):
                if msg["state"] & _USABLE_NUD:
                    mac = msg.get_attr("NDA_LLADDR")
                    if mac and mac != "00:00:00:00:00:00":
                        return mac.lower()
        except Exception as exc:  # netlink unavailable: behave as "MAC unknown"
            log.warning("neighbour table unreadable, client MACs unknown: %s", exc)
            self._broken = True
        return None

    def close(self) -> None:
        if self._ipr is not None:
            self._ipr.close()
            self._ipr = None

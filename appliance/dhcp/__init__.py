"""An optional proxyDHCP: PXE boot options for configured hosts, never addresses.

    packet   pure BOOTP/DHCP codec (``parse_packet`` raises only MalformedPacket)
    policy   pure: parsed request + configuration → reply or None; leases seen
    server   UDP sockets on ports 67 and 4011, a loop, counters
"""

from .packet import DhcpPacket, MalformedPacket, encode_packet, parse_packet
from .policy import Decision, decide, seen_lease
from .server import DhcpStats, ProxyDhcpServer, reply_destination

__all__ = [
    "Decision",
    "DhcpPacket",
    "DhcpStats",
    "MalformedPacket",
    "ProxyDhcpServer",
    "decide",
    "encode_packet",
    "parse_packet",
    "reply_destination",
    "seen_lease",
]

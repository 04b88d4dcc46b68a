"""A read-only TFTP transfer engine (RFC 1350, 2347, 2348, 2349, 7440).

Generic: it serves whatever a ``ContentProvider`` (``appliance.content``)
returns for (client, path) and knows nothing about hosts, generations or Nix.

    packets   pure datagram codec (``parse_packet`` raises only MalformedPacket)
    options   option negotiation policy
    transfer  one transfer as a state machine without I/O
    server    sockets, epoll loop, timers, stats
    worker    transfer worker processes (the data path out of the admitting process)
"""

from .options import Negotiated, OptionRefused, negotiate
from .packets import MalformedPacket, parse_packet
from .server import TftpServer, TftpStats
from .transfer import Transfer

__all__ = [
    "MalformedPacket",
    "Negotiated",
    "OptionRefused",
    "TftpServer",
    "TftpStats",
    "Transfer",
    "negotiate",
    "parse_packet",
]

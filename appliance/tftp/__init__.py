"""A read-only TFTP transfer engine (RFC 1350, 2347, 2348, 2349, 7440).

Generic: it serves whatever a ``ContentProvider`` returns for (client, path)
and knows nothing about hosts, generations or Nix.

    packets   pure datagram codec (``parse_packet`` raises only MalformedPacket)
    paths     filename cleaning policy
    options   option negotiation policy
    transfer  one transfer as a state machine without I/O
    server    sockets, epoll loop, timers, stats
"""

from .content import (
    AccessDenied,
    BytesContent,
    Content,
    ContentProvider,
    DictProvider,
    DirectoryProvider,
    FileContent,
    FileNotFound,
    TftpRequestError,
    TransferRecord,
)
from .options import Negotiated, OptionRefused, negotiate
from .packets import MalformedPacket, parse_packet
from .paths import clean_path
from .server import TftpServer, TftpStats, parse_listen_address
from .transfer import Transfer

__all__ = [
    "AccessDenied",
    "BytesContent",
    "Content",
    "ContentProvider",
    "DictProvider",
    "DirectoryProvider",
    "FileContent",
    "FileNotFound",
    "MalformedPacket",
    "Negotiated",
    "OptionRefused",
    "TftpRequestError",
    "TftpServer",
    "TftpStats",
    "Transfer",
    "TransferRecord",
    "clean_path",
    "negotiate",
    "parse_listen_address",
    "parse_packet",
]

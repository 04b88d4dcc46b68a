"""The few rtnetlink messages the client-MAC check needs, encoded and decoded.

Linux rtnetlink (``rtnetlink(7)``, ``netlink(7)``; the structures of
``<linux/netlink.h>``, ``<linux/rtnetlink.h>``, ``<linux/neighbour.h>``):

- ``RTM_GETROUTE`` for one destination: which route the kernel would take to a
  client (its type, its gateway if any, its output interface);
- ``RTM_GETNEIGH`` dump of one address family: the neighbour table
  (address → link-layer address, NUD state).

Pure: bytes in, bytes or plain values out; ``NetlinkSocket`` is the thin
socket layer.  A general netlink library costs seconds to import on a slow
machine, and these two questions are asked before the first file is served.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
from typing import Iterator, NamedTuple

# <linux/netlink.h>
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_MULTI = 0x1, 0x2
NLM_F_DUMP = 0x300              # NLM_F_ROOT | NLM_F_MATCH
NETLINK_ROUTE = 0
# <linux/rtnetlink.h>
RTM_NEWROUTE, RTM_GETROUTE = 24, 26
RTM_NEWNEIGH, RTM_GETNEIGH = 28, 30
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_VIA = 1, 4, 5, 18
RTN_UNICAST, RTN_LOCAL = 1, 2
# <linux/neighbour.h>
NDA_DST, NDA_LLADDR = 1, 2

_NLMSGHDR = struct.Struct("=IHHII")       # length, type, flags, sequence, port id
_RTMSG = struct.Struct("=BBBBBBBBI")      # family, dst_len, src_len, tos, table, protocol, scope, type, flags
_NDMSG = struct.Struct("=BxxxiHBB")       # family, (pad), ifindex, state, flags, type
_NLMSGERR = struct.Struct("=i")           # -errno, then the offending request's header
_RTATTR = struct.Struct("=HH")            # length, type
_ALIGN = 4


# Records are NamedTuples: a dataclass costs ~15x more to define, paid at every start.


class NetlinkError(OSError):
    """The kernel answered a request with an error (``NLMSG_ERROR`` carrying ``errno``)."""


class MalformedMessage(ValueError):
    """Bytes that are no well-formed netlink message."""


class Route(NamedTuple):
    family: int
    type: int                    # RTN_UNICAST, RTN_LOCAL, ...
    gateway: str | None          # RTA_GATEWAY (or RTA_VIA): the destination is reached through a router
    oif: int | None


class Neighbour(NamedTuple):
    family: int
    ifindex: int
    state: int                   # NUD_* bits
    address: str | None          # NDA_DST
    lladdr: str | None           # NDA_LLADDR, "aa:bb:cc:dd:ee:ff"


class Message(NamedTuple):
    type: int
    flags: int
    seq: int
    payload: bytes


def _align(n: int) -> int:
    return (n + _ALIGN - 1) & ~(_ALIGN - 1)


def _attr(kind: int, value: bytes) -> bytes:
    length = _RTATTR.size + len(value)
    return _RTATTR.pack(length, kind) + value + b"\0" * (_align(length) - length)


def _message(kind: int, flags: int, seq: int, body: bytes) -> bytes:
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(body), kind, flags, seq, 0) + body


def route_get_request(seq: int, destination: str) -> bytes:
    """``RTM_GETROUTE`` for one address: the kernel answers with the route it would use."""
    addr = ipaddress.ip_address(destination)
    family = socket.AF_INET6 if addr.version == 6 else socket.AF_INET
    rtmsg = _RTMSG.pack(family, addr.max_prefixlen, 0, 0, 0, 0, 0, 0, 0)
    return _message(RTM_GETROUTE, NLM_F_REQUEST, seq, rtmsg + _attr(RTA_DST, addr.packed))


def neighbour_dump_request(seq: int, family: int) -> bytes:
    """``RTM_GETNEIGH`` dump of one address family's neighbour table."""
    return _message(RTM_GETNEIGH, NLM_F_REQUEST | NLM_F_DUMP, seq, _NDMSG.pack(family, 0, 0, 0, 0))


def split_messages(data: bytes) -> Iterator[Message]:
    """The netlink messages in one datagram from the kernel."""
    offset = 0
    while offset + _NLMSGHDR.size <= len(data):
        length, kind, flags, seq, _port = _NLMSGHDR.unpack_from(data, offset)
        if length < _NLMSGHDR.size or offset + length > len(data):
            raise MalformedMessage(f"netlink message length {length} at offset {offset} of {len(data)} bytes")
        yield Message(kind, flags, seq, data[offset + _NLMSGHDR.size:offset + length])
        offset += _align(length)


def attributes(data: bytes, offset: int) -> Iterator[tuple[int, bytes]]:
    """(type, value) of the route attributes from ``offset`` to the end of ``data``."""
    while offset + _RTATTR.size <= len(data):
        length, kind = _RTATTR.unpack_from(data, offset)
        if length < _RTATTR.size or offset + length > len(data):
            raise MalformedMessage(f"route attribute length {length} at offset {offset} of {len(data)} bytes")
        yield kind & 0x3FFF, data[offset + _RTATTR.size:offset + length]    # without NLA_F_NESTED / BYTEORDER
        offset += _align(length)


def error_of(message: Message) -> int:
    """The errno of an ``NLMSG_ERROR`` message (0: an acknowledgement)."""
    if len(message.payload) < _NLMSGERR.size:
        raise MalformedMessage("short NLMSG_ERROR")
    return -_NLMSGERR.unpack_from(message.payload)[0]


def _address(family: int, value: bytes) -> str | None:
    if family == socket.AF_INET and len(value) == 4 or family == socket.AF_INET6 and len(value) == 16:
        return socket.inet_ntop(family, value)
    return None


def _via(value: bytes) -> str | None:
    # struct rtvia: a 16-bit address family, then the address
    if len(value) < 2:
        return None
    return _address(struct.unpack_from("=H", value)[0], value[2:])


def decode_route(payload: bytes) -> Route:
    if len(payload) < _RTMSG.size:
        raise MalformedMessage("short rtmsg")
    family, *_, kind, _flags = _RTMSG.unpack_from(payload)
    gateway = oif = None
    for attr, value in attributes(payload, _RTMSG.size):
        if attr == RTA_GATEWAY:
            gateway = _address(family, value)
        elif attr == RTA_VIA:
            gateway = _via(value)
        elif attr == RTA_OIF and len(value) == 4:
            oif = struct.unpack("=I", value)[0]
    return Route(family, kind, gateway, oif)


def decode_neighbour(payload: bytes) -> Neighbour:
    if len(payload) < _NDMSG.size:
        raise MalformedMessage("short ndmsg")
    family, ifindex, state, _flags, _type = _NDMSG.unpack_from(payload)
    address = lladdr = None
    for attr, value in attributes(payload, _NDMSG.size):
        if attr == NDA_DST:
            address = _address(family, value)
        elif attr == NDA_LLADDR:
            lladdr = value.hex(":") if value else None
    return Neighbour(family, ifindex, state, address, lladdr)


class NetlinkSocket:
    """One ``NETLINK_ROUTE`` socket asking one question at a time (not thread-safe).

    ``OSError`` (``NetlinkError`` when the kernel refused the request,
    ``TimeoutError`` when it did not answer within ``timeout``) means the
    question has no answer now.
    """

    RECV_BYTES = 1 << 16    # the kernel fills dump datagrams up to a page or ~32 KiB

    def __init__(self, timeout: float = 1.0) -> None:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_ROUTE)
        try:
            sock.bind((0, 0))
            sock.settimeout(timeout)
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        self._seq = 0

    def route_to(self, destination: str) -> list[Route]:
        """The route(s) the kernel would use to reach ``destination``."""
        self._seq += 1
        replies = self._ask(route_get_request(self._seq, destination), self._seq, dump=False)
        return [decode_route(m.payload) for m in replies if m.type == RTM_NEWROUTE]

    def neighbours(self, family: int) -> list[Neighbour]:
        self._seq += 1
        replies = self._ask(neighbour_dump_request(self._seq, family), self._seq, dump=True)
        return [decode_neighbour(m.payload) for m in replies if m.type == RTM_NEWNEIGH]

    def _ask(self, request: bytes, seq: int, dump: bool) -> list[Message]:
        self._sock.send(request)
        replies: list[Message] = []
        while True:
            for message in split_messages(self._sock.recv(self.RECV_BYTES)):
                if message.seq != seq:
                    continue          # the late answer to a request that timed out
                if message.type == NLMSG_ERROR:
                    code = error_of(message)
                    if code:
                        raise NetlinkError(code, os.strerror(code))
                    return replies
                if message.type == NLMSG_DONE:
                    return replies
                replies.append(message)
                if not dump and not message.flags & NLM_F_MULTI:
                    return replies

    def close(self) -> None:
        self._sock.close()

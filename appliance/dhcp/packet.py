"""DHCP/BOOTP datagram codec (RFC 951, 2131, 2132, 3396): pure functions over bytes.

``parse_packet`` turns any datagram into a ``DhcpPacket`` or raises
``MalformedPacket`` — never anything else — so the I/O layer can feed it
whatever arrives on a socket.  ``encode_packet`` builds a datagram.

Written by hand rather than on scapy's ``BOOTP``/``DHCP`` layers: scapy's
dissectors are deliberately lenient (a truncated option becomes padding or a
``Raw`` layer, never an error), which hides exactly the malformed input a
server must count and drop.  scapy stays the independent decoder/encoder in
the tests and the raw-socket client of the real-peer test.

Options are kept as ``(code, value)`` pairs in order of first appearance.
Repeated instances of one code are concatenated (RFC 3396 "long options"),
and option overload (option 52) is honoured: options carried in the ``file``
and ``sname`` fields are appended after the main area, in that order.
Interpretation of option values is policy's job.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

__all__ = [
    "BOOTREQUEST", "BOOTREPLY", "MAGIC_COOKIE",
    "DHCPDISCOVER", "DHCPOFFER", "DHCPREQUEST", "DHCPDECLINE", "DHCPACK", "DHCPNAK",
    "DHCPRELEASE", "DHCPINFORM",
    "OPT_PAD", "OPT_VENDOR_SPECIFIC", "OPT_REQUESTED_IP", "OPT_OVERLOAD", "OPT_MESSAGE_TYPE",
    "OPT_SERVER_ID", "OPT_PARAMETER_LIST", "OPT_VENDOR_CLASS", "OPT_TFTP_SERVER", "OPT_BOOTFILE",
    "OPT_USER_CLASS", "OPT_CLIENT_ARCH", "OPT_CLIENT_NDI", "OPT_CLIENT_UUID", "OPT_IPXE_ENCAP",
    "OPT_END",
    "MalformedPacket", "DhcpPacket", "parse_packet", "encode_packet",
    "parse_suboptions", "encode_suboptions",
]

BOOTREQUEST, BOOTREPLY = 1, 2
MAGIC_COOKIE = b"\x63\x82\x53\x63"

DHCPDISCOVER, DHCPOFFER, DHCPREQUEST, DHCPDECLINE = 1, 2, 3, 4
DHCPACK, DHCPNAK, DHCPRELEASE, DHCPINFORM = 5, 6, 7, 8

OPT_PAD = 0
OPT_VENDOR_SPECIFIC = 43      # PXE: encapsulated sub-options
OPT_REQUESTED_IP = 50
OPT_OVERLOAD = 52
OPT_MESSAGE_TYPE = 53
OPT_SERVER_ID = 54
OPT_PARAMETER_LIST = 55
OPT_VENDOR_CLASS = 60
OPT_TFTP_SERVER = 66          # a string (RFC 2132 §9.4), not an address
OPT_BOOTFILE = 67
OPT_USER_CLASS = 77
OPT_CLIENT_ARCH = 93          # RFC 4578
OPT_CLIENT_NDI = 94
OPT_CLIENT_UUID = 97
OPT_IPXE_ENCAP = 175          # iPXE's own encapsulated options: present only in iPXE
OPT_END = 255

# op htype hlen hops | xid | secs flags | ciaddr yiaddr siaddr giaddr | chaddr[16] sname[64] file[128]
_HEADER = struct.Struct("!BBBBIHH4s4s4s4s16s64s128s")
HEADER_SIZE = _HEADER.size    # 236
MIN_REPLY_SIZE = 300          # some clients (the Linux kernel's ipconfig among them) drop shorter BOOTP packets


class MalformedPacket(ValueError):
    """The datagram is not a well-formed BOOTP/DHCP packet."""


def _ip(raw: bytes) -> str:
    return str(ipaddress.IPv4Address(raw))


def _ip_bytes(text: str) -> bytes:
    return ipaddress.IPv4Address(text).packed


@dataclass(frozen=True, slots=True)
class DhcpPacket:
    """One BOOTP/DHCP message.  Addresses are dotted-quad strings; ``chaddr`` is raw (≤ 16 bytes)."""

    op: int
    xid: int
    chaddr: bytes = b""
    htype: int = 1
    hlen: int = 6
    hops: int = 0
    secs: int = 0
    flags: int = 0
    ciaddr: str = "0.0.0.0"
    yiaddr: str = "0.0.0.0"
    siaddr: str = "0.0.0.0"
    giaddr: str = "0.0.0.0"
    sname: bytes = b""
    file: bytes = b""
    options: tuple[tuple[int, bytes], ...] = ()
    has_cookie: bool = True       # False: plain BOOTP (RFC 951), no options area

    BROADCAST_FLAG = 0x8000

    def option(self, code: int) -> bytes | None:
        for c, value in self.options:
            if c == code:
                return value
        return None

    @property
    def message_type(self) -> int | None:
        value = self.option(OPT_MESSAGE_TYPE)
        return value[0] if value is not None and len(value) == 1 else None

    @property
    def mac(self) -> str | None:
        """``chaddr`` as a lower-case colon MAC for Ethernet (htype 1, hlen 6), else None."""
        if self.htype != 1 or self.hlen != 6 or len(self.chaddr) < 6:
            return None
        return ":".join(f"{b:02x}" for b in self.chaddr[:6])

    @property
    def broadcast(self) -> bool:
        return bool(self.flags & self.BROADCAST_FLAG)


def _cstring(raw: bytes) -> bytes:
    return raw.split(b"\0", 1)[0]


def _walk_options(area: bytes, where: str, out: dict[int, bytearray]) -> None:
    """Add the options of one area to ``out`` (insertion-ordered); stop at END."""
    i, n = 0, len(area)
    while i < n:
        code = area[i]
        if code == OPT_PAD:
            i += 1
            continue
        if code == OPT_END:
            return
        if i + 1 >= n:
            raise MalformedPacket(f"option {code} in {where} has no length byte")
        length = area[i + 1]
        end = i + 2 + length
        if end > n:
            raise MalformedPacket(f"option {code} in {where} claims {length} bytes, {n - i - 2} left")
        out.setdefault(code, bytearray()).extend(area[i + 2:end])
        i = end
    # No END option: tolerated (several ROMs omit it when the area is exactly full).


def parse_packet(data: bytes) -> DhcpPacket:
    """Decode one datagram; raise ``MalformedPacket`` (only) if it is not BOOTP/DHCP."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise MalformedPacket(f"expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) < HEADER_SIZE:
        raise MalformedPacket(f"{len(data)} bytes is shorter than a BOOTP header ({HEADER_SIZE})")
    (op, htype, hlen, hops, xid, secs, flags, ciaddr, yiaddr, siaddr, giaddr,
     chaddr, sname, file) = _HEADER.unpack_from(data)
    if op not in (BOOTREQUEST, BOOTREPLY):
        raise MalformedPacket(f"op {op} is neither BOOTREQUEST nor BOOTREPLY")
    if hlen > 16:
        raise MalformedPacket(f"hardware address length {hlen} exceeds 16")
    rest = data[HEADER_SIZE:]
    options: dict[int, bytearray] = {}
    has_cookie = rest[:4] == MAGIC_COOKIE   # otherwise plain BOOTP: the vendor area is not read
    if has_cookie:
        _walk_options(rest[4:], "options", options)
        overload = options.get(OPT_OVERLOAD)
        if overload is not None:
            if len(overload) != 1 or overload[0] not in (1, 2, 3):
                raise MalformedPacket(f"option overload value {bytes(overload)!r} is not 1, 2 or 3")
            if overload[0] & 1:
                _walk_options(file, "file", options)
            if overload[0] & 2:
                _walk_options(sname, "sname", options)
            file = file if not overload[0] & 1 else b""
            sname = sname if not overload[0] & 2 else b""
    return DhcpPacket(
        op=op, htype=htype, hlen=hlen, hops=hops, xid=xid, secs=secs, flags=flags,
        ciaddr=_ip(ciaddr), yiaddr=_ip(yiaddr), siaddr=_ip(siaddr), giaddr=_ip(giaddr),
        chaddr=chaddr[:hlen], sname=_cstring(sname), file=_cstring(file),
        options=tuple((code, bytes(value)) for code, value in options.items()),
        has_cookie=has_cookie,
    )


def _encode_option(code: int, value: bytes) -> bytes:
    if not 1 <= code <= 254:
        raise ValueError(f"option code {code} is not 1–254")
    if not value:
        return bytes((code, 0))
    # RFC 3396: a value longer than 255 bytes is split into consecutive instances.
    return b"".join(bytes((code, len(chunk))) + chunk
                    for chunk in (value[i:i + 255] for i in range(0, len(value), 255)))


def encode_packet(packet: DhcpPacket, min_size: int = MIN_REPLY_SIZE) -> bytes:
    """Encode a packet: header, cookie, options, END, zero padding up to ``min_size``.

    Raises ``ValueError`` for values that cannot be encoded (a programming
    error, not a network one).
    """
    if len(packet.chaddr) > 16:
        raise ValueError("chaddr is longer than 16 bytes")
    if len(packet.sname) > 63 or len(packet.file) > 127:
        raise ValueError("sname or file too long (63 / 127 bytes plus NUL)")
    header = _HEADER.pack(
        packet.op, packet.htype, packet.hlen, packet.hops, packet.xid, packet.secs, packet.flags,
        _ip_bytes(packet.ciaddr), _ip_bytes(packet.yiaddr), _ip_bytes(packet.siaddr), _ip_bytes(packet.giaddr),
        packet.chaddr.ljust(16, b"\0"), packet.sname.ljust(64, b"\0"), packet.file.ljust(128, b"\0"),
    )
    body = b""
    if packet.has_cookie:
        body = MAGIC_COOKIE + b"".join(_encode_option(c, v) for c, v in packet.options) + bytes((OPT_END,))
    elif packet.options:
        raise ValueError("a plain BOOTP packet (no cookie) cannot carry options")
    return (header + body).ljust(min_size, b"\0")


def parse_suboptions(data: bytes) -> tuple[tuple[int, bytes], ...]:
    """Decode encapsulated options (option 43 and the like); ``MalformedPacket`` on error."""
    out: dict[int, bytearray] = {}
    _walk_options(bytes(data), "encapsulated options", out)
    return tuple((code, bytes(value)) for code, value in out.items())


def encode_suboptions(items: tuple[tuple[int, bytes], ...] | list[tuple[int, bytes]]) -> bytes:
    """Encode encapsulated options, terminated by END (255) as PXE clients expect."""
    out = bytearray()
    for code, value in items:
        if len(value) > 255:
            raise ValueError(f"sub-option {code} is longer than 255 bytes")
        out += _encode_option(code, value)
    out.append(OPT_END)
    return bytes(out)

"""TFTP datagram codec: pure functions over bytes.

``parse_packet`` turns any datagram into one of the packet types below or
raises ``MalformedPacket`` — never anything else — so the I/O layer can feed
it whatever arrives on a socket.  ``encode_*`` build datagrams.

Written by hand rather than on tftpy's codec: tftpy 0.8.7 raises assorted
exceptions (struct.error, UnicodeDecodeError, IndexError) on short ACKs,
non-ASCII filenames and options without a terminating NUL.

Filenames stay ``bytes`` here; decoding and cleaning them is policy
(``appliance.content.clean_path``).  Option names are lower-cased (RFC 2347 says they are
case-insensitive); option values are kept as text, interpretation is
``options.negotiate``'s job.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = [
    "OP_RRQ", "OP_WRQ", "OP_DATA", "OP_ACK", "OP_ERROR", "OP_OACK",
    "ERR_UNDEFINED", "ERR_NOT_FOUND", "ERR_ACCESS", "ERR_DISK_FULL",
    "ERR_ILLEGAL_OP", "ERR_UNKNOWN_TID", "ERR_FILE_EXISTS", "ERR_NO_USER",
    "ERR_OPTION",
    "MalformedPacket", "Request", "Data", "Ack", "Error", "OptionAck", "Packet",
    "parse_packet", "ack_block", "encode_request", "encode_data", "encode_ack",
    "encode_error", "encode_oack",
]

OP_RRQ, OP_WRQ, OP_DATA, OP_ACK, OP_ERROR, OP_OACK = 1, 2, 3, 4, 5, 6

ERR_UNDEFINED = 0
ERR_NOT_FOUND = 1
ERR_ACCESS = 2
ERR_DISK_FULL = 3
ERR_ILLEGAL_OP = 4
ERR_UNKNOWN_TID = 5
ERR_FILE_EXISTS = 6
ERR_NO_USER = 7
ERR_OPTION = 8


class MalformedPacket(ValueError):
    """The datagram is not a well-formed TFTP packet."""


# NamedTuples: immutable, cheap to build per datagram and to define at every start.
class Request(NamedTuple):
    """RRQ or WRQ.  ``options`` keeps order and duplicates: (name, value)."""

    opcode: int
    filename: bytes
    mode: str
    options: tuple[tuple[str, str], ...] = ()

    @property
    def is_write(self) -> bool:
        return self.opcode == OP_WRQ


class Data(NamedTuple):
    """DATA (RFC 1350)."""

    block: int
    payload: bytes


class Ack(NamedTuple):
    """ACK (RFC 1350)."""

    block: int


class Error(NamedTuple):
    """ERROR (RFC 1350)."""

    code: int
    message: str


class OptionAck(NamedTuple):
    """OACK (RFC 2347)."""

    options: tuple[tuple[str, str], ...]


Packet = Request | Data | Ack | Error | OptionAck


def _split_fields(body: bytes, what: str) -> list[bytes]:
    """NUL-terminated fields; the body must end with NUL."""
    if not body.endswith(b"\0"):
        raise MalformedPacket(f"{what}: last field not NUL-terminated")
    return body[:-1].split(b"\0")


def _decode_option_fields(fields: list[bytes], what: str) -> tuple[tuple[str, str], ...]:
    if len(fields) % 2:
        raise MalformedPacket(f"{what}: option {fields[-1][:32]!r} has no value")
    options = []
    for i in range(0, len(fields), 2):
        name, value = fields[i], fields[i + 1]
        if not name:
            raise MalformedPacket(f"{what}: empty option name")
        # latin-1 never fails; non-ASCII names simply match no known option.
        options.append((name.decode("latin-1").lower(), value.decode("latin-1")))
    return tuple(options)


def _parse_request(opcode: int, datagram: bytes) -> Request:
    """Read fields up to the first empty one, as tftpd-hpa and dnsmasq do.

    RFC 1350 ends a request after the mode and RFC 2347 appends name/value
    pairs, but some PXE ROMs pad the datagram with NULs; so an empty field ends
    the request, and a final option name left without a value (NUL-terminated
    or not) is dropped.  The filename and mode must still be present,
    non-empty and NUL-terminated, and so must an option's value.
    """
    *fields, unterminated = datagram[2:].split(b"\0")
    if len(fields) < 2:
        raise MalformedPacket("request: filename or mode not NUL-terminated")
    filename, mode = fields[0], fields[1]
    if not filename:
        raise MalformedPacket("request: empty filename")
    if not mode:
        raise MalformedPacket("request: empty mode")
    option_fields = fields[2:]
    if b"" in option_fields:
        option_fields = option_fields[:option_fields.index(b"")]
    elif unterminated and len(option_fields) % 2:
        raise MalformedPacket("request: option value not NUL-terminated")
    if len(option_fields) % 2:
        option_fields.pop()     # a dangling final name, like an unterminated one: no option
    return Request(opcode, filename, mode.decode("latin-1").lower(),
                   _decode_option_fields(option_fields, "request"))


def parse_packet(datagram: bytes) -> Packet:
    """Parse one datagram.  Raises only ``MalformedPacket``."""
    if len(datagram) < 4:
        # The shortest valid packets (ACK, DATA with no payload) are 4 bytes.
        raise MalformedPacket(f"datagram of {len(datagram)} bytes is too short")
    if datagram[0] != 0:
        raise MalformedPacket(f"unknown opcode {int.from_bytes(datagram[:2], 'big')}")
    opcode = datagram[1]
    if opcode == OP_ACK:
        # Trailing bytes are tolerated: some network stacks pad small frames.
        return Ack((datagram[2] << 8) | datagram[3])
    if opcode == OP_DATA:
        return Data((datagram[2] << 8) | datagram[3], bytes(datagram[4:]))
    if opcode == OP_RRQ or opcode == OP_WRQ:
        return _parse_request(opcode, bytes(datagram))
    if opcode == OP_ERROR:
        code = (datagram[2] << 8) | datagram[3]
        # Lenient: the message's NUL is often missing in the wild.
        message = bytes(datagram[4:]).split(b"\0", 1)[0]
        return Error(code, message.decode("utf-8", "replace"))
    if opcode == OP_OACK:
        return OptionAck(_decode_option_fields(_split_fields(bytes(datagram[2:]), "OACK"), "OACK"))
    raise MalformedPacket(f"unknown opcode {opcode}")


def ack_block(datagram: bytes) -> int:
    """The block number if ``datagram`` is an ACK, else -1 (the per-packet fast path)."""
    if len(datagram) >= 4 and datagram[1] == OP_ACK and datagram[0] == 0:
        return (datagram[2] << 8) | datagram[3]
    return -1


def _check_field(value: bytes, what: str) -> bytes:
    if b"\0" in value:
        raise ValueError(f"{what} contains NUL")
    return value


def _as_bytes(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode("utf-8")


def encode_request(filename: str | bytes, mode: str = "octet",
                   options: dict[str, object] | tuple[tuple[str, object], ...] = (),
                   *, write: bool = False) -> bytes:
    """RRQ (or WRQ) datagram; ``options`` may repeat names when given as pairs."""
    pairs = options.items() if isinstance(options, dict) else options
    parts = [b"\0\2" if write else b"\0\1",
             _check_field(_as_bytes(filename), "filename"), b"\0",
             _check_field(mode.encode("ascii"), "mode"), b"\0"]
    for name, value in pairs:
        parts += [_check_field(_as_bytes(str(name)), "option name"), b"\0",
                  _check_field(_as_bytes(str(value)), "option value"), b"\0"]
    return b"".join(parts)


def encode_data(block: int, payload: bytes | memoryview) -> bytes:
    """DATA for a block number; numbers past 65535 wrap to 0 (rollover)."""
    return ((OP_DATA << 16) | (block & 0xFFFF)).to_bytes(4, "big") + payload


def encode_ack(block: int) -> bytes:
    return ((OP_ACK << 16) | (block & 0xFFFF)).to_bytes(4, "big")


def encode_error(code: int, message: str) -> bytes:
    text = message.encode("utf-8", "replace").replace(b"\0", b" ")
    return ((OP_ERROR << 16) | (code & 0xFFFF)).to_bytes(4, "big") + text + b"\0"


def encode_oack(options: dict[str, object] | tuple[tuple[str, object], ...]) -> bytes:
    pairs = options.items() if isinstance(options, dict) else options
    parts = [b"\0\6"]
    for name, value in pairs:
        parts += [_check_field(str(name).encode("ascii"), "option name"), b"\0",
                  _check_field(str(value).encode("ascii"), "option value"), b"\0"]
    return b"".join(parts)

"""The DHCP codec: round trips, scapy as an independent encoder/decoder, malformed input."""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.dhcp import BOOTP, DHCP

from appliance.dhcp import packet as p

from .helpers import PI_MAC, mac_bytes, pi_discover


def _header(op: int = 1, hlen: int = 6, chaddr: bytes = mac_bytes(PI_MAC), sname: bytes = b"", file: bytes = b"") -> bytes:
    return struct.pack("!BBBBIHH4s4s4s4s16s64s128s", op, 1, hlen, 0, 7, 0, 0, bytes(4), bytes(4), bytes(4), bytes(4),
                       chaddr.ljust(16, b"\0"), sname.ljust(64, b"\0"), file.ljust(128, b"\0"))


def test_a_scapy_built_pi_discover_parses():
    raw = bytes(BOOTP(op=1, xid=0xCAFE, chaddr=mac_bytes(PI_MAC) + bytes(10), flags=0x8000) / DHCP(options=[
        ("message-type", "discover"),
        ("param_req_list", [1, 3, 43, 60, 66, 67]),
        ("vendor_class_id", b"PXEClient:Arch:00000:UNDI:002001"),
        (93, b"\x00\x00"),
        (97, b"\x00" + bytes(range(16))),
        "end",
    ]))
    pkt = p.parse_packet(raw)
    assert pkt.op == p.BOOTREQUEST and pkt.xid == 0xCAFE and pkt.broadcast
    assert pkt.mac == PI_MAC and pkt.message_type == p.DHCPDISCOVER
    assert pkt.option(p.OPT_VENDOR_CLASS).startswith(b"PXEClient")
    assert pkt.option(p.OPT_CLIENT_ARCH) == b"\x00\x00"
    assert pkt.option(p.OPT_CLIENT_UUID) == b"\x00" + bytes(range(16))
    assert pkt.option(p.OPT_PARAMETER_LIST) == bytes([1, 3, 43, 60, 66, 67])
    assert pkt.option(p.OPT_TFTP_SERVER) is None


def test_encoded_packets_decode_in_scapy():
    reply = p.DhcpPacket(op=p.BOOTREPLY, xid=0xDEADBEEF, chaddr=mac_bytes(PI_MAC), flags=0x8000,
                         siaddr="10.1.2.3", file=b"pc/boot.ipxe",
                         options=((p.OPT_MESSAGE_TYPE, bytes((p.DHCPOFFER,))), (p.OPT_SERVER_ID, bytes([10, 1, 2, 3])),
                                  (p.OPT_TFTP_SERVER, b"10.1.2.3"), (p.OPT_VENDOR_CLASS, b"PXEClient")))
    raw = p.encode_packet(reply)
    assert len(raw) >= 300
    s = BOOTP(raw)
    assert s.op == 2 and s.xid == 0xDEADBEEF and s.siaddr == "10.1.2.3" and s.yiaddr == "0.0.0.0"
    assert s.chaddr[:6] == mac_bytes(PI_MAC) and s.file.rstrip(b"\0") == b"pc/boot.ipxe"
    opts = {o[0]: o[1] for o in s[DHCP].options if isinstance(o, tuple)}
    assert opts["message-type"] == 2 and opts["server_id"] == "10.1.2.3"
    assert opts["tftp_server_name"] == b"10.1.2.3" and opts["vendor_class_id"] == b"PXEClient"


def test_round_trip_keeps_every_field():
    pkt = pi_discover(ciaddr="10.0.0.9", giaddr="10.0.0.254", secs=3, flags=0x8000, hops=1)
    again = p.parse_packet(p.encode_packet(pkt))
    assert again == pkt


def test_long_options_are_split_and_concatenated():
    pkt = p.DhcpPacket(op=1, xid=1, chaddr=b"\1" * 6, options=((43, bytes(range(256)) * 2), (60, b"x")))
    raw = p.encode_packet(pkt)
    assert p.parse_packet(raw).option(43) == bytes(range(256)) * 2
    # repeated instances in the wire format are joined (RFC 3396)
    assert p.parse_packet(_header() + p.MAGIC_COOKIE + b"\x0c\x02ab\x0c\x01c\xff").option(12) == b"abc"


def test_option_overload_reads_file_and_sname():
    raw = _header(file=b"\x0c\x03abc\xff", sname=b"\x0f\x02dn\xff") + p.MAGIC_COOKIE + b"\x34\x01\x03\x35\x01\x01\xff"
    pkt = p.parse_packet(raw)
    assert pkt.option(12) == b"abc" and pkt.option(15) == b"dn" and pkt.message_type == 1
    assert pkt.file == b"" and pkt.sname == b""


def test_plain_bootp_has_no_options():
    pkt = p.parse_packet(_header() + bytes(64))
    assert not pkt.has_cookie and pkt.options == () and pkt.message_type is None


def test_pad_and_missing_end_are_tolerated():
    pkt = p.parse_packet(_header() + p.MAGIC_COOKIE + b"\x00\x00\x35\x01\x03")
    assert pkt.message_type == p.DHCPREQUEST


@pytest.mark.parametrize("raw, what", [
    (b"", "shorter"),
    (_header()[:200], "shorter"),
    (_header(op=3), "op 3"),
    (_header(hlen=17), "hardware address length"),
    (_header() + p.MAGIC_COOKIE + b"\x35", "no length byte"),
    (_header() + p.MAGIC_COOKIE + b"\x35\x05\x01", "claims 5 bytes"),
    (_header() + p.MAGIC_COOKIE + b"\x34\x01\x07\xff", "overload"),
    (_header(file=bytes(126) + b"\x0c\x09") + p.MAGIC_COOKIE + b"\x34\x01\x01\xff", "in file"),
], ids=["empty", "short", "op", "hlen", "no-length", "truncated", "bad-overload", "truncated-in-file"])
def test_malformed_datagrams_raise_malformed_packet(raw, what):
    with pytest.raises(p.MalformedPacket, match=what):
        p.parse_packet(raw)


def test_suboptions_round_trip_and_errors():
    items = ((6, b"\x03"), (10, b"\x00PXE"))
    raw = p.encode_suboptions(items)
    assert raw.endswith(b"\xff") and p.parse_suboptions(raw) == items
    with pytest.raises(p.MalformedPacket):
        p.parse_suboptions(b"\x06\x05\x01")


def test_encode_refuses_what_cannot_be_encoded():
    with pytest.raises(ValueError):
        p.encode_packet(p.DhcpPacket(op=2, xid=1, file=b"x" * 128))
    with pytest.raises(ValueError):
        p.encode_packet(p.DhcpPacket(op=2, xid=1, options=((255, b""),)))


# -- fuzz ----------------------------------------------------------------------------

_options = st.lists(
    st.tuples(st.integers(1, 254).filter(lambda c: c != p.OPT_OVERLOAD), st.binary(max_size=600)),
    max_size=8, unique_by=lambda o: o[0],
)
_ip = st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: ".".join(map(str, t)))


@given(op=st.sampled_from([1, 2]), xid=st.integers(0, 2**32 - 1), chaddr=st.binary(max_size=16),
       secs=st.integers(0, 65535), flags=st.integers(0, 65535), ciaddr=_ip, yiaddr=_ip, siaddr=_ip, giaddr=_ip,
       sname=st.binary(max_size=63).map(lambda b: b.replace(b"\0", b"")),
       file=st.binary(max_size=127).map(lambda b: b.replace(b"\0", b"")), options=_options)
def test_round_trip_property(op, xid, chaddr, secs, flags, ciaddr, yiaddr, siaddr, giaddr, sname, file, options):
    pkt = p.DhcpPacket(op=op, xid=xid, chaddr=chaddr, hlen=len(chaddr), secs=secs, flags=flags, ciaddr=ciaddr,
                       yiaddr=yiaddr, siaddr=siaddr, giaddr=giaddr, sname=sname, file=file, options=tuple(options))
    assert p.parse_packet(p.encode_packet(pkt)) == pkt


@settings(max_examples=500)
@given(st.binary(max_size=700))
def test_arbitrary_bytes_raise_only_malformed_packet(data):
    try:
        p.parse_packet(data)
    except p.MalformedPacket:
        pass


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(op=st.integers(0, 255), hlen=st.integers(0, 255), sname=st.binary(max_size=64), file=st.binary(max_size=128),
       tail=st.binary(max_size=400))
def test_a_valid_header_with_any_options_area_raises_only_malformed_packet(op, hlen, sname, file, tail):
    try:
        p.parse_packet(_header(op=op, hlen=hlen, sname=sname, file=file) + p.MAGIC_COOKIE + tail)
    except p.MalformedPacket:
        pass


@given(st.binary(max_size=300))
def test_suboption_parser_raises_only_malformed_packet(data):
    try:
        p.parse_suboptions(data)
    except p.MalformedPacket:
        pass

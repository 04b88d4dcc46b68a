"""The datagram codec: round trips, rejects, and 'only MalformedPacket' under fuzzing."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from appliance.tftp.packets import (
    Ack, Data, Error, MalformedPacket, OptionAck, Request, encode_ack, encode_data,
    encode_error, encode_oack, encode_request, parse_packet,
)


def test_rrq_with_options_round_trips():
    datagram = encode_request("boot/kernel8.img", "octet", {"blksize": 1468, "tsize": 0})
    assert datagram == b"\0\1boot/kernel8.img\0octet\0blksize\x001468\0tsize\x000\0"
    assert parse_packet(datagram) == Request(1, b"boot/kernel8.img", "octet",
                                             (("blksize", "1468"), ("tsize", "0")))


def test_option_names_and_mode_are_case_insensitive():
    packet = parse_packet(b"\0\1f\0OcTeT\0BLKSIZE\x00512\0")
    assert packet.mode == "octet"
    assert packet.options == (("blksize", "512"),)


def test_wrq_is_a_write_request():
    assert parse_packet(encode_request("f", write=True)).is_write


def test_duplicate_options_are_kept_for_negotiation_to_judge():
    packet = parse_packet(b"\0\1f\0octet\0blksize\x00512\0blksize\x001024\0")
    assert packet.options == (("blksize", "512"), ("blksize", "1024"))


def test_non_utf8_filename_stays_bytes():
    assert parse_packet(b"\0\1\xff\xfe\0octet\0").filename == b"\xff\xfe"


@pytest.mark.parametrize("datagram, options", [
    (b"\0\1f\0octet\0\0", ()),                             # NUL padding after the mode
    (b"\0\1f\0octet\0\0\0\0\0", ()),
    (b"\0\1f\0octet\0blksize\x00512\0\0\0", (("blksize", "512"),)),   # padding after options
    (b"\0\1f\0octet\0blksize\0", ()),                      # a dangling final option name
    (b"\0\1f\0octet\0blksize", ()),                        # ... not NUL-terminated
    (b"\0\1f\0octet\0tsize\x000\0blksize\0", (("tsize", "0"),)),
    (b"\0\1f\0octet\0blksize\0\0", ()),                   # ... padded
    (b"\0\1f\0octet\0\x00512\0", ()),                      # reading stops at the empty field
    (b"\0\1f\0octet\0\0\xffjunk", ()),                     # whatever follows it is not read
])
def test_requests_are_read_up_to_the_first_empty_field(datagram, options):
    """As tftpd-hpa and dnsmasq do: some PXE ROMs pad requests with NULs."""
    assert parse_packet(datagram) == Request(1, b"f", "octet", options)


@pytest.mark.parametrize("datagram", [
    b"", b"\0", b"\0\4", b"\0\4\0",                 # short
    b"\0\1", b"\0\1f", b"\0\1f\0", b"\0\1f\0octet",  # truncated requests
    b"\0\1\0octet\0",                               # empty filename
    b"\0\1f\0\0",                                   # empty mode
    b"\0\1f\0\0octet\0",                            # empty mode, then a stray field
    b"\0\1\0\0",                                     # padding only: empty filename
    b"\0\1f\0octet\0blksize\x00512",                # value without NUL
    b"\0\7\0\0", b"\0\0\0\0", b"\1\1f\0octet\0", b"\xff\xff\xff\xff",   # bad opcodes
    b"\0\6blksize\0",                               # OACK option without value
])
def test_malformed_datagrams_raise_malformed_packet(datagram):
    with pytest.raises(MalformedPacket):
        parse_packet(datagram)


def test_data_ack_error_oack_round_trip():
    assert parse_packet(encode_data(7, b"abc")) == Data(7, b"abc")
    assert parse_packet(encode_ack(65535)) == Ack(65535)
    assert parse_packet(encode_error(1, "File not found")) == Error(1, "File not found")
    assert parse_packet(encode_oack({"tsize": 10})) == OptionAck((("tsize", "10"),))


def test_block_numbers_wrap_at_65536():
    assert encode_data(65536, b"")[:4] == b"\0\3\0\0"
    assert encode_data(65537, b"")[:4] == b"\0\3\0\1"
    assert encode_ack(65536) == b"\0\4\0\0"


def test_padded_ack_and_error_without_nul_are_accepted():
    assert parse_packet(b"\0\4\0\5" + bytes(56)) == Ack(5)
    assert parse_packet(b"\0\5\0\0Early terminate") == Error(0, "Early terminate")


def test_error_message_with_nul_is_not_cut_into_fields():
    assert encode_error(0, "a\0b") == b"\0\5\0\0a b\0"


@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=600))
def test_parser_raises_only_malformed_packet(datagram):
    try:
        parse_packet(datagram)
    except MalformedPacket:
        pass


@settings(max_examples=1000, deadline=None)
@given(st.sampled_from([b"\0\1", b"\0\2", b"\0\3", b"\0\4", b"\0\5", b"\0\6"]),
       st.lists(st.sampled_from([b"\0", b"octet", b"netascii", b"blksize", b"512", b"\xff", b"tsize", b"x"]),
                max_size=12))
def test_parser_on_structured_garbage(opcode, pieces):
    try:
        parse_packet(opcode + b"".join(pieces))
    except MalformedPacket:
        pass


@given(st.binary(min_size=1, max_size=100).filter(lambda b: b"\0" not in b),
       st.lists(st.tuples(st.text("abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=10),
                          st.integers(0, 10**6)), max_size=5))
def test_request_round_trip(filename, options):
    packet = parse_packet(encode_request(filename, "octet", tuple(options)))
    assert packet.filename == filename
    assert packet.options == tuple((n, str(v)) for n, v in options)

"""The rtnetlink codec on bytes laid out as in ``<linux/netlink.h>`` / ``<linux/rtnetlink.h>`` (little-endian host),
and how the socket layer reads answers (the kernel itself: test_rtnetlink_kernel.py)."""

from __future__ import annotations

import socket
import struct

import pytest

from appliance.control.rtnetlink import (NLM_F_MULTI, NLMSG_DONE, NLMSG_ERROR, RTM_NEWNEIGH, RTM_NEWROUTE,
                                         RTN_LOCAL, RTN_UNICAST, MalformedMessage, Neighbour, NetlinkError,
                                         NetlinkSocket, Route, decode_neighbour, decode_route, error_of,
                                         neighbour_dump_request, route_get_request, split_messages)

pytestmark = pytest.mark.skipif(struct.pack("=H", 1) != b"\x01\x00", reason="byte layouts written little-endian")


def nlmsg(kind: int, flags: int, seq: int, body: bytes) -> bytes:
    data = struct.pack("<IHHII", 16 + len(body), kind, flags, seq, 4242) + body
    return data + b"\0" * (-len(data) % 4)


def rta(kind: int, value: bytes) -> bytes:
    data = struct.pack("<HH", 4 + len(value), kind) + value
    return data + b"\0" * (-len(data) % 4)


def test_route_request_for_an_ipv4_destination():
    # nlmsghdr: len 36, RTM_GETROUTE, NLM_F_REQUEST, seq 7, port 0; rtmsg: AF_INET, /32; RTA_DST 10.1.2.3
    assert route_get_request(7, "10.1.2.3") == bytes.fromhex(
        "24000000" "1a00" "0100" "07000000" "00000000"
        "02" "20" "00" "00" "00" "00" "00" "00" "00000000"
        "0800" "0100" "0a010203")


def test_route_request_for_an_ipv6_destination():
    assert route_get_request(1, "fd00::5") == bytes.fromhex(
        "30000000" "1a00" "0100" "01000000" "00000000"
        "0a" "80" "000000000000" "00000000"
        "1400" "0100" "fd000000000000000000000000000005")


def test_neighbour_dump_request():
    # NLM_F_REQUEST | NLM_F_DUMP; ndmsg: AF_INET6, everything else zero (no filter)
    assert neighbour_dump_request(2, socket.AF_INET6) == bytes.fromhex(
        "1c000000" "1e00" "0103" "02000000" "00000000" "0a000000" "00000000" "00000000")


def test_route_through_a_gateway():
    rtmsg = bytes([socket.AF_INET, 0, 0, 0, 254, 3, 0, RTN_UNICAST]) + b"\0" * 4
    body = rtmsg + rta(1, bytes([8, 8, 8, 8])) + rta(4, struct.pack("<I", 3)) + rta(5, bytes([192, 0, 2, 1]))
    (message,) = split_messages(nlmsg(RTM_NEWROUTE, 0, 9, body))
    assert (message.type, message.seq) == (RTM_NEWROUTE, 9)
    assert decode_route(message.payload) == Route(socket.AF_INET, RTN_UNICAST, "192.0.2.1", 3)


def test_on_link_and_local_routes_have_no_gateway():
    on_link = bytes([socket.AF_INET6, 128, 0, 0, 254, 0, 0, RTN_UNICAST]) + b"\0" * 4 + rta(4, struct.pack("<I", 2))
    assert decode_route(on_link) == Route(socket.AF_INET6, RTN_UNICAST, None, 2)
    local = bytes([socket.AF_INET, 32, 0, 0, 255, 0, 254, RTN_LOCAL]) + b"\0" * 4
    assert decode_route(local).type == RTN_LOCAL and decode_route(local).gateway is None


def test_route_via_an_ipv6_gateway_counts_as_routed():
    via = struct.pack("<H", socket.AF_INET6) + socket.inet_pton(socket.AF_INET6, "fe80::1")
    body = bytes([socket.AF_INET, 32, 0, 0, 254, 0, 0, RTN_UNICAST]) + b"\0" * 4 + rta(18, via)
    assert decode_route(body).gateway == "fe80::1"


def test_neighbour_dump_spanning_messages_then_done():
    def ndmsg(family, ifindex, state, dst, lladdr):
        return (struct.pack("<BxxxiHBB", family, ifindex, state, 0, 1)
                + rta(1, socket.inet_pton(family, dst)) + (rta(2, lladdr) if lladdr is not None else b""))

    datagram = (nlmsg(RTM_NEWNEIGH, NLM_F_MULTI, 5, ndmsg(socket.AF_INET, 4, 0x02, "10.0.0.7",
                                                         bytes.fromhex("525400abcdef")))
                + nlmsg(RTM_NEWNEIGH, NLM_F_MULTI, 5, ndmsg(socket.AF_INET, 4, 0x20, "10.0.0.8", None))
                + nlmsg(NLMSG_DONE, NLM_F_MULTI, 5, struct.pack("<i", 0)))
    messages = list(split_messages(datagram))
    assert [m.type for m in messages] == [RTM_NEWNEIGH, RTM_NEWNEIGH, NLMSG_DONE]
    assert decode_neighbour(messages[0].payload) == Neighbour(socket.AF_INET, 4, 0x02, "10.0.0.7",
                                                              "52:54:00:ab:cd:ef")
    assert decode_neighbour(messages[1].payload) == Neighbour(socket.AF_INET, 4, 0x20, "10.0.0.8", None)


def test_error_message_carries_errno():
    request_header = struct.pack("<IHHII", 36, 26, 1, 3, 0)
    (message,) = split_messages(nlmsg(NLMSG_ERROR, 0, 3, struct.pack("<i", -101) + request_header))
    assert error_of(message) == 101           # ENETUNREACH
    (ack,) = split_messages(nlmsg(NLMSG_ERROR, 0, 3, struct.pack("<i", 0) + request_header))
    assert error_of(ack) == 0


@pytest.mark.parametrize("data", [
    struct.pack("<IHHII", 8, RTM_NEWROUTE, 0, 1, 0),                # length shorter than the header
    struct.pack("<IHHII", 64, RTM_NEWROUTE, 0, 1, 0) + b"\0" * 12,  # length past the datagram
])
def test_malformed_message_lengths_are_refused(data):
    with pytest.raises(MalformedMessage):
        list(split_messages(data))


def test_malformed_bodies_are_refused():
    with pytest.raises(MalformedMessage):
        decode_route(b"\x02\x20")
    with pytest.raises(MalformedMessage):
        decode_neighbour(b"\x02")
    bad_attribute = bytes([socket.AF_INET, 32, 0, 0, 254, 0, 0, RTN_UNICAST]) + b"\0" * 4 + struct.pack("<HH", 40, 5)
    with pytest.raises(MalformedMessage):
        decode_route(bad_attribute)
    with pytest.raises(MalformedMessage):
        error_of(next(split_messages(nlmsg(NLMSG_ERROR, 0, 1, b"\0\0"))))


def test_addresses_of_the_wrong_length_are_not_invented():
    body = bytes([socket.AF_INET, 32, 0, 0, 254, 0, 0, RTN_UNICAST]) + b"\0" * 4 + rta(5, b"\x01\x02")
    assert decode_route(body).gateway is None


# -- the socket layer's reading of answers (a datagram socket pair stands in for the kernel's side) --


@pytest.fixture
def kernel_side():
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    nl = NetlinkSocket.__new__(NetlinkSocket)
    nl._sock, nl._seq = ours, 0
    ours.settimeout(0.5)
    yield nl, theirs
    ours.close()
    theirs.close()


def route_answer(seq: int, gateway: bytes | None) -> bytes:
    body = bytes([socket.AF_INET, 32, 0, 0, 254, 0, 0, RTN_UNICAST]) + b"\0" * 4 + rta(4, struct.pack("<I", 2))
    return nlmsg(RTM_NEWROUTE, 0, seq, body + (rta(5, gateway) if gateway else b""))


def test_a_late_answer_to_an_earlier_request_is_skipped(kernel_side):
    nl, kernel = kernel_side
    kernel.send(route_answer(7, bytes([192, 0, 2, 1])))        # seq 7: a request that timed out long ago
    kernel.send(route_answer(1, None))
    assert nl.route_to("10.0.0.5") == [Route(socket.AF_INET, RTN_UNICAST, None, 2)]
    assert kernel.recv(100) == route_get_request(1, "10.0.0.5")


def test_a_dump_is_read_until_done_across_datagrams(kernel_side):
    nl, kernel = kernel_side
    entry = struct.pack("<BxxxiHBB", socket.AF_INET, 3, 0x02, 0, 1) + rta(1, bytes([10, 0, 0, 7])) \
        + rta(2, bytes.fromhex("525400abcdef"))
    kernel.send(nlmsg(RTM_NEWNEIGH, NLM_F_MULTI, 1, entry))
    kernel.send(nlmsg(RTM_NEWNEIGH, NLM_F_MULTI, 1, entry))
    kernel.send(nlmsg(NLMSG_DONE, NLM_F_MULTI, 1, struct.pack("<i", 0)))
    assert [n.lladdr for n in nl.neighbours(socket.AF_INET)] == ["52:54:00:ab:cd:ef"] * 2


def test_a_refused_request_raises_its_errno_and_silence_times_out(kernel_side):
    nl, kernel = kernel_side
    kernel.send(nlmsg(NLMSG_ERROR, 0, 1, struct.pack("<i", -101) + b"\0" * 16))
    with pytest.raises(NetlinkError) as refused:
        nl.route_to("192.0.2.9")
    assert refused.value.errno == 101
    with pytest.raises(TimeoutError):
        nl.route_to("192.0.2.9")

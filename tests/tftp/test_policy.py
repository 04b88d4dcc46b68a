"""Pure policies: path cleaning and option negotiation."""

from __future__ import annotations

import pytest

from appliance.content import AccessDenied, FileNotFound, clean_path
from appliance.tftp import OptionRefused, negotiate
from appliance.tftp.options import blksize_for_mtu


@pytest.mark.parametrize("raw, cleaned", [
    (b"kernel8.img", "kernel8.img"),
    (b"/kernel8.img", "kernel8.img"),
    (b"//a//b", "a/b"),
    (b"./a/./b/", "a/b"),
    (b"dc-a6-32-01-02-03/start4.elf", "dc-a6-32-01-02-03/start4.elf"),
    ("ünïcode".encode(), "ünïcode"),
    (b"a.." , "a.."),                     # only a whole '..' component is refused
])
def test_clean_path_accepts(raw, cleaned):
    assert clean_path(raw) == cleaned


@pytest.mark.parametrize("raw", [
    b"../etc/passwd", b"a/../../b", b"/..", b"a/..", b"..",
    b"a\\b", b"..\\..\\windows", b"a\0b", b"\xff\xfe", b"x" * 256,
])
def test_clean_path_refuses_with_access_denied(raw):
    with pytest.raises(AccessDenied):
        clean_path(raw)


@pytest.mark.parametrize("raw", [b"/", b".", b"//./"])
def test_clean_path_of_nothing_is_not_found(raw):
    with pytest.raises(FileNotFound):
        clean_path(raw)


def test_filename_cap_is_configurable():
    assert clean_path(b"x" * 255) == "x" * 255
    with pytest.raises(AccessDenied):
        clean_path(b"x" * 11, max_bytes=10)


def test_no_options_means_no_oack():
    result = negotiate((), size=100)
    assert (result.blksize, result.windowsize, result.timeout, result.oack) == (512, 1, None, ())


def test_known_options_are_acknowledged_in_request_order():
    result = negotiate((("tsize", "0"), ("blksize", "1024"), ("timeout", "5"), ("windowsize", "8")),
                       size=4096)
    assert result.oack == (("tsize", "4096"), ("blksize", "1024"), ("timeout", "5"), ("windowsize", "8"))
    assert (result.blksize, result.windowsize, result.timeout) == (1024, 8, 5.0)


@pytest.mark.parametrize("options", [
    (("blksize", "abc"),), (("blksize", "7"),), (("blksize", "-1"),), (("blksize", ""),),
    (("windowsize", "0"),), (("timeout", "0"),), (("timeout", "256"),), (("tsize", "x"),),
    (("blksize", "１２"),),                 # non-ASCII digits
    (("multicast", "1"),), (("unknown", "x"),),
])
def test_invalid_or_unknown_options_are_ignored(options):
    result = negotiate(options, size=10)
    assert result.oack == ()
    assert (result.blksize, result.windowsize) == (512, 1)


def test_large_values_are_clamped():
    result = negotiate((("blksize", "65464"), ("windowsize", "1000")), size=1, max_blksize=1468,
                       max_windowsize=32)
    assert result.oack == (("blksize", "1468"), ("windowsize", "32"))
    assert negotiate((("blksize", "99999999"),), size=1, max_blksize=65464).blksize == 65464


@pytest.mark.parametrize("digits", [13, 20, 400])
def test_values_with_many_digits_are_clamped_like_any_large_value(digits):
    # RFC 2348: the server answers a blksize it cannot use with a smaller one;
    # a value with many digits is just a large value (tftpd-hpa clamps it too).
    huge = "9" * digits
    result = negotiate((("blksize", huge), ("windowsize", huge), ("timeout", huge)), size=1,
                       max_blksize=1468, max_windowsize=32)
    assert result.oack == (("blksize", "1468"), ("windowsize", "32"))
    assert (result.blksize, result.windowsize, result.timeout) == (1468, 32, None)


def test_duplicate_known_options_are_refused():
    with pytest.raises(OptionRefused):
        negotiate((("blksize", "512"), ("BLKSIZE".lower(), "1024")), size=1)


def test_duplicate_unknown_options_are_ignored():
    assert negotiate((("x", "1"), ("x", "2")), size=1).oack == ()


def test_too_many_options_are_refused():
    with pytest.raises(OptionRefused):
        negotiate(tuple((f"o{i}", "1") for i in range(17)), size=1)


def test_tsize_unknown_size_is_left_out():
    assert negotiate((("tsize", "0"), ("blksize", "1024")), size=None).oack == (("blksize", "1024"),)


@pytest.mark.parametrize("mtu, ipv6, blksize", [
    (1500, False, 1468), (1500, True, 1448), (1280, True, 1228), (9000, False, 8968),
    (65536, False, 65464),            # loopback: RFC 2348's maximum
    (20, False, 8),                   # nonsense MTU: still a valid blksize
])
def test_blksize_for_mtu_leaves_room_for_ip_udp_and_tftp_headers(mtu, ipv6, blksize):
    assert blksize_for_mtu(mtu, ipv6=ipv6) == blksize

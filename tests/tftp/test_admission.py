"""``admit``: the pure decision whether a request becomes a transfer."""

from __future__ import annotations

import pytest

from appliance.content import AccessDenied, FileNotFound, RequestRefused
from appliance.tftp.admission import Refuse, Start, admit, refusal
from appliance.tftp.packets import ERR_ACCESS, ERR_ILLEGAL_OP, ERR_NOT_FOUND, ERR_UNDEFINED, parse_packet


def rrq(name: bytes, mode: bytes = b"octet", opcode: int = 1) -> object:
    return parse_packet(opcode.to_bytes(2, "big") + name + b"\0" + mode + b"\0")


def test_a_read_request_starts_with_the_cleaned_path():
    assert admit(rrq(b"/dc-a6-32-01-02-03/config.txt")) == Start("dc-a6-32-01-02-03/config.txt")
    assert admit(rrq(b"boot.ipxe", b"NETASCII")) == Start("boot.ipxe")


def test_a_write_request_is_refused_and_recorded():
    assert admit(rrq(b"x", opcode=2)) == Refuse(ERR_ACCESS, "Read-only server", "x", "denied")


def test_an_unknown_mode_is_refused_without_a_record():
    decision = admit(rrq(b"x", b"mail"))
    assert isinstance(decision, Refuse) and decision.code == ERR_ILLEGAL_OP and decision.outcome is None


@pytest.mark.parametrize("name", [b"../etc/passwd", b"a/../../b", b"x" * 5000])
def test_paths_that_leave_the_tree_or_are_too_long_never_start(name):
    decision = admit(rrq(name), max_filename_bytes=1024)
    assert isinstance(decision, Refuse)
    assert (decision.code, decision.outcome) == (ERR_ACCESS, "denied")


def test_refusals_map_to_tftp_errors():
    assert refusal(FileNotFound("gone"), "p") == Refuse(ERR_NOT_FOUND, "File not found", "p", "not-found")
    assert refusal(AccessDenied("no"), "p") == Refuse(ERR_ACCESS, "Access violation", "p", "denied")
    assert refusal(RequestRefused("odd"), "p") == Refuse(ERR_UNDEFINED, "odd", "p", "error: odd")

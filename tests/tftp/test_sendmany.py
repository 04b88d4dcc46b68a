"""Windows sent with one sendmmsg(2) and the per-datagram fallback: same bytes, same order.

Unit level: a real UDP receiver on loopback (IPv4 and IPv6) gets exactly the
datagrams given, in order, through both paths, also when the kernel refuses
one of them.  End to end: the atftp client with windowsize 16 downloads a
file byte-identical with sendmmsg in use (counted) and with it unavailable.
"""

from __future__ import annotations

import os
import socket
import subprocess

import pytest

from helpers import eventually

from appliance.tftp import sendmany
from appliance.tftp.sendmany import BatchSender

from .helpers import require_binary, serving

needs_sendmmsg = pytest.mark.skipif(not sendmany.sendmmsg_available(), reason="no sendmmsg in libc")


def _pair(family: int, host: str) -> tuple[socket.socket, socket.socket]:
    receiver = socket.socket(family, socket.SOCK_DGRAM)
    receiver.bind((host, 0))
    receiver.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    receiver.settimeout(2.0)
    sender = socket.socket(family, socket.SOCK_DGRAM)
    sender.bind((host, 0))
    sender.setblocking(False)
    return sender, receiver


def _receive(receiver: socket.socket, count: int) -> list[bytes]:
    return [receiver.recv(70000) for _ in range(count)]


@pytest.fixture
def counted_sendmmsg(monkeypatch):
    """The real sendmmsg, counting its calls."""
    calls = []
    real = sendmany._sendmmsg

    def counting(*args):
        calls.append(args[2])
        return real(*args)

    monkeypatch.setattr(sendmany, "_sendmmsg", counting)
    return calls


@needs_sendmmsg
@pytest.mark.parametrize("family, host", [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")])
def test_window_in_one_call_arrives_in_order(family, host, counted_sendmmsg):
    sender, receiver = _pair(family, host)
    with sender, receiver:
        batch = BatchSender(sender, receiver.getsockname(), 16)
        assert batch.batched
        datagrams = [os.urandom(4) + bytes([i]) * (100 + i) for i in range(40)]
        batch.send(datagrams)
        assert _receive(receiver, 40) == datagrams
    assert counted_sendmmsg == [16, 16, 8]        # 40 datagrams, at most 16 per system call


@pytest.mark.parametrize("use_sendmmsg", [True, False], ids=["sendmmsg", "fallback"])
def test_refused_datagram_is_dropped_and_the_rest_sent(use_sendmmsg):
    """A datagram the kernel refuses (too long for UDP) is lost like any datagram, not the window."""
    if use_sendmmsg and not sendmany.sendmmsg_available():
        pytest.skip("no sendmmsg in libc")
    sender, receiver = _pair(socket.AF_INET, "127.0.0.1")
    with sender, receiver:
        batch = BatchSender(sender, receiver.getsockname(), 8, use_sendmmsg=use_sendmmsg)
        assert batch.batched is use_sendmmsg
        good = [bytes([i]) * 50 for i in range(6)]
        batch.send(good[:2] + [b"x" * 70000] + good[2:])
        assert _receive(receiver, 6) == good
        receiver.settimeout(0.2)
        with pytest.raises(TimeoutError):
            receiver.recv(70000)


def test_buffers_other_than_bytes_and_single_datagrams_use_sendto(counted_sendmmsg):
    sender, receiver = _pair(socket.AF_INET, "127.0.0.1")
    with sender, receiver:
        batch = BatchSender(sender, receiver.getsockname(), 4)
        batch.send([b"one"])
        batch.send([bytearray(b"two"), memoryview(b"three")])
        assert _receive(receiver, 3) == [b"one", b"two", b"three"]
    assert counted_sendmmsg == []


def test_windowsize_one_never_batches():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        assert not BatchSender(sock, ("127.0.0.1", 9), 1).batched


@pytest.mark.parametrize("path", ["sendmmsg", "fallback"])
def test_atftp_windowsize_16_byte_identical(tmp_path, monkeypatch, path, counted_sendmmsg):
    """The in-process loop (so the patched module is the one that sends)."""
    atftp = require_binary("atftp")
    if path == "sendmmsg" and not sendmany.sendmmsg_available():
        pytest.skip("no sendmmsg in libc")
    if path == "fallback":
        monkeypatch.setattr(sendmany, "_sendmmsg", None)
    data = os.urandom(1_000_000 + 77)
    (tmp_path / "src").write_bytes(data)
    with serving({"kernel.img": str(tmp_path / "src")}, workers=0) as served:
        result = subprocess.run([atftp, "--option", "blksize 1468", "--option", "windowsize 16", "-g",
                                 "-r", "kernel.img", "-l", "out", "127.0.0.1", str(served.port)],
                                cwd=tmp_path, capture_output=True, timeout=60)
        assert result.returncode == 0, result.stderr[-2000:]
        records, _ = eventually(lambda: served.records, what="the transfer's record")
    assert (tmp_path / "out").read_bytes() == data
    assert records[-1].outcome == "complete" and records[-1].windowsize == 16
    if path == "sendmmsg":
        # 682 DATA packets; every window but (at most) the first and a retransmitted one goes in one call
        assert len(counted_sendmmsg) > 20 and max(counted_sendmmsg) == 16
    else:
        assert counted_sendmmsg == []

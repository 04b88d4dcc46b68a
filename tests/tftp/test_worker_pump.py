"""A worker that pumps a single transfer waits for its ACKs in a blocking receive.

That must not cost anything a user relies on: a transfer handed to the
worker meanwhile starts at once, a lost ACK is still repaired by the
retransmission timer (and a duplicate ACK still sends nothing), a datagram
from another TID still gets "Unknown transfer ID", and the server still stops
promptly.  One worker, so the first transfer runs alone in it.
"""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from appliance.tftp.packets import Data, Error, encode_ack, encode_request

from helpers import eventually

from .helpers import RawPeer, require_binary, serving


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    data = os.urandom(24_000_000 + 11)
    path = tmp_path_factory.mktemp("pump") / "big.bin"
    path.write_bytes(data)
    return path, data


def test_a_second_transfer_starts_while_one_is_pumped(big, tmp_path):
    curl = require_binary("curl")
    path, data = big
    with serving({"big.bin": str(path), "small.bin": b"x" * 700}, workers=1) as s:
        out = tmp_path / "out"
        proc = subprocess.Popen([curl, "-sS", "--max-time", "60", "--tftp-blksize", "1024", "-o",
                                 str(out), f"tftp://127.0.0.1:{s.port}/big.bin"])
        try:
            # curl's first blocks have arrived: the worker pumps that transfer alone now
            eventually(lambda: out.exists() and out.stat().st_size > 0 or proc.poll() is not None,
                       what="curl's download to start")
            assert proc.poll() is None, "the download ended before the second request"
            with RawPeer() as peer:
                started = time.monotonic()
                peer.send(encode_request("small.bin"), ("127.0.0.1", s.port))
                packet, tid = peer.recv(timeout=10.0)
                waited = time.monotonic() - started
                assert packet == Data(1, b"x" * 512)
                # A loaded machine can delay one round trip by a second; a worker that let the
                # new transfer wait for the first one would take the whole download.
                assert waited < 2.0, f"the second transfer waited {waited:.3f} s for the first"
                assert proc.poll() is None, "the download ended before the second transfer started"
                peer.send(encode_ack(1), tid)
                packet, _ = peer.recv(timeout=10.0)
                assert packet == Data(2, b"x" * 188)
                peer.send(encode_ack(2), tid)
            assert proc.wait(60) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert out.read_bytes() == data
        # the small transfer ended while the download was still running
        assert [(r.path, r.outcome) for r in s.wait_records(2)] == [("small.bin", "complete"), ("big.bin", "complete")]


def test_timer_duplicate_ack_and_foreign_tid_while_pumped_alone(big):
    path, data = big
    # The retransmission timer waits at least 3 s (min_timeout, below the 5 s timeout): a resend
    # within 0.3 s of the duplicate ACK would be an answer to it, even if this test is descheduled
    # for a while between receiving DATA 2 and sending the duplicate.
    with serving({"big.bin": str(path)}, workers=1, timeout=5.0, min_timeout=3.0) as s, RawPeer() as peer, \
            RawPeer() as stranger:
        peer.send(encode_request("big.bin"), ("127.0.0.1", s.port))
        packet, tid = peer.recv()
        assert packet == Data(1, data[:512])
        peer.send(encode_ack(1), tid)
        packet, _ = peer.recv()
        assert packet == Data(2, data[512:1024])
        # A duplicate ACK never triggers a resend: only the timer does, later.
        peer.send(encode_ack(1), tid)
        assert peer.recv_nothing(0.3)
        packet, _ = peer.recv(timeout=8.0)
        assert packet == Data(2, data[512:1024])
        # Another TID is told so, and the transfer goes on.
        stranger.send(encode_ack(2), tid)
        packet, _ = stranger.recv()
        assert packet == Error(5, "Unknown transfer ID")
        peer.send(encode_ack(2), tid)
        while True:                                   # skip retransmissions of block 2 still in flight
            packet, _ = peer.recv()
            if packet.block != 2:
                break
        assert packet == Data(3, data[1024:1536])
        stopped = time.monotonic()
    assert time.monotonic() - stopped < 5.0
    assert s.records and s.records[-1].outcome.startswith("error")

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
        proc = subprocess.Popen([curl, "-sS", "--max-time", "60", "--tftp-blksize", "1024", "-o",
                                 str(tmp_path / "out"), f"tftp://127.0.0.1:{s.port}/big.bin"])
        try:
            time.sleep(0.3)                 # curl is pumped alone by the worker now
            assert proc.poll() is None, "the download ended before the second request"
            with RawPeer() as peer:
                started = time.monotonic()
                peer.send(encode_request("small.bin"), ("127.0.0.1", s.port))
                packet, tid = peer.recv(timeout=2.0)
                waited = time.monotonic() - started
                assert packet == Data(1, b"x" * 512)
                assert waited < 0.5, f"the second transfer waited {waited:.3f} s for the first"
                assert proc.poll() is None, "the download ended before the second transfer started"
                peer.send(encode_ack(1), tid)
                packet, _ = peer.recv()
                assert packet == Data(2, b"x" * 188)
                peer.send(encode_ack(2), tid)
            assert proc.wait(60) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert (tmp_path / "out").read_bytes() == data
        assert sorted(r.outcome for r in s.wait_records(2)) == ["complete", "complete"]


def test_timer_duplicate_ack_and_foreign_tid_while_pumped_alone(big):
    path, data = big
    # min_timeout 0.5 s: a resend within 0.3 s of the duplicate ACK would be an answer to it.
    with serving({"big.bin": str(path)}, workers=1, min_timeout=0.5) as s, RawPeer() as peer, \
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

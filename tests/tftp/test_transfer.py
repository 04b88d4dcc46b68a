"""The transfer state machine, driven without sockets or clocks."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from appliance.content import BytesContent
from appliance.tftp import Transfer
from appliance.tftp.packets import Data, Error, OptionAck, parse_packet
from appliance.tftp.transfer import netascii_size, to_netascii

CLIENT = ("127.0.0.1", 40000)


def make(data: bytes, **kw) -> Transfer:
    return Transfer(BytesContent(data, {"host": "pi"}), client=CLIENT, path="f", **kw)


def blocks(datagrams: list[bytes]) -> list[int]:
    out = []
    for d in datagrams:
        p = parse_packet(d)
        assert isinstance(p, Data), p
        out.append(p.block)
    return out


def run_lockstep(t: Transfer, now: float = 0.0) -> bytes:
    """A perfect client: ACK every DATA; returns the reassembled payload."""
    pending = t.start(now)
    got = []
    while pending:
        packet = parse_packet(pending[-1])
        if isinstance(packet, OptionAck):
            pending = t.on_ack(0, now)
            continue
        got.append(packet.payload)
        pending = t.on_ack(packet.block, now)
    return b"".join(got)


def test_lockstep_transfer_completes_with_record():
    data = bytes(range(256)) * 5
    t = make(data, blksize=512)
    assert run_lockstep(t) == data
    assert t.done and t.deadline is None
    r = t.record
    assert (r.outcome, r.bytes_sent, r.size, r.blksize, r.windowsize) == ("complete", len(data), len(data), 512, 1)
    assert r.meta == {"host": "pi"} and r.client == CLIENT and r.path == "f"


def test_size_multiple_of_blksize_ends_with_empty_block():
    t = make(b"x" * 1024, blksize=512)
    out = t.start(0)
    assert blocks(out) == [1]
    assert blocks(t.on_ack(1, 0)) == [2]
    last = t.on_ack(2, 0)
    assert parse_packet(last[0]) == Data(3, b"")
    assert t.on_ack(3, 0) == [] and t.record.outcome == "complete"


def test_empty_file_is_one_empty_block():
    t = make(b"")
    assert [parse_packet(p) for p in t.start(0)] == [Data(1, b"")]
    t.on_ack(1, 0)
    assert t.record.outcome == "complete"


def test_oack_first_then_data_after_ack_zero():
    t = make(b"abc", blksize=1024, oack=(("tsize", "3"), ("blksize", "1024")))
    assert parse_packet(t.start(0)[0]) == OptionAck((("tsize", "3"), ("blksize", "1024")))
    assert [parse_packet(p) for p in t.on_ack(0, 0)] == [Data(1, b"abc")]


def test_duplicate_ack_never_resends():
    t = make(b"x" * 2000, blksize=512)
    t.start(0)
    assert blocks(t.on_ack(1, 0)) == [2]
    assert t.on_ack(1, 0.1) == []          # duplicate ACK 1: nothing (Sorcerer's Apprentice)
    assert t.on_ack(1, 0.2) == []


def test_ack_for_block_never_sent_is_ignored():
    t = make(b"x" * 2000, blksize=512)
    t.start(0)
    assert t.on_ack(5, 0) == [] and t.on_ack(65535, 0) == []
    assert not t.done
    assert blocks(t.on_ack(1, 0)) == [2]


def test_timeout_resends_until_no_progress_for_give_up_after():
    t = make(b"x" * 2000, blksize=512, timeout=1.0, give_up_after=4.0)
    first = t.start(0)
    assert t.deadline == 1.0
    assert t.on_timeout(0.5) == []          # not yet due
    assert t.on_timeout(1.0) == first
    assert t.on_timeout(2.0) == first
    assert t.on_timeout(3.0) == first
    assert t.deadline == 4.0                # the give-up time, not a fourth resend
    assert t.on_timeout(4.0) == [] and t.done
    assert t.record.outcome == "timeout" and t.record.bytes_sent == 0
    assert t.record.duration == 4.0 and t.record.retransmissions == 3


def test_gives_up_on_time_not_on_a_retry_count():
    """Many retransmissions in a row (a long outage) do not end the transfer."""
    t = make(b"x" * 5000, blksize=512, adaptive=True, timeout=1.0, min_timeout=0.05, max_timeout=2.0)
    first = t.start(0.0)
    t.on_ack(1, 0.001)
    resends = 0
    now = t.deadline
    while now < 29.0:
        out = t.on_timeout(now)
        assert blocks(out) == [2]
        resends += 1
        now = t.deadline
    assert not t.done and resends > 15      # a 29 s outage: probed all along
    assert blocks(t.on_ack(2, now)) == [3]   # the link is back: progress, no give-up
    assert first and t.record is None


def test_default_give_up_is_thirty_seconds_without_progress():
    t = make(b"x" * 5000, blksize=512, adaptive=True, timeout=1.0)
    t.start(0.0)
    t.on_ack(1, 0.5)
    now = t.deadline
    while not t.done:
        t.on_timeout(now)
        now = t.deadline if t.deadline is not None else now
    assert t.record.outcome == "timeout" and t.record.duration == pytest.approx(30.5)


def test_backoff_doubles_up_to_max_timeout():
    t = make(b"x" * 5000, blksize=512, adaptive=True, timeout=1.0, min_timeout=0.05, max_timeout=2.0)
    t.start(0.0)
    t.on_ack(1, 0.001)                      # RTO falls to the 50 ms floor
    waits = []
    now = t.deadline
    for _ in range(8):
        t.on_timeout(now)
        waits.append(round(t.deadline - now, 3))
        now = t.deadline
    assert waits == [0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0, 2.0]


def test_progress_resets_the_give_up_clock():
    t = make(b"x" * 5000, blksize=512, timeout=1.0, give_up_after=2.0)
    t.start(0)
    t.on_timeout(1.0)
    t.on_ack(1, 1.5)
    assert blocks(t.on_timeout(2.5)) == [2]      # 1.0 s after the ACK: not given up
    assert t.deadline == 3.5                      # 2.0 s after the last progress
    assert t.on_timeout(3.5) == [] and t.done and t.record.duration == 3.5


def test_negotiated_timeout_allows_two_periods_before_giving_up():
    t = make(b"x" * 5000, blksize=512, timeout=20.0, give_up_after=30.0)
    t.start(0)
    assert t.on_timeout(20.0) != []
    assert t.on_timeout(40.0) == [] and t.done


def test_oack_is_resent_on_timeout():
    t = make(b"abc", oack=(("tsize", "3"),))
    first = t.start(0)
    assert t.on_timeout(1.0) == first


def test_rollover_past_65535_wraps_to_zero():
    data = b"r" * (70000 * 8 + 3)
    t = make(data, blksize=8)
    out = t.start(0)
    wire_blocks = []
    total = 0
    while out:
        p = parse_packet(out[0])
        wire_blocks.append(p.block)
        total += len(p.payload)
        out = t.on_ack(p.block, 0)
    assert t.record.outcome == "complete" and total == len(data)
    assert wire_blocks[65534:65538] == [65535, 0, 1, 2]
    assert len(wire_blocks) == 70001


def test_window_sends_n_blocks_and_slides_on_full_ack():
    t = make(b"w" * 512 * 20, blksize=512, windowsize=4)
    assert blocks(t.start(0)) == [1, 2, 3, 4]
    assert blocks(t.on_ack(4, 0)) == [5, 6, 7, 8]


def test_partial_window_ack_resends_from_next_block():
    t = make(b"w" * 512 * 20, blksize=512, windowsize=4)
    t.start(0)
    assert blocks(t.on_ack(2, 0)) == [3, 4, 5, 6]
    assert t.on_ack(2, 0) == []            # duplicate of the partial ACK
    assert blocks(t.on_timeout(1.0)) == [3, 4, 5, 6]


def test_window_never_passes_the_end_of_file():
    t = make(b"w" * 1300, blksize=512, windowsize=8)
    assert blocks(t.start(0)) == [1, 2, 3]
    assert t.on_ack(3, 0) == [] and t.record.outcome == "complete"


def test_client_error_after_oack_is_early_terminate():
    t = make(b"abc", oack=(("tsize", "3"), ("blksize", "1024")))
    t.start(0)
    t.on_error(0, "Early terminate", 0.01)
    assert t.done and t.record.outcome == "early-terminate"
    assert t.on_ack(0, 0.02) == [] and t.on_timeout(5) == []


def test_client_error_mid_transfer_is_an_error_outcome():
    t = make(b"x" * 2000, blksize=512)
    t.start(0)
    t.on_ack(1, 0)
    t.on_error(3, "disk full", 0)
    assert t.record.outcome == "error: client error 3: disk full"
    assert t.record.bytes_sent == 512


def test_abort_returns_error_packet_and_record():
    t = make(b"x" * 2000)
    t.start(0)
    out = t.abort("server stopping", 1.0, message="Server shutting down")
    assert parse_packet(out[0]) == Error(0, "Server shutting down")
    assert t.record.outcome == "error: server stopping"


class ShrinkingContent:
    size = 5000
    meta: dict = {}

    def read_at(self, offset: int, n: int) -> bytes:
        return b"x" * max(0, min(n, 1000 - offset))   # the file shrank to 1000 bytes

    def close(self) -> None:
        pass


class FailingContent(ShrinkingContent):
    def read_at(self, offset: int, n: int) -> bytes:
        raise OSError(5, "Input/output error")


def test_content_shorter_than_its_size_aborts_instead_of_ending_early():
    t = Transfer(ShrinkingContent(), client=CLIENT, path="f", blksize=512)
    sent = [parse_packet(p) for p in t.start(0)]
    for block in (1, 2):
        sent += [parse_packet(p) for p in t.on_ack(block, 0)]
    assert isinstance(sent[-1], Error)
    assert all(len(p.payload) == 512 for p in sent if isinstance(p, Data))   # never a short block
    assert t.record.outcome.startswith("error: content read failed")


def test_failing_content_aborts_the_transfer_only():
    t = Transfer(FailingContent(), client=CLIENT, path="f")
    out = t.start(0)
    assert isinstance(parse_packet(out[0]), Error) and t.done


def test_netascii_conversion_and_size():
    text = b"a\nb\r\nc\rd"
    assert to_netascii(text) == b"a\r\nb\r\0\r\nc\r\0d"
    assert netascii_size(BytesContent(text)) == len(to_netascii(text))


def test_netascii_transfer_converts_across_block_boundaries():
    text = (b"line\n" * 300) + b"\r" * 50
    t = make(text, blksize=512, netascii=True)
    assert run_lockstep(t) == to_netascii(text)
    assert t.record.outcome == "complete"


# -- properties ------------------------------------------------------------------

events = st.lists(st.one_of(
    st.tuples(st.just("ack"), st.integers(0, 70)),
    st.tuples(st.just("ack_last"), st.just(0)),       # ACK the highest block sent so far
    st.tuples(st.just("dup"), st.just(0)),            # repeat the previous ACK
    st.tuples(st.just("timeout"), st.just(0)),
), max_size=200)


@settings(max_examples=400, deadline=None)
@given(size=st.integers(0, 40 * 16), blksize=st.sampled_from([8, 16, 64]),
       windowsize=st.integers(1, 8), script=events, use_oack=st.booleans(), adaptive=st.booleans())
def test_state_machine_properties(size, blksize, windowsize, script, use_oack, adaptive):
    data = bytes(i % 251 for i in range(size))
    last_block = size // blksize + 1
    t = make(data, blksize=blksize, windowsize=windowsize, give_up_after=1.0, adaptive=adaptive,
             oack=(("blksize", str(blksize)),) if use_oack else ())
    now = 0.0
    sent_hi = 0
    last_ack = None

    def check(out: list[bytes]) -> None:
        nonlocal sent_hi
        for d in out:
            p = parse_packet(d)
            if isinstance(p, Data):
                assert 1 <= p.block <= last_block                       # never beyond the file
                offset = (p.block - 1) * blksize
                assert p.payload == data[offset:offset + blksize]       # right bytes for the block
                sent_hi = max(sent_hi, p.block)
            else:
                assert isinstance(p, (OptionAck, Error))

    check(t.start(now))
    for kind, value in script:
        if t.done:
            break
        now += 0.25
        if kind == "timeout":
            now = max(now, t.deadline)
            check(t.on_timeout(now))
            continue
        if kind == "dup":
            if last_ack is None:
                continue
            assert t.on_ack(last_ack, now) == []                        # dup ACK: never a resend
            continue
        block = sent_hi if kind == "ack_last" else value
        out = t.on_ack(block, now)
        check(out)
        last_ack = block
    # Whatever happened, timeouts alone end the transfer once no progress is made.
    for _ in range(40):
        if t.done:
            break
        now = max(now + 0.25, t.deadline)
        check(t.on_timeout(now))
    assert t.done and t.deadline is None
    assert t.record.outcome in ("complete", "timeout")
    assert 0 <= t.record.bytes_sent <= size
    if t.record.outcome == "complete":
        assert t.record.bytes_sent == size


@settings(max_examples=200, deadline=None)
@given(size=st.integers(0, 3000), blksize=st.sampled_from([8, 100, 512]), windowsize=st.integers(1, 16),
       loss=st.lists(st.booleans(), min_size=1, max_size=50))
def test_lossy_window_client_gets_the_file(size, blksize, windowsize, loss):
    """A window client that ACKs the last in-order block; some DATA is lost."""
    data = bytes((i * 7) % 256 for i in range(size))
    t = make(data, blksize=blksize, windowsize=windowsize, give_up_after=1e9)
    received = bytearray()
    expected = 1
    now = 0.0
    out = t.start(now)
    step = 0
    after_timeout = False
    while not t.done:
        step += 1
        assert step < 10000
        delivered_any = False
        for i, d in enumerate(out):
            lost = loss[step % len(loss)] and step % 3 == 0
            step += 1
            if lost and not (after_timeout and i == 0):   # a retransmission's first block gets through
                continue
            p = parse_packet(d)
            if p.block == expected & 0xFFFF:
                received += p.payload
                expected += 1
                delivered_any = True
        now += 1.0
        after_timeout = not delivered_any
        if delivered_any:
            out = t.on_ack(expected - 1, now)
        else:
            out = t.on_timeout(max(now, t.deadline))
    assert t.record.outcome == "complete"
    assert bytes(received) == data


def test_adaptive_timeout_follows_round_trip_and_backs_off():
    t = make(b"x" * 512 * 10, blksize=512, timeout=1.0, adaptive=True, min_timeout=0.05)
    t.start(0.0)
    assert t.deadline == 1.0                       # no sample yet: the configured timeout
    t.on_ack(1, 0.001)
    assert t.deadline == pytest.approx(0.001 + 0.05)   # 4 × 1 ms < floor
    t.on_ack(2, 0.101)                             # a 100 ms round trip raises it
    assert 0.05 < t.deadline - 0.101 <= 1.0
    rto = t.deadline - 0.101
    now = t.deadline
    assert blocks(t.on_timeout(now)) == [3]
    assert t.deadline - now == pytest.approx(min(2 * rto, 1.0))


def test_negotiated_timeout_is_used_as_is():
    t = make(b"x" * 5000, timeout=3.0, adaptive=False)
    t.start(0.0)
    t.on_ack(1, 0.001)
    assert t.deadline == pytest.approx(3.001)
    t.on_timeout(3.001)
    assert t.deadline == pytest.approx(6.001)


def test_reclaim_ends_a_stalled_transfer_with_an_error_and_a_record():
    t = make(b"x" * 5000, blksize=512)
    t.start(0.0)
    assert t.progress_at == 0.0
    t.on_ack(1, 0.5)
    assert t.progress_at == 0.5
    t.on_timeout(t.deadline)
    out = t.reclaim(3.0)
    packet = parse_packet(out[0])
    assert isinstance(packet, Error) and packet.code == 0
    assert t.done and t.record.outcome == "reclaimed" and t.record.bytes_sent == 512
    assert t.record.retransmissions == 1
    assert t.reclaim(4.0) == []

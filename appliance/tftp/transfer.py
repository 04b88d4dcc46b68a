"""One read transfer as a state machine: no sockets, no clock reads.

The I/O layer feeds it events with the current time and sends whatever
datagrams it returns::

    t = Transfer(content, client=addr, path="kernel8.img", blksize=1468)
    send(t.start(now))
    send(t.on_ack(block, now))       # for every ACK from the client's TID
    send(t.on_timeout(now))          # when now >= t.deadline
    t.on_error(code, message, now)   # client sent ERROR
    if t.done: emit(t.record)

Block numbers on the wire are 16 bits and wrap from 65535 to 0 (what
tftpd-hpa does and curl expects); internally blocks are counted without
wrapping.  Rules that keep the protocol safe:

- an ACK for the last acknowledged block (a duplicate) never triggers a
  resend — only a timeout does (Sorcerer's Apprentice);
- an ACK for a block that was never sent (or an old one) is ignored;
- with a window (RFC 7440), an ACK for block k inside the window slides the
  window to k+1 and sends from k+1 (the rest of the old window, then new
  blocks) — the receiver drops anything after a gap anyway;
- on timeout the whole unacknowledged window is resent;
- the transfer gives up (outcome "timeout") on *time without progress* —
  ``give_up_after`` seconds (default 30, the Raspberry Pi bootloader's
  per-file budget) since the last ACK that moved the window — never on a
  count of retries, so lost ACKs and multi-second outages cost time, not a
  boot.

Retransmission timeout (``adaptive=True``, what the server uses): the wait
starts at ``timeout`` and then follows the measured round trip — 4 ×
smoothed RTT, at least ``min_timeout``, at most ``timeout`` — and doubles on
each retransmission in a row up to ``max_timeout`` (exponential backoff;
samples are not taken across retransmissions, as in Karn's algorithm).  On a
fast link a lost datagram then costs tens of milliseconds, and a long outage
is probed every ``max_timeout`` seconds until the link is back.  The backoff
must be allowed to exceed the clients' own retransmission timeout: some
(atftp, tftpy) ignore a repeated DATA and re-send their ACK only when their
own timer, restarted by every datagram, runs out — a lost ACK is only
repaired once the server waits longer than that.  With ``adaptive=False``
the wait is ``timeout`` every time (and the transfer gives up after at least
two of those periods, even when that is longer than ``give_up_after``).

Payloads are read from the ``Content`` lazily, in order, one window ahead,
and kept only until acknowledged.  netascii is converted on the fly (LF →
CR LF, CR → CR NUL).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping

from ..content import Content, TransferRecord
from .packets import encode_data, encode_error, encode_oack

__all__ = ["Transfer", "netascii_size", "to_netascii"]

_NETASCII_CHUNK = 16384
_READ_AHEAD = 65536
# netascii's tsize needs a pass over the file: bounded so it never stalls the
# loop (about a millisecond); above it tsize is left out of the OACK (RFC 2347
# lets a server ignore an option).  Boot files are octet anyway.
_NETASCII_SIZE_LIMIT = 1024 * 1024


def to_netascii(data: bytes) -> bytes:
    """LF → CR LF and CR → CR NUL; each input byte maps independently."""
    return data.replace(b"\r", b"\r\0").replace(b"\n", b"\r\n")


def netascii_size(content: Content, limit: int = _NETASCII_SIZE_LIMIT) -> int | None:
    """Size after netascii conversion, or None for content above ``limit``."""
    if content.size > limit:
        return None
    total = offset = 0
    while offset < content.size:
        chunk = content.read_at(offset, min(_NETASCII_CHUNK * 4, content.size - offset))
        if not chunk:
            return None
        offset += len(chunk)
        total += len(chunk) + chunk.count(b"\n") + chunk.count(b"\r")
    return total


class _ShortRead(Exception):
    pass


class _OctetReader:
    """DATA packets of ``n``-byte blocks, read ahead in chunks of ``_READ_AHEAD`` bytes.

    One ``read_at`` per chunk instead of per block saves a system call per
    datagram; a block is sliced out of the chunk as a memoryview and copied
    once, into its packet.
    """

    __slots__ = ("_content", "_size", "_offset", "_view", "_pos", "_end")

    def __init__(self, content: Content) -> None:
        self._content = content
        self._size = content.size
        self._offset = 0          # bytes handed out so far
        self._view = memoryview(b"")
        self._pos = 0
        self._end = 0

    def packet(self, block: int, n: int) -> bytes:
        """DATA ``block`` with the next (up to) ``n`` bytes: the per-packet path."""
        want = self._size - self._offset
        if want > n:
            want = n
        elif want <= 0:
            return encode_data(block, b"")
        pos = self._pos
        if self._end - pos < want:
            self._refill(want)
            pos = 0
        self._pos = pos + want
        self._offset += want
        return encode_data(block, self._view[pos:pos + want])

    def _refill(self, want: int) -> None:
        length = min(max(want, _READ_AHEAD), self._size - self._offset)
        data = self._content.read_at(self._offset, length)
        if len(data) < want:
            # A short block would tell the client the file ended here.
            raise _ShortRead(f"content returned {len(data)} of {want} bytes at offset {self._offset}")
        self._view = memoryview(data)
        self._pos = 0
        self._end = len(data)


class _NetasciiReader:
    __slots__ = ("_content", "_size", "_offset", "_pending")

    def __init__(self, content: Content) -> None:
        self._content = content
        self._size = content.size
        self._offset = 0
        self._pending = bytearray()

    def packet(self, block: int, n: int) -> bytes:
        pending = self._pending
        while len(pending) < n and self._offset < self._size:
            want = min(max(n, _NETASCII_CHUNK), self._size - self._offset)
            chunk = self._content.read_at(self._offset, want)
            if not chunk:
                raise _ShortRead(f"content ended at offset {self._offset} of {self._size}")
            self._offset += len(chunk)
            pending += to_netascii(chunk)
        out = encode_data(block, pending[:n])
        del pending[:n]
        return out


class Transfer:
    """A read transfer of one ``Content`` to one client."""

    __slots__ = (
        "_content", "_reader", "client", "path", "meta", "blksize", "windowsize",
        "timeout", "_oack", "_acked", "_sent_hi", "_last_block",
        "_inflight", "_retries", "_acked_bytes", "_started", "deadline", "done",
        "record", "size", "_adaptive", "_min_timeout", "_max_timeout", "_rto", "_srtt",
        "_sent_at", "progress_at", "_give_up_after", "retransmissions",
    )

    def __init__(self, content: Content, *, client: tuple[str, int], path: str,
                 blksize: int = 512, windowsize: int = 1, timeout: float = 1.0,
                 give_up_after: float = 30.0, oack: tuple[tuple[str, str], ...] = (),
                 netascii: bool = False, meta: Mapping[str, object] | None = None,
                 adaptive: bool = False, min_timeout: float = 0.05, max_timeout: float = 6.0) -> None:
        if blksize < 1 or windowsize < 1 or timeout <= 0 or give_up_after <= 0:
            raise ValueError("blksize, windowsize, timeout and give_up_after must be positive")
        self._content = content
        self._reader = _NetasciiReader(content) if netascii else _OctetReader(content)
        self.client = client
        self.path = path
        self.meta = content.meta if meta is None else meta
        self.size = content.size
        self.blksize = blksize
        self.windowsize = windowsize
        self.timeout = timeout
        self._oack = oack
        self._acked = 0            # highest acknowledged block (-1: OACK outstanding)
        self._sent_hi = 0          # highest block sent (0: OACK or nothing)
        self._last_block = -1      # known once the short final block was read
        self._inflight: deque[bytes] = deque()   # packets for blocks _acked+1 .. _sent_hi
        self._retries = 0
        self._acked_bytes = 0
        self._started = 0.0
        self.deadline: float | None = None
        self.done = False
        self.record: TransferRecord | None = None
        self._adaptive = adaptive
        self._min_timeout = min(min_timeout, timeout)
        self._max_timeout = max(max_timeout, timeout)
        # A fixed period (adaptive=False) gets at least two tries before giving up.
        self._give_up_after = give_up_after if adaptive else max(give_up_after, 2 * timeout)
        self.progress_at = 0.0     # when the window last moved (or the transfer started)
        self.retransmissions = 0   # datagrams sent again on timeout
        self._rto = timeout        # current retransmission timeout
        self._srtt = -1.0          # smoothed round trip (-1: no sample yet)
        self._sent_at = -1.0       # when the newest unretransmitted data went out (-1: none)

    # -- events -------------------------------------------------------------

    def start(self, now: float) -> list[bytes]:
        self._started = self.progress_at = now
        self.deadline = now + self._rto
        if self._oack:
            self._acked = -1
            self._sent_at = now
            packet = encode_oack(self._oack)
            self._inflight.append(packet)
            return [packet]
        return self._fill_window(now)

    def on_ack(self, block: int, now: float) -> list[bytes]:
        if self.done:
            return []
        acked = self._acked
        diff = (block - acked) & 0xFFFF
        new = acked + diff
        if diff == 0 or new > self._sent_hi:
            return []               # duplicate, stale, or never sent: ignore
        inflight = self._inflight
        if acked < 0:               # the OACK is acknowledged (block 0)
            inflight.popleft()
            acked = 0
        acked_bytes = self._acked_bytes
        for _ in range(new - acked):
            acked_bytes += len(inflight.popleft()) - 4
        self._acked_bytes = acked_bytes
        self._acked = new
        self._retries = 0
        self.progress_at = now
        if self._adaptive and self._sent_at >= 0.0:
            sample = now - self._sent_at
            srtt = sample if self._srtt < 0.0 else self._srtt + (sample - self._srtt) * 0.125
            self._srtt = srtt
            rto = 4.0 * srtt
            self._rto = self.timeout if rto > self.timeout else (
                self._min_timeout if rto < self._min_timeout else rto)
        if new == self._last_block:
            self._finish("complete", now)
            return []
        if inflight:                # partial window ACK: resend from new + 1
            out = list(inflight)
            out += self._fill_window(now)
            return out
        return self._fill_window(now)

    def on_timeout(self, now: float) -> list[bytes]:
        if self.done or self.deadline is None or now < self.deadline:
            return []
        give_up_at = self.progress_at + self._give_up_after
        if now >= give_up_at:
            self._finish("timeout", now)
            return []
        self._retries += 1
        self._sent_at = -1.0       # no RTT sample from retransmitted data
        if self._adaptive:
            # Back off from the current estimate; progress (retries = 0) restores it.
            wait = min(self._rto * (1 << min(self._retries, 30)), self._max_timeout)
        else:
            wait = self.timeout
        self.deadline = min(now + wait, give_up_at)
        out = list(self._inflight)
        self.retransmissions += len(out)
        return out

    def on_error(self, code: int, message: str, now: float) -> None:
        """The client sent an ERROR packet: the transfer ends."""
        if self.done:
            return
        if code == 8:
            outcome = f"error: client refused options: {message}"
        elif self._acked <= 0:
            # e.g. the Raspberry Pi bootloader's tsize probe: OACK, then ERROR 0.
            outcome = "early-terminate"
        else:
            outcome = f"error: client error {code}: {message}"
        self._finish(outcome, now)

    def reclaim(self, now: float) -> list[bytes]:
        """End a stalled transfer to make room under load; returns the ERROR to send."""
        if self.done:
            return []
        self._finish("reclaimed", now)
        return [encode_error(0, "Server busy: stalled transfer ended")]

    def abort(self, reason: str, now: float, *, code: int = 0,
              message: str = "transfer aborted") -> list[bytes]:
        """End the transfer from the server side; returns the ERROR to send."""
        if self.done:
            return []
        self._finish(f"error: {reason}", now)
        return [encode_error(code, message)]

    # -- internals ------------------------------------------------------------

    def _fill_window(self, now: float) -> list[bytes]:
        # Per DATA packet: one call into the reader, attributes hoisted out of the loop.
        out = []
        sent = self._sent_hi
        limit = self._acked + self.windowsize
        if sent < limit and sent != self._last_block:
            blksize = self.blksize
            full = blksize + 4          # a shorter packet is the last one
            packet_for = self._reader.packet
            keep = self._inflight.append
            try:
                while True:
                    sent += 1
                    packet = packet_for(sent, blksize)
                    keep(packet)
                    out.append(packet)
                    if len(packet) < full:
                        self._last_block = sent
                        break
                    if sent == limit:
                        break
            except Exception as exc:  # Content is foreign code: any failure ends this transfer only
                self._finish(f"error: content read failed: {exc}", now)
                return [encode_error(0, "internal error")]
            self._sent_hi = sent
            self._sent_at = now
        self.deadline = now + self._rto
        return out

    def _finish(self, outcome: str, now: float) -> None:
        self.done = True
        self.deadline = None
        self._inflight.clear()
        self.record = TransferRecord(
            client=self.client, path=self.path, meta=self.meta,
            bytes_sent=self._acked_bytes, size=self.size,
            duration=max(0.0, now - self._started), outcome=outcome,
            blksize=self.blksize, windowsize=self.windowsize,
            retransmissions=self.retransmissions,
        )

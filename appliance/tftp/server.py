"""The I/O layer: sockets, an epoll loop and a timer heap around ``Transfer``.

Single-threaded: one listening socket per configured address, one fresh
ephemeral-port socket (the TFTP "TID") per transfer, bound to the local
address the request arrived on.  Everything protocol-related is delegated to
``packets``, ``admission`` (whether a request may start), ``options`` and
``transfer``; this module only moves datagrams, keeps time and counts.

Policies implemented here:

- one session per client (address, port): the RRQ that started its transfer,
  again while the transfer runs or up to ``_RETRANSMISSION_WINDOW`` seconds
  after it ended, is a retransmission and is ignored (a client re-sends its
  RRQ until the first reply comes; a busy loop may read that copy only after
  the transfer ended, and answering it would OACK a finished client until the
  transfer gives up); another RRQ from that port is the client's next file;
- a datagram on a session socket from any other address/port gets ERROR 5
  (an ERROR gets nothing: errors are never answered) and does not touch the
  session;
- WRQ → ERROR 2 (read-only); an unknown mode → ERROR 4 (``admission.admit``);
- a datagram on a listening socket that does not parse → ERROR 4; stray
  DATA/ACK/OACK/ERROR there are dropped; all of them are counted;
- at ``max_sessions`` concurrent transfers, or ``max_sessions_per_client``
  from one client address (enough for the Raspberry Pi's parallel duplicate
  requests), the session that has gone longest without progress is reclaimed
  if it has been stalled for ``reclaim_after`` seconds — whatever ``timeout``
  it negotiated — so never-ACKing clients cannot hold the server; the new
  request is served at once if that session ran here, otherwise (it runs in
  a worker, which is told to reclaim it) it is dropped (counted as
  ``refused_busy``) like any request that finds no room: clients retransmit
  their RRQ and get served once a slot is free, rather than failing a boot on
  an error;
- running out of file descriptors is never "file not found": a stalled
  session is reclaimed to make room and the request is dropped so the client
  retries; it is counted (``fd_exhausted``) and logged once (then at most
  every 10 minutes);
- a provider that answers ``RetryLater`` gets the request again after the
  delay it asked for; the loop serves everyone else meanwhile, and the
  client's retransmissions of that request are ignored;
- errors answering a request are sent from a per-listener ephemeral socket
  (a TID other than the listening port, as RFC 1350 asks);
- nothing is logged per packet; every transfer ends in one ``TransferRecord``
  passed to ``on_transfer`` (also for not-found/denied requests).

With ``workers=N`` the data pumping of admitted transfers runs in N worker
processes (``worker``), so every core moves datagrams; this process keeps
admission, the provider and the records.  A worker that dies is replaced,
its transfers end with an "error: transfer worker exited" record and
``worker_failures`` counts it.
"""

from __future__ import annotations

import errno
import heapq
import ipaddress
import logging
import resource   # at start: out of file descriptors, its extension module could not be loaded
import select
import socket
import struct
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import NamedTuple

from ..content import (MAX_FILENAME_BYTES, BytesContent, Content, ContentProvider, FileContent, OutOfResources,
                       RequestRefused, RetryLater, TransferRecord)
from ..errors import TftpError
from ..listen import parse_listen
from ..wakeup import LoopServer
from .admission import Refuse, admit, refusal
from .options import MAX_OPTIONS, WINDOWSIZE_MAX, OptionRefused, blksize_for_mtu, negotiate
from .packets import (
    ERR_ILLEGAL_OP, ERR_OPTION, ERR_UNDEFINED, ERR_UNKNOWN_TID,
    OP_ACK, OP_ERROR, Error, MalformedPacket, Request, encode_error, parse_packet,
)
from .sendmany import BatchSender
from .transfer import Transfer, netascii_size
from .worker import INLINE_CONTENT_MAX, Worker, WorkerGone, WorkerPool

log = logging.getLogger(__name__)

__all__ = ["TftpServer", "TftpStats"]

_IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)   # Linux value; missing from Python 3.11
_MAX_REQUEST_BYTES = 1024      # RFC 2347 limits requests to 512 bytes; be lenient
_SESSION_RECV_BYTES = 2048     # ACKs are 4 bytes; ERROR messages may be truncated
_LISTEN_RECV_BYTES = 65536     # detect (and refuse) oversized requests
_IP_MTU = getattr(socket, "IP_MTU", 14)         # Linux values; missing from Python 3.11
_IPV6_MTU = getattr(socket, "IPV6_MTU", 24)
_FALLBACK_MTU = 1500           # Ethernet, when the route's MTU cannot be read
# A client that reuses its port may send its next RRQ before the worker has
# read the final ACK of the previous transfer: such an RRQ is kept this long
# and served when that transfer's record arrives.
_REQUEST_AFTER_RECORD_WINDOW = 0.25
# How long after a transfer ended a copy of the RRQ that started it is still
# taken for a retransmission (iPXE re-sends after 0.25 s, 0.5 s, 1 s, ...).
_RETRANSMISSION_WINDOW = 1.0
_EXHAUSTED = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})
_FD_WARNING_INTERVAL = 600.0   # seconds between repeated "out of file descriptors" warnings
# A loop that pumps a single transfer (``pump_single_blocking``) waits for its
# ACKs in a blocking receive for at most this long, and returns to the epoll
# loop (control messages, wake-ups, timers) at least this often.
_BLOCKING_SLICE = 0.002
_BLOCKING_BURST = 64           # ... and at least every this many datagrams
_SEND_FLAGS = socket.MSG_DONTWAIT   # sends never block, whatever mode the socket is in


def _out_of_fds(exc: BaseException) -> bool:
    return isinstance(exc, OutOfResources) or (isinstance(exc, OSError) and exc.errno in _EXHAUSTED)


@dataclass
class TftpStats:
    """Counters since start (or the last reset); ``sessions_active`` is a gauge."""

    requests: int = 0               # RRQ/WRQ that were not retransmissions
    duplicate_requests: int = 0     # retransmitted RRQs ignored
    transfers_complete: int = 0
    transfers_early_terminated: int = 0
    transfers_aborted: int = 0      # timeout, client/server error, shutdown
    transfers_given_up: int = 0     # aborted after give_up_after seconds without progress
    retransmits: int = 0            # datagrams sent again after a timeout
    bytes_sent: int = 0             # payload bytes acknowledged by clients
    malformed: int = 0              # datagrams that did not parse
    stray: int = 0                  # DATA/ACK/... on a listening socket
    foreign_packets: int = 0        # datagrams on a session socket from another TID
    refused_busy: int = 0           # requests dropped at max_sessions (or the per-client cap)
    sessions_reclaimed: int = 0     # stalled sessions ended to make room
    fd_exhausted: int = 0           # requests dropped: out of file descriptors
    internal_errors: int = 0        # provider/content/callback exceptions
    worker_failures: int = 0        # transfer worker processes that died and were replaced
    errors_sent: dict[int, int] = field(default_factory=dict)   # TFTP code → count
    sessions_active: int = 0


def _listen_address(address: str | tuple[str, int]) -> tuple[str, int]:
    """A ``(host, port)`` pair, or ``"HOST:PORT"`` text (``appliance.listen``)."""
    if isinstance(address, tuple):
        return parse_listen(f"[{address[0]}]:{address[1]}" if ":" in address[0] else f"{address[0]}:{address[1]}")
    return parse_listen(address)


def _unstarted(client: tuple[str, int], path: str, outcome: str, *, meta: Mapping[str, object] | None = None,
               size: int = 0) -> TransferRecord:
    """The record of a request that never became a transfer (refused, failed to start)."""
    return TransferRecord(client=client, path=path, meta=meta or {}, size=size, outcome=outcome,
                          blksize=512, windowsize=1)


class _Listener:
    __slots__ = ("sock", "error_sock", "family", "host", "wildcard")

    def __init__(self, sock: socket.socket, error_sock: socket.socket, host: str, wildcard: bool) -> None:
        self.sock = sock
        self.error_sock = error_sock
        self.family = sock.family
        self.host = host
        self.wildcard = wildcard


def _add_stats(total: TftpStats, part: TftpStats) -> None:
    for name, value in vars(part).items():
        if name == "errors_sent":
            for code, n in value.items():
                total.errors_sent[code] = total.errors_sent.get(code, 0) + n
        elif name != "sessions_active":
            setattr(total, name, getattr(total, name) + value)


# NamedTuples, not dataclasses: only built and read, and defined at every start.
class _Remote(NamedTuple):
    """A transfer handed to a worker: what its record needs back, and for a worker crash."""

    worker: Worker
    client: tuple
    path: str
    meta: object
    size: int
    blksize: int
    windowsize: int
    started: float
    request: Request | None

    def aborted(self, now: float, outcome: str) -> TransferRecord:
        """The record of this transfer ended without the worker's own (crash, shutdown)."""
        return TransferRecord(client=self.client, path=self.path, meta=self.meta, size=self.size,
                              duration=now - self.started, outcome=outcome, blksize=self.blksize,
                              windowsize=self.windowsize)


class _Session:
    __slots__ = ("sock", "fd", "client", "key", "transfer", "content", "closed", "timer_at", "request", "sender")

    def __init__(self, sock: socket.socket, client: tuple, transfer: Transfer, content: Content,
                 request: Request | None) -> None:
        self.request = request         # the RRQ that started it (None in a worker process)
        self.sock = sock
        self.sender = BatchSender(sock, client, transfer.windowsize)   # a window in one system call
        self.fd = sock.fileno()
        self.client = client
        self.key = (client[0], client[1])
        self.transfer = transfer
        self.content = content
        self.closed = False
        self.timer_at = float("inf")   # deadline of this session's live timer-heap entry


class _Deferred(NamedTuple):
    """A request whose provider asked to be asked again at ``at``."""

    at: float
    listener: _Listener
    request: Request
    addr: tuple
    path: str
    local_ip: str
    scope: int


class TftpServer(LoopServer):
    """A read-only TFTP server over a ``ContentProvider``.

    ``start()`` binds (``addresses`` then holds the real ports);
    ``serve_forever()`` runs the loop until ``stop(drain, wait)``, which may
    be called from any thread (``LoopServer``).  ``step(max_wait)`` runs one
    loop iteration for callers that drive the loop themselves.
    """

    thread_name = "tftp"

    def __init__(self, provider: ContentProvider, listen: Iterable[str | tuple[str, int]] = ("0.0.0.0:69",),
                 on_transfer: Callable[[TransferRecord], None] | None = None, *,
                 timeout: float = 1.0, min_timeout: float = 0.05, max_timeout: float = 6.0,
                 give_up_after: float = 30.0, max_sessions: int = 512,
                 max_sessions_per_client: int = 64, reclaim_after: float = 1.0,
                 max_blksize: int | None = None, max_windowsize: int = WINDOWSIZE_MAX,
                 max_filename_bytes: int = MAX_FILENAME_BYTES, max_options: int = MAX_OPTIONS,
                 workers: int = 0, reuse_port: bool = False) -> None:
        super().__init__()
        self.provider = provider
        self.listen = [_listen_address(a) for a in listen]
        self.on_transfer = on_transfer
        self.timeout = float(timeout)
        self.min_timeout = float(min_timeout)
        self.max_timeout = float(max_timeout)
        self.give_up_after = float(give_up_after)
        self.max_sessions = max_sessions
        self.max_sessions_per_client = max_sessions_per_client
        self.reclaim_after = float(reclaim_after)
        self.max_blksize = max_blksize
        self.max_windowsize = max_windowsize
        self.max_filename_bytes = max_filename_bytes
        self.max_options = max_options
        self.workers = workers
        self.reuse_port = reuse_port      # SO_REUSEPORT: several independent servers share a port
        self.stats = TftpStats()
        self.addresses: list[tuple[str, int]] = []
        self._listeners: dict[int, _Listener] = {}
        self._sessions: dict[int, _Session] = {}
        self._by_client: dict[tuple[str, int], _Session] = {}
        self._by_address: dict[str, set[_Session]] = {}    # sessions run here, by client address
        self._fd_warned_at: float | None = None
        self._fd_exhausted_since_warning = 0
        self._timers: list[tuple[float, int, _Session]] = []
        self._timer_seq = 0
        self._recv_buffer = bytearray(_SESSION_RECV_BYTES)
        self._watched: dict[int, Callable[[], None]] = {}
        self._pool: WorkerPool | None = None
        self._remote: dict[tuple[str, int], _Remote] = {}
        self._remote_by_address: dict[str, int] = {}       # transfers in workers, by client address
        self._waiting: dict[tuple[str, int], tuple] = {}   # RRQs waiting for a worker's record
        self._deferred: dict[tuple[str, int], _Deferred] = {}   # RRQs the provider asked to retry
        # RRQs of transfers that ended → until when a copy is a retransmission (oldest first)
        self._answered: dict[tuple[str, int], tuple[Request, float]] = {}
        self._retired_stats = TftpStats()                  # final counters of workers that are gone
        self._epoll: select.epoll | None = None
        # A process that only pumps transfers (a worker: no listeners) may wait
        # for the ACKs of its only transfer in a blocking receive instead of
        # epoll_wait + recvfrom: one system call less per lock-step DATA packet.
        self.pump_single_blocking = False
        self._blocking: _Session | None = None   # the session whose socket is in blocking mode

    # -- lifecycle (LoopServer) ---------------------------------------------------

    def open(self) -> None:
        """Bind every listening address.  Raises ``TftpError`` if one cannot be bound."""
        self._epoll = select.epoll()
        self._epoll.register(self.wake.fileno(), select.EPOLLIN)
        try:
            for host, port in self.listen:
                self._bind_listener(host, port)
        except OSError as exc:
            self._close_all()
            raise TftpError(f"TFTP: cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
        if self.workers > 0:
            # Until a worker reports ready, transfers are served in this process.
            self._pool = WorkerPool(self.workers)
            try:
                self._pool.spawn_all()
            except OSError as exc:
                log.error("TFTP: cannot start transfer workers, serving in one process: %s", exc)
            for worker in list(self._pool.workers.values()):
                self._watch_worker(worker)

    def watch(self, fd: int, on_readable: Callable[[], None]) -> None:
        """Call ``on_readable()`` from the loop whenever ``fd`` is readable."""
        self._watched[fd] = on_readable
        self._epoll.register(fd, select.EPOLLIN)

    def _bind_listener(self, host: str, port: int) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        error_sock = None
        try:
            wildcard = ipaddress.ip_address(host).is_unspecified
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if self.reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if wildcard:
                # Learn each request's destination address so the session can use it.
                if family == socket.AF_INET:
                    sock.setsockopt(socket.IPPROTO_IP, _IP_PKTINFO, 1)
                else:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
            sock.bind((host, port))
            sock.setblocking(False)
            error_sock = socket.socket(family, socket.SOCK_DGRAM)
            error_sock.bind((host, 0))
            error_sock.setblocking(False)
        except BaseException:
            sock.close()
            if error_sock is not None:
                error_sock.close()
            raise
        listener = _Listener(sock, error_sock, host, wildcard)
        self._listeners[sock.fileno()] = listener
        # The error socket is registered so answers to it are drained, not queued.
        self._listeners[error_sock.fileno()] = listener
        self._epoll.register(sock.fileno(), select.EPOLLIN)
        self._epoll.register(error_sock.fileno(), select.EPOLLIN)
        bound = sock.getsockname()
        self.addresses.append((bound[0], bound[1]))

    def stop_accepting(self, stop_at: float) -> None:
        self._close_listeners()
        if self._pool is not None:
            self._pool.stop(max(0.0, stop_at - time.monotonic()))

    def busy(self) -> bool:
        return bool(self._sessions or self._remote)

    def stop_grace(self) -> float:
        """After the drain time, how long workers get to report their aborted transfers."""
        return 2.0 if self._remote else 0.0

    def close(self) -> None:
        """Abort every transfer (with a record each) and close all sockets."""
        now = time.monotonic()
        for session in list(self._sessions.values()):
            session.sender.send(session.transfer.abort("server stopping", now, message="Server shutting down"))
            self._end_session(session)
        self._deferred.clear()
        self._stop_workers()
        self._close_all()

    def read_stats(self, reset: bool = False) -> TftpStats:
        """A copy of the counters; with ``reset`` the counters restart at zero."""
        if reset:
            current, self.stats = self.stats, TftpStats()
        else:
            current = self.stats
        total = replace(current, errors_sent=dict(current.errors_sent),
                        sessions_active=len(self._sessions) + len(self._remote))
        _add_stats(total, self._retired_stats)
        if self._pool is not None:
            for worker in list(self._pool.workers.values()):
                if worker.stats is not None:
                    _add_stats(total, worker.stats)
        return total

    def worker_pids(self) -> list[int]:
        """Process ids of the transfer workers that are ready to take transfers."""
        pool = self._pool
        return [w.proc.pid for w in list(pool.workers.values()) if w.ready] if pool is not None else []

    # -- the loop -------------------------------------------------------------

    def step(self, max_wait: float) -> None:
        """Wait up to ``max_wait`` seconds for datagrams/timers and handle them."""
        if self.pump_single_blocking:
            self._pump_single()
        timers = self._timers
        wait = max_wait
        if timers:
            left = timers[0][0] - time.monotonic()
            if left < wait:
                wait = left if left > 0.0 else 0.0
        deferred = self._deferred
        if deferred:
            wait = max(0.0, min(wait, min(d.at for d in deferred.values()) - time.monotonic()))
        try:
            events = self._epoll.poll(wait)
        except InterruptedError:
            events = []
        now = time.monotonic()
        sessions = self._sessions
        for fd, _ in events:
            session = sessions.get(fd)
            if session is not None:
                self._on_session_readable(session, now)
            elif fd in self._listeners:
                self._on_listener_readable(fd)
            elif fd in self._watched:
                self._watched[fd]()
            elif fd == self.wake.fileno():
                self.wake.drain()
        if timers and timers[0][0] <= now:
            self._run_timers(now)
        if deferred:
            self._run_deferred(now)

    def _pump_single(self) -> None:
        """With exactly one transfer (and no listeners, deferred requests or
        stop), receive its datagrams in a blocking ``recvfrom`` bounded by
        ``SO_RCVTIMEO`` (``_BLOCKING_SLICE``), for up to ``_BLOCKING_BURST``
        datagrams or one slice; the epoll step follows every burst, so
        control messages and wake-ups wait at most about a slice, and a due
        timer ends the burst at once (the epoll step runs it)."""
        sessions = self._sessions
        blocking = self._blocking
        if len(sessions) != 1 or self._listeners or self._deferred or self.stopping:
            if blocking is not None:
                self._blocking = None
                if not blocking.closed:
                    blocking.sock.setblocking(False)
            return
        session = next(iter(sessions.values()))
        if session is not blocking:
            if blocking is not None and not blocking.closed:
                blocking.sock.setblocking(False)
            session.sock.setblocking(True)
            seconds = int(_BLOCKING_SLICE)
            session.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO,
                                    struct.pack("@ll", seconds, int((_BLOCKING_SLICE - seconds) * 1e6)))
            self._blocking = session
        timers = self._timers
        monotonic = time.monotonic
        now = monotonic()
        until = now + _BLOCKING_SLICE
        for _ in range(_BLOCKING_BURST):
            if session.closed or (timers and timers[0][0] <= now) or now >= until:
                break
            if not self._on_session_readable(session, None):
                break                   # nothing within the slice
            now = monotonic()

    def _on_session_readable(self, session: _Session, now: float | None) -> bool:
        """Read and handle one datagram; whether one was read.  ``now`` None:
        read the clock after receiving (the receive may have blocked)."""
        # The per-DATA-packet path: one preallocated receive buffer, the ACK
        # parsed in place, no helper calls (each costs ~0.1 µs of ~3 µs).
        sock = session.sock
        buf = self._recv_buffer
        try:
            size, addr = sock.recvfrom_into(buf)
        except OSError:
            return False
        if now is None:
            now = time.monotonic()
        client = session.client
        if addr[1] != client[1] or addr[0] != client[0]:
            self.stats.foreign_packets += 1
            if not (size >= 2 and buf[1] == OP_ERROR and buf[0] == 0):
                # An ERROR is never answered (RFC 1350): two sessions would
                # otherwise trade ERROR 5s without end.
                self._send_error(sock, addr, ERR_UNKNOWN_TID, "Unknown transfer ID")
            return True
        transfer = session.transfer
        if size >= 4 and buf[1] == OP_ACK and buf[0] == 0:
            out = transfer.on_ack((buf[2] << 8) | buf[3], now)
        else:
            try:
                packet = parse_packet(bytes(buf[:size]))
            except MalformedPacket:
                self.stats.malformed += 1
                return True
            if type(packet) is not Error:
                # RRQ/DATA/OACK from the client's TID: not part of a read; ignore.
                self.stats.malformed += 1
                return True
            transfer.on_error(packet.code, packet.message, now)
            out = ()
        if len(out) == 1:
            try:
                sock.sendto(out[0], _SEND_FLAGS, client)
            except OSError:
                pass            # lost like any datagram; the timer retransmits
        elif out:
            session.sender.send(out)
        if transfer.done:
            self._end_session(session)
        elif transfer.deadline < session.timer_at:
            # Deadlines usually move later (the heap entry is then just early and
            # re-pushed when it pops); an earlier one needs its own entry.
            self._push_timer(session, transfer.deadline)
        return True

    def _run_timers(self, now: float) -> None:
        timers = self._timers
        while timers and timers[0][0] <= now:
            at, _, session = heapq.heappop(timers)
            if session.closed or at != session.timer_at:
                continue                # superseded by an earlier entry
            transfer = session.transfer
            deadline = transfer.deadline
            if deadline is not None and deadline > now:
                self._push_timer(session, deadline)
                continue
            out = transfer.on_timeout(now)
            self.stats.retransmits += len(out)
            session.sender.send(out)
            self._continue(session)

    def _continue(self, session: _Session) -> None:
        """After sending: end a finished session, or wait for its next deadline."""
        if session.transfer.done:
            self._end_session(session)
        else:
            self._push_timer(session, session.transfer.deadline)

    def _push_timer(self, session: _Session, deadline: float) -> None:
        session.timer_at = deadline
        self._timer_seq += 1
        heapq.heappush(self._timers, (deadline, self._timer_seq, session))

    # -- requests ---------------------------------------------------------------

    def _on_listener_readable(self, fd: int) -> None:
        listener = self._listeners[fd]
        sock = listener.sock if listener.sock.fileno() == fd else listener.error_sock
        local_ip, scope = listener.host, 0
        try:
            if listener.wildcard and sock is listener.sock:
                data, ancdata, _, addr = sock.recvmsg(_LISTEN_RECV_BYTES, 256)
                local_ip, scope = self._destination(listener, ancdata)
            else:
                data, addr = sock.recvfrom(_LISTEN_RECV_BYTES)
        except OSError:
            return
        if sock is listener.error_sock:
            # Clients answering an error TID (e.g. ERROR back): nothing to do.
            self.stats.stray += 1
            return
        if len(data) > _MAX_REQUEST_BYTES:
            self.stats.malformed += 1
            self._send_error(listener.error_sock, addr, ERR_ILLEGAL_OP, "Request too long")
            return
        try:
            packet = parse_packet(data)
        except MalformedPacket:
            self.stats.malformed += 1
            self._send_error(listener.error_sock, addr, ERR_ILLEGAL_OP, "Illegal TFTP operation")
            return
        if type(packet) is not Request:
            self.stats.stray += 1
            return
        self._on_request(listener, packet, addr, local_ip, scope)

    def _is_retransmission(self, key: tuple[str, int], request: Request) -> bool:
        """``request`` is the one that started the client's running or just-ended transfer."""
        session = self._by_client.get(key)
        if session is not None:
            return request == session.request
        remote = self._remote.get(key)
        if remote is not None:
            return request == remote.request
        answered = self._answered.get(key)
        return answered is not None and request == answered[0] and time.monotonic() < answered[1]

    def _remember_answered(self, key: tuple[str, int], request: Request) -> None:
        answered = self._answered
        now = time.monotonic()
        answered.pop(key, None)
        answered[key] = (request, now + _RETRANSMISSION_WINDOW)
        while True:                         # oldest first: drop those that expired
            oldest = next(iter(answered))
            if answered[oldest][1] > now:
                break
            del answered[oldest]

    @staticmethod
    def _destination(listener: _Listener, ancdata: list) -> tuple[str, int]:
        for level, kind, data in ancdata:
            if level == socket.IPPROTO_IP and kind == _IP_PKTINFO and len(data) >= 12:
                return socket.inet_ntop(socket.AF_INET, data[8:12]), 0
            if level == socket.IPPROTO_IPV6 and kind == socket.IPV6_PKTINFO and len(data) >= 20:
                return socket.inet_ntop(socket.AF_INET6, data[:16]), int.from_bytes(data[16:20], "little")
        return listener.host, 0

    def _on_request(self, listener: _Listener, request: Request, addr: tuple,
                    local_ip: str, scope: int) -> None:
        key = (addr[0], addr[1])
        if key in self._deferred or self._is_retransmission(key, request):
            self.stats.duplicate_requests += 1
            return
        session = self._by_client.get(key)
        if session is not None:
            # A client that reuses its port may send its next RRQ right after the
            # final ACK of the previous file, before this loop has read that ACK:
            # read what is pending on the session first, so the finished session
            # ends and the new request is served instead of ignored.
            now = time.monotonic()
            for _ in range(4):
                if session.closed:
                    break
                self._on_session_readable(session, now)
            if key in self._by_client:
                self.stats.duplicate_requests += 1
                return
        if key in self._remote:
            self.stats.duplicate_requests += 1
            self._waiting[key] = (listener, request, addr, local_ip, scope, time.monotonic())
            return
        if self.stopping:
            return
        stats = self.stats
        stats.requests += 1
        decision = admit(request, self.max_filename_bytes)
        if isinstance(decision, Refuse):
            self._refuse(listener.error_sock, addr, decision)
            return
        if len(self._deferred) >= self.max_sessions or not self._make_room(addr[0]):
            stats.refused_busy += 1
            return
        self._open(listener, request, addr, decision.path, local_ip, scope)

    def _open(self, listener: _Listener, request: Request, addr: tuple, path: str, local_ip: str,
              scope: int) -> None:
        """Ask the provider for the file and start the transfer, refuse, or defer the request."""
        client = (addr[0], addr[1])
        error_sock = listener.error_sock
        stats = self.stats
        try:
            content = self._with_fds(lambda: self.provider.open(client, path))
        except RetryLater as exc:
            self._deferred[client] = _Deferred(time.monotonic() + max(0.0, exc.after), listener, request, addr,
                                               path, local_ip, scope)
            return
        except Exception as exc:  # the provider is foreign code; it must not stop the server
            if _out_of_fds(exc):
                self._on_fd_exhausted()
                return
            if isinstance(exc, RequestRefused):
                self._refuse(error_sock, addr, refusal(exc, path))
                return
            stats.internal_errors += 1
            self._send_error(error_sock, addr, ERR_UNDEFINED, "internal error")
            self._emit(_unstarted(client, path, f"error: internal error: {exc!r}"))
            return
        self._start_transfer(listener, request, addr, client, path, content, local_ip, scope)

    def _start_transfer(self, listener: _Listener, request: Request, addr: tuple, client: tuple[str, int],
                        path: str, content: Content, local_ip: str, scope: int) -> None:
        sock = None
        try:
            netascii = request.mode == "netascii"
            wants_tsize = any(name == "tsize" for name, _ in request.options)
            size = content.size
            if netascii and wants_tsize:
                size = netascii_size(content)
            try:
                negotiated = negotiate(request.options, size=size,
                                       max_blksize=self._max_blksize_for(listener.family, local_ip, scope, addr),
                                       max_windowsize=self.max_windowsize, max_options=self.max_options)
            except OptionRefused as exc:
                content.close()
                self._send_error(listener.error_sock, addr, ERR_OPTION, str(exc))
                self._emit(_unstarted(client, path, f"error: option negotiation failed: {exc}",
                                      meta=content.meta, size=content.size))
                return
            sock = self._with_fds(lambda: socket.socket(listener.family, socket.SOCK_DGRAM))
            sock.bind((local_ip, 0, 0, scope) if listener.family == socket.AF_INET6 else (local_ip, 0))
            sock.setblocking(False)
            # Everything a Transfer needs besides its Content: plain values, so a
            # worker process can build the same state machine.
            transfer_args = dict(client=client, path=path, blksize=negotiated.blksize,
                                 windowsize=negotiated.windowsize,
                                 oack=negotiated.oack, netascii=netascii,
                                 **self._retransmission(negotiated.timeout))
            if self._pool is not None and self._hand_off(sock, addr, content, transfer_args, request):
                return
            self.adopt(sock, addr, content, transfer_args, request)
        except Exception as exc:  # socket exhaustion, a failing Content: this request only
            if sock is not None:
                sock.close()
            content.close()
            if _out_of_fds(exc):
                self._on_fd_exhausted()
                return
            self.stats.internal_errors += 1
            self._send_error(listener.error_sock, addr, ERR_UNDEFINED, "internal error")
            self._emit(_unstarted(client, path, f"error: internal error: {exc!r}"))

    def _retransmission(self, negotiated: float | None) -> dict:
        """Retransmission settings: always adaptive with backoff.  A ``timeout``
        the client negotiated (RFC 2349) is the longest the server waits between
        retransmissions, and at least two such periods pass before it gives up;
        below it the wait still follows the round trip, so a lost datagram does
        not cost the client's whole timeout."""
        if negotiated is None:
            return dict(timeout=self.timeout, min_timeout=self.min_timeout, max_timeout=self.max_timeout,
                        give_up_after=self.give_up_after, adaptive=True)
        return dict(timeout=min(negotiated, self.timeout), min_timeout=self.min_timeout, max_timeout=negotiated,
                    give_up_after=max(self.give_up_after, 2 * negotiated), adaptive=True)

    def adopt(self, sock: socket.socket, addr: tuple, content: Content, transfer_args: dict,
              request: Request | None = None) -> None:
        """Run a transfer on ``sock`` (bound, non-blocking; the server owns it from now on)."""
        transfer = Transfer(content, **transfer_args)
        session = _Session(sock, addr, transfer, content, request)
        out = transfer.start(time.monotonic())
        self._sessions[session.fd] = session
        self._by_client[session.key] = session
        self._by_address.setdefault(addr[0], set()).add(session)
        self._epoll.register(session.fd, select.EPOLLIN)
        session.sender.send(out)
        self._continue(session)

    # -- transfer workers ---------------------------------------------------------------

    def _hand_off(self, sock: socket.socket, addr: tuple, content: Content, transfer_args: dict,
                  request: Request) -> bool:
        """Give the transfer to a worker; False when none can take it (serve it here)."""
        worker = self._pool.pick()
        if worker is None:
            return False
        if isinstance(content, FileContent):
            data, fds = None, (sock.fileno(), content.fileno())
        elif isinstance(content, BytesContent) and content.size <= INLINE_CONTENT_MAX:
            data, fds = content.read_at(0, content.size), (sock.fileno(),)
        else:
            return False                       # a foreign Content cannot travel
        key = (addr[0], addr[1])
        message = {"op": "session", "key": key, "client": addr, "data": data,
                   "transfer": dict(transfer_args, meta={})}
        if not self._pool.hand_off(worker, message, fds):
            return False
        # The worker holds its own copies of the descriptors now.
        sock.close()
        content.close()
        self._remote_by_address[addr[0]] = self._remote_by_address.get(addr[0], 0) + 1
        self._remote[key] = _Remote(worker, transfer_args["client"], transfer_args["path"], content.meta,
                                    content.size, transfer_args["blksize"], transfer_args["windowsize"],
                                    time.monotonic(), request)
        return True

    def _watch_worker(self, worker: Worker) -> None:
        self.watch(worker.fd, lambda: self._on_worker_readable(worker))

    def _on_worker_readable(self, worker: Worker) -> None:
        gone = False
        try:
            messages = self._pool.read(worker)
        except WorkerGone as exc:
            messages, gone = exc.messages, True
        for message in messages:
            if message["op"] == "record":
                self._on_worker_record(message["key"], message["record"])
            elif message["op"] == "exhausted":
                # The worker could not take the transfer's descriptors: as if
                # the request had been dropped here; the client retries.
                self._pop_remote(message["key"])
                self._on_fd_exhausted()
                self._pool.reclaim(worker, None, self.reclaim_after)
        if gone:
            self._on_worker_gone(worker)

    def _on_worker_record(self, key: tuple[str, int], record: TransferRecord) -> None:
        remote = self._pop_remote(key)
        if remote is not None:
            record = replace(record, meta=remote.meta)
            self._remember_answered(key, remote.request)
        self._emit(record)
        waiting = self._waiting.pop(key, None)
        if waiting is not None and time.monotonic() - waiting[-1] <= _REQUEST_AFTER_RECORD_WINDOW:
            self.stats.duplicate_requests -= 1
            self._on_request(*waiting[:-1])

    def _on_worker_gone(self, worker: Worker) -> None:
        self._epoll_forget(worker.fd)
        self._watched.pop(worker.fd, None)
        if worker.stats is not None:
            _add_stats(self._retired_stats, worker.stats)
        status = self._pool.remove(worker)
        lost = [key for key, remote in self._remote.items() if remote.worker is worker]
        # One that dies before it was ever ready would die again: no restart loop,
        # its share of transfers is served in this process.
        restart = not self.stopping and worker.ready
        if not self.stopping or lost:
            self.stats.worker_failures += 1
            log.error("TFTP transfer worker %d exited (status %s); %d transfer(s) aborted%s",
                      worker.proc.pid, status, len(lost),
                      ", restarting it" if restart else "" if self.stopping
                      else "; it never started, serving in this process instead")
        now = time.monotonic()
        for key in lost:
            remote = self._pop_remote(key)
            self.stats.transfers_aborted += 1
            self._emit(remote.aborted(now, "error: transfer worker exited"))
        if restart:
            try:
                self._watch_worker(self._pool.spawn())
            except OSError as exc:
                log.error("TFTP: cannot restart a transfer worker: %s", exc)

    def _pop_remote(self, key: tuple[str, int]) -> _Remote | None:
        remote = self._remote.pop(key, None)
        if remote is not None:
            left = self._remote_by_address[key[0]] - 1
            if left:
                self._remote_by_address[key[0]] = left
            else:
                del self._remote_by_address[key[0]]
        return remote

    # -- pressure ------------------------------------------------------------------------

    def _make_room(self, address: str) -> bool:
        """Whether a new session for ``address`` fits now, reclaiming a stalled one if needed."""
        mine = self._by_address.get(address, ())
        if len(mine) + self._remote_by_address.get(address, 0) >= self.max_sessions_per_client:
            return self._reclaim(mine, address)
        if len(self._sessions) + len(self._remote) >= self.max_sessions:
            return self._reclaim(self._sessions.values(), None)
        return True

    def _reclaim(self, candidates: Iterable[_Session], address: str | None) -> bool:
        """Make room: True when a stalled session here was ended; otherwise the
        busiest worker is told to reclaim one of its own (room arrives later)."""
        if self.reclaim_stalled(candidates):
            return True
        if self._pool is not None:
            worker = self._pool.busiest(address)
            if worker is not None:
                self._pool.reclaim(worker, address, self.reclaim_after)
        return False

    def reclaim_stalled(self, candidates: Iterable[_Session] | None = None, address: str | None = None,
                        stalled_for: float | None = None) -> bool:
        """End the session longest without progress among ``candidates`` (default:
        those of ``address``, or all), if it has been stalled ``stalled_for`` seconds.
        A scan, done only under pressure."""
        if candidates is None:
            candidates = self._sessions.values() if address is None else self._by_address.get(address, ())
        stalled = min(candidates, key=lambda s: s.transfer.progress_at, default=None)
        now = time.monotonic()
        limit = self.reclaim_after if stalled_for is None else stalled_for
        if stalled is None or now - stalled.transfer.progress_at < limit:
            return False
        stalled.sender.send(stalled.transfer.reclaim(now))
        self.stats.sessions_reclaimed += 1
        self._end_session(stalled)
        return True

    def _with_fds(self, action: Callable[[], object]):
        """``action()``; out of file descriptors, reclaim a stalled session here and try once more."""
        try:
            return action()
        except Exception as exc:
            if not _out_of_fds(exc) or not self._reclaim(self._sessions.values(), None):
                raise
        return action()

    def _on_fd_exhausted(self) -> None:
        self.stats.fd_exhausted += 1
        self._fd_exhausted_since_warning += 1
        now = time.monotonic()
        if self._fd_warned_at is None or now - self._fd_warned_at >= _FD_WARNING_INTERVAL:
            limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
            log.warning("TFTP: out of file descriptors (limit %d, %d transfers): %d request(s) dropped so "
                        "clients retry; raise the open-file limit (LimitNOFILE=) or lower max_sessions",
                        limit, len(self._sessions) + len(self._remote), self._fd_exhausted_since_warning)
            self._fd_warned_at = now
            self._fd_exhausted_since_warning = 0

    def _epoll_forget(self, fd: int) -> None:
        try:
            self._epoll.unregister(fd)
        except (OSError, ValueError):
            pass

    def _run_deferred(self, now: float) -> None:
        for key, d in list(self._deferred.items()):
            if d.at <= now:
                del self._deferred[key]
                if not self.stopping:
                    self._open(d.listener, d.request, d.addr, d.path, d.local_ip, d.scope)

    def _max_blksize_for(self, family: int, local_ip: str, scope: int, addr: tuple) -> int:
        """``max_blksize`` if set, else the largest blksize whose DATA fits the
        MTU of the route to the client (path MTU once the kernel learned one):
        1468 on Ethernet, less on a tunnel or a small-MTU link, 65464 on loopback."""
        if self.max_blksize is not None:
            return self.max_blksize
        mtu = _FALLBACK_MTU
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as probe:
                # Routed like the session socket: from the address the request came to.
                probe.bind((local_ip, 0, 0, scope) if family == socket.AF_INET6 else (local_ip, 0))
                probe.connect(addr)
                if family == socket.AF_INET6:
                    mtu = probe.getsockopt(socket.IPPROTO_IPV6, _IPV6_MTU)
                else:
                    mtu = probe.getsockopt(socket.IPPROTO_IP, _IP_MTU)
        except OSError:
            pass                # no route, out of descriptors: the session fails or works alike
        return blksize_for_mtu(mtu, ipv6=family == socket.AF_INET6)

    def _refuse(self, sock: socket.socket, addr: tuple, decision: Refuse) -> None:
        self._send_error(sock, addr, decision.code, decision.message)
        if decision.outcome is not None:
            self._emit(_unstarted((addr[0], addr[1]), decision.path, decision.outcome))

    # -- endings -----------------------------------------------------------------

    def _send_error(self, sock: socket.socket, addr: tuple, code: int, message: str) -> None:
        errors = self.stats.errors_sent
        errors[code] = errors.get(code, 0) + 1
        try:
            sock.sendto(encode_error(code, message), _SEND_FLAGS, addr)
        except OSError:
            pass

    def _end_session(self, session: _Session) -> None:
        if session.closed:
            return
        session.closed = True
        self._sessions.pop(session.fd, None)
        self._by_client.pop(session.key, None)
        if session.request is not None:
            self._remember_answered(session.key, session.request)
        mine = self._by_address.get(session.client[0])
        if mine is not None:
            mine.discard(session)
            if not mine:
                del self._by_address[session.client[0]]
        try:
            self._epoll.unregister(session.fd)
        except (OSError, ValueError):
            pass
        session.sock.close()
        try:
            session.content.close()
        except Exception:  # foreign code
            self.stats.internal_errors += 1
        record = session.transfer.record
        if record is not None:
            stats = self.stats
            stats.bytes_sent += record.bytes_sent
            if record.outcome == "complete":
                stats.transfers_complete += 1
            elif record.outcome == "early-terminate":
                stats.transfers_early_terminated += 1
            else:
                stats.transfers_aborted += 1
                if record.outcome == "timeout":
                    stats.transfers_given_up += 1
                elif record.outcome.startswith("error: content read failed"):
                    stats.internal_errors += 1
            self._emit(record)

    def _emit(self, record: TransferRecord) -> None:
        if self.on_transfer is None:
            return
        try:
            self.on_transfer(record)
        except Exception:  # a broken callback must not take the server down
            self.stats.internal_errors += 1

    def _close_listeners(self) -> None:
        for fd, listener in list(self._listeners.items()):
            try:
                self._epoll.unregister(fd)
            except (OSError, ValueError):
                pass
            if listener.sock.fileno() == fd:
                listener.sock.close()
            else:
                listener.error_sock.close()
        self._listeners.clear()

    def _stop_workers(self) -> None:
        """Workers were asked to stop with the listeners; reap them, kill stragglers."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        pool.stop(0.0)
        for worker in list(pool.workers.values()):
            self._epoll_forget(worker.fd)
            self._watched.pop(worker.fd, None)
            try:
                messages = pool.read(worker)
            except WorkerGone as exc:
                messages = exc.messages
            for message in messages:
                if message["op"] == "record":
                    self._on_worker_record(message["key"], message["record"])
            if worker.stats is not None:
                _add_stats(self._retired_stats, worker.stats)
            pool.remove(worker, kill=worker.sessions > 0)
        now = time.monotonic()
        for key in list(self._remote):
            remote = self._pop_remote(key)
            self.stats.transfers_aborted += 1
            self._emit(remote.aborted(now, "error: server stopping"))

    def _close_all(self) -> None:
        self._close_listeners()
        if self._epoll is not None:
            self._epoll.close()
        self._timers.clear()

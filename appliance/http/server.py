"""A read-only HTTP/1.1 file server over a ``ContentProvider``.

Non-blocking sockets and one ``selectors`` loop per worker thread; the
listening sockets are shared, so whichever loop is free accepts.  Store files
go out with ``os.sendfile`` (zero-copy; the copy runs in the kernel without
the GIL, so two loops use two cores), generated files with one ``send``.

Slow or idle clients cannot exhaust it:

- a request head must arrive completely within ``header_timeout`` of the
  connection becoming idle (slowloris), and a response must make progress
  within ``send_timeout`` (a reader that stops reading);
- at ``max_connections`` (or ``max_per_client`` from one address) a new
  connection takes the slot of the one that moved least recently: a
  connection waiting for a request head, or a response whose reader has
  taken nothing for ``reclaim_after`` seconds (its transfer ends
  "reclaimed"), as the TFTP engine reclaims stalled sessions.  So stalled
  readers spread over many addresses cannot hold every slot, and a client
  that keeps reading is never cut; if nothing qualifies, the newcomer is
  answered 503 and closed.  With several workers each loop reclaims among
  its own connections;
- request heads are capped at ``MAX_HEAD_BYTES``; malformed requests get a
  4xx and the connection is closed, nothing else is affected; an exception
  nobody foresaw (in a provider's content, say) aborts its connection only;
- out of file descriptors, the listeners are left alone for a moment (the
  connection waits in the backlog) rather than polled in a busy loop.

A response that ends its connection is followed by a lingering close: the
client's further input is read and discarded for a moment, as a close with
unread input would reset the connection and cut the end of the response.

Every GET that reaches content (complete, partial or aborted) and every
refusal by the provider becomes a ``TransferRecord`` with ``transport="http"``.
"""

from __future__ import annotations

import errno
import os
import selectors
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields

from ..content import (AccessDenied, Content, ContentProvider, FileNotFound, OutOfResources, RequestRefused,
                       RetryLater, TransferRecord, clean_path)
from ..errors import HttpError
from ..wakeup import LoopServer
from .request import (
    MAX_HEAD_BYTES,
    BadRequest,
    content_type,
    error_head,
    find_head_end,
    leading_empty_lines,
    parse_head,
    parse_range,
    response_head,
)

__all__ = ["HttpServer", "HttpStats"]

_RECV_BYTES = 16384
_CHUNK_BYTES = 256 * 1024          # read_at chunks for content without a file descriptor
_SENDFILE_MAX = 1 << 30
_SWEEP_INTERVAL = 0.25
_ACCEPT_PAUSE = 0.1                # out of descriptors: stop polling the listeners this long

_LINGER_SECONDS = 2.0               # a closing connection drains the client's input this long at most

_HEAD, _SEND, _LINGER = 0, 1, 2     # waiting for a request head, responding, draining before close


@dataclass
class HttpStats:
    """Counters since start; ``connections_active`` is a gauge."""

    connections: int = 0
    requests: int = 0
    transfers_complete: int = 0
    transfers_aborted: int = 0
    bytes_sent: int = 0              # body bytes written to clients
    malformed: int = 0               # requests answered 4xx/5xx before any content lookup
    timeouts: int = 0                # connections closed for a slow head or a stalled reader
    evicted: int = 0                 # idle connections closed to admit a new one
    reclaimed: int = 0               # stalled responses ended to admit a new one
    refused_busy: int = 0            # connections answered 503
    internal_errors: int = 0
    responses: dict[int, int] = field(default_factory=dict)   # status → count
    connections_active: int = 0

    def add(self, other: "HttpStats") -> None:
        for f in fields(self):
            if f.name == "responses":
                for code, n in other.responses.items():
                    self.responses[code] = self.responses.get(code, 0) + n
            else:
                setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


class _Connection:
    __slots__ = ("sock", "fd", "client", "state", "inbuf", "out", "deadline", "keep_alive",
                 "content", "file_fd", "offset", "remaining", "path", "started", "sent", "head_len", "whole",
                 "registered", "pending", "retry_at", "retry_until", "serving", "progress_at")

    def __init__(self, sock: socket.socket, client: tuple[str, int], now: float, header_timeout: float) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.client = client
        self.state = _HEAD
        self.inbuf = bytearray()
        self.out = memoryview(b"")
        self.deadline = now + header_timeout
        self.keep_alive = False
        self.content: Content | None = None
        self.file_fd = -1
        self.offset = 0
        self.remaining = 0
        self.path = ""
        self.started = 0.0
        self.sent = 0                      # bytes written for the current response, head included
        self.head_len = 0
        self.whole = True
        self.registered = selectors.EVENT_READ
        self.pending: tuple[str, dict[str, str], str] | None = None   # a request the provider deferred
        self.retry_at = 0.0
        self.retry_until = 0.0
        self.serving = False               # inside serve_buffered: it answers what is pipelined
        # When it last moved: a response's bytes went out, or it began waiting for a request head.
        self.progress_at = now


class _Admission:
    """Connection counts shared by the loops (accepting is rare; a lock is cheap)."""

    def __init__(self, max_connections: int, max_per_client: int) -> None:
        self.max_connections = max_connections
        self.max_per_client = max_per_client
        self.lock = threading.Lock()
        self.total = 0
        self.per_client: dict[str, int] = {}

    def release(self, ip: str) -> None:
        with self.lock:
            self.total -= 1
            n = self.per_client.get(ip, 1) - 1
            if n:
                self.per_client[ip] = n
            else:
                self.per_client.pop(ip, None)


class HttpServer:
    """Serve ``provider``'s files over HTTP on every ``listen`` (host, port).

    ``start()`` binds (``addresses`` then holds the real ports);
    ``run_in_thread()`` starts the worker loops (each a ``LoopServer`` on the
    shared listening sockets); ``stop()`` ends them.
    """

    def __init__(self, provider: ContentProvider, listen: Iterable[tuple[str, int]],
                 on_transfer: Callable[[TransferRecord], None] | None = None, *,
                 workers: int = 1, max_connections: int = 512, max_per_client: int = 64,
                 header_timeout: float = 10.0, send_timeout: float = 30.0, reclaim_after: float = 2.0) -> None:
        self.provider = provider
        self.listen = [(str(h), int(p)) for h, p in listen]
        self.on_transfer = on_transfer
        self.header_timeout = header_timeout
        self.send_timeout = send_timeout
        self.reclaim_after = reclaim_after
        self.addresses: list[tuple[str, int]] = []
        self._admission = _Admission(max_connections, max_per_client)
        self._listeners: list[socket.socket] = []
        self._loops = [_Loop(self, i) for i in range(max(1, workers))]
        self._started = False

    def start(self) -> None:
        """Bind every listening address.  Raises ``HttpError`` if one cannot be bound."""
        if self._started:
            return
        for host, port in self.listen:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.bind((host, port))
                sock.listen(1024)
                sock.setblocking(False)
            except OSError as exc:
                sock.close()
                self._close_listeners()
                raise HttpError(f"HTTP: cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
            self._listeners.append(sock)
            bound = sock.getsockname()
            self.addresses.append((bound[0], bound[1]))
        self._started = True

    def run_in_thread(self, name: str = "http") -> None:
        """Bind now (errors reach the caller) and run every loop in its own daemon thread."""
        self.start()
        for loop in self._loops:
            loop.run_in_thread(f"{name}-{loop.index}")

    def stop(self, drain: float = 0.0, wait: float | None = 10.0) -> None:
        """Stop accepting; let responses in progress finish for up to ``drain`` seconds, then abort
        them.  Any thread; from another one it waits up to ``wait`` seconds for the loops."""
        for loop in self._loops:
            loop.stop(drain, wait=0)
        deadline = None if wait is None else time.monotonic() + wait
        for loop in self._loops:
            loop.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))
        self._close_listeners()

    def __enter__(self) -> HttpServer:
        self.run_in_thread()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def read_stats(self) -> HttpStats:
        total = HttpStats()
        for loop in self._loops:
            total.add(loop.stats)
            total.connections_active += len(loop.conns)
        return total

    def _close_listeners(self) -> None:
        for sock in self._listeners:
            sock.close()
        self._listeners.clear()

    def emit(self, record: TransferRecord, stats: HttpStats) -> None:
        if self.on_transfer is None:
            return
        try:
            self.on_transfer(record)
        except Exception:  # a broken callback must not take the server down
            stats.internal_errors += 1


class _Loop(LoopServer):
    """One worker: a selector over the shared listeners and its own connections.

    Stopping (``LoopServer.stop``) stops accepting and closes connections that
    wait for a request; responses in progress may finish until the deadline.
    """

    def __init__(self, server: HttpServer, index: int) -> None:
        super().__init__()
        self.server = server
        self.index = index
        self.stats = HttpStats()
        self.conns: dict[int, _Connection] = {}
        self.retrying: dict[int, _Connection] = {}
        self.selector: selectors.BaseSelector | None = None
        self.listeners: list[socket.socket] = []     # the server's, until stop
        self.accept_paused_until: float | None = None
        self.next_sweep = 0.0

    # -- lifecycle (LoopServer) -------------------------------------------------------

    def open(self) -> None:
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.wake.fileno(), selectors.EVENT_READ, None)
        self.listeners = list(self.server._listeners)
        self.watch_listeners(True)
        self.next_sweep = time.monotonic() + _SWEEP_INTERVAL

    def stop_accepting(self, stop_at: float) -> None:
        self.watch_listeners(False)
        self.listeners = []
        for conn in [c for c in self.conns.values() if c.state != _SEND]:
            self.disconnect(conn)

    def busy(self) -> bool:
        return bool(self.conns)

    def close(self) -> None:
        for conn in list(self.conns.values()):
            self.abort(conn, "server stopping")
        if self.selector is not None:
            self.selector.close()

    # -- the loop -------------------------------------------------------------------

    def step(self, timeout: float) -> None:
        wait = min(timeout, _SWEEP_INTERVAL)
        if self.accept_paused_until is not None:
            wait = max(0.0, min(wait, self.accept_paused_until - time.monotonic()))
        if self.retrying:
            wait = max(0.0, min(wait, min(c.retry_at for c in self.retrying.values()) - time.monotonic()))
        for key, _mask in self.selector.select(wait):
            data = key.data
            if isinstance(data, _Connection):
                self.guarded(data, self.write if data.state == _SEND else self.read)
            elif data is None:
                self.wake.drain()
            else:
                self.accept(data)
        now = time.monotonic()
        if self.accept_paused_until is not None and now >= self.accept_paused_until:
            self.accept_paused_until = None
            self.watch_listeners(True)
        if self.retrying:
            self.retry(now)
        if now >= self.next_sweep:
            self.sweep(now)
            self.next_sweep = now + _SWEEP_INTERVAL

    def watch_listeners(self, on: bool) -> None:
        for sock in self.listeners:
            try:
                if on:
                    self.selector.register(sock, selectors.EVENT_READ, sock)
                else:
                    self.selector.unregister(sock)
            except (KeyError, ValueError):
                pass                            # already in that state

    def guarded(self, conn: _Connection, step: Callable[[_Connection], None]) -> None:
        """Run one step for one connection; a failure nobody foresaw costs that connection only."""
        try:
            step(conn)
        except Exception as exc:  # content and providers are foreign code; the loop serves everyone
            self.stats.internal_errors += 1
            self.abort(conn, f"internal error: {exc!r}")

    def retry(self, now: float) -> None:
        for conn in [c for c in self.retrying.values() if c.retry_at <= now]:
            del self.retrying[conn.fd]
            self.guarded(conn, self.answer_pending)

    def answer_pending(self, conn: _Connection) -> None:
        method, headers, path = conn.pending
        conn.pending = None
        self.set_events(conn, selectors.EVENT_READ)
        self.open_and_respond(conn, method, headers, path)

    def sweep(self, now: float) -> None:
        # A deferred request is answered by ``retry`` (at the latest header_timeout after it
        # arrived), however late in its connection's idle time it came.
        for conn in [c for c in self.conns.values() if c.deadline <= now and c.pending is None]:
            if conn.state == _LINGER:
                self.disconnect(conn)
                continue
            self.stats.timeouts += 1
            if conn.state == _HEAD:
                if conn.inbuf:
                    self.send_error_and_close(conn, 408, "request head not received in time")
                else:
                    self.disconnect(conn)
            else:
                self.abort(conn, "timeout")

    # -- connections ----------------------------------------------------------------

    def accept(self, listener: socket.socket) -> None:
        server = self.server
        admission = server._admission
        for _ in range(64):
            try:
                sock, addr = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    # Leave the connection in the backlog and stop polling the listeners for a
                    # moment: they stay readable, and retrying at once would spin.
                    self.stats.internal_errors += 1
                    if self.accept_paused_until is None:
                        self.accept_paused_until = time.monotonic() + _ACCEPT_PAUSE
                        self.watch_listeners(False)
                    return
                continue
            now = time.monotonic()
            self.stats.connections += 1
            ip = addr[0]
            with admission.lock:
                full = admission.total >= admission.max_connections
                client_full = admission.per_client.get(ip, 0) >= admission.max_per_client
                if not (full or client_full):
                    admission.total += 1
                    admission.per_client[ip] = admission.per_client.get(ip, 0) + 1
            if full or client_full:
                # Reclaim the slot of a connection that is only waiting or whose reader has stalled
                # (our loop's own; the others reclaim theirs when they accept).
                if not self.make_room(ip if client_full else None, now):
                    self.refuse_busy(sock)
                    continue
                with admission.lock:
                    admission.total += 1
                    admission.per_client[ip] = admission.per_client.get(ip, 0) + 1
            sock.setblocking(False)
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
            conn = _Connection(sock, (addr[0], addr[1]), now, server.header_timeout)
            self.conns[conn.fd] = conn
            self.selector.register(sock, selectors.EVENT_READ, conn)

    def make_room(self, ip: str | None, now: float) -> bool:
        """Close one of this loop's connections (of ``ip``, if given) to admit a new one.

        The one that moved least recently goes: a connection waiting for a request head, or a
        response whose reader has not taken a byte for ``reclaim_after`` seconds.  A response
        that moves more often than that is never cut.  False when none qualifies.
        """
        reclaim_before = now - self.server.reclaim_after
        victim = min((c for c in self.conns.values()
                      if (ip is None or c.client[0] == ip) and (c.state != _SEND or c.progress_at <= reclaim_before)),
                     key=lambda c: c.progress_at, default=None)
        if victim is None:
            return False
        if victim.state != _SEND:
            self.stats.evicted += 1
            self.disconnect(victim)
        else:
            self.stats.reclaimed += 1
            self.abort(victim, "reclaimed")
        return True

    def refuse_busy(self, sock: socket.socket) -> None:
        self.stats.refused_busy += 1
        self.count_response(503)
        try:
            sock.setblocking(False)
            sock.send(error_head(503, "too many connections", False, [("Retry-After", "1")]))
        except OSError:
            pass
        sock.close()

    def disconnect(self, conn: _Connection) -> None:
        if self.conns.pop(conn.fd, None) is None:
            return
        self.retrying.pop(conn.fd, None)
        try:
            self.selector.unregister(conn.sock)
        except (KeyError, ValueError):
            pass
        conn.sock.close()
        self.release_content(conn)
        self.server._admission.release(conn.client[0])

    def release_content(self, conn: _Connection) -> None:
        content, conn.content, conn.file_fd = conn.content, None, -1
        if content is not None:
            try:
                content.close()
            except Exception:  # foreign code
                self.stats.internal_errors += 1

    def set_events(self, conn: _Connection, events: int) -> None:
        """Watch ``events`` on the connection (0: nothing, while its request waits)."""
        if conn.registered == events:
            return
        if events == 0:
            self.selector.unregister(conn.sock)
        elif conn.registered == 0:
            self.selector.register(conn.sock, events, conn)
        else:
            self.selector.modify(conn.sock, events, conn)
        conn.registered = events

    # -- requests -------------------------------------------------------------------

    def read(self, conn: _Connection) -> None:
        try:
            data = conn.sock.recv(_RECV_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.disconnect(conn)
            return
        if not data:
            self.disconnect(conn)
            return
        if conn.state == _LINGER:
            return                          # discarded: the connection is closing
        conn.inbuf += data
        self.serve_buffered(conn)

    def serve_buffered(self, conn: _Connection) -> None:
        """Answer the complete request heads in the buffer, one after another.

        A response that goes out at once ends in ``finish``, which calls back
        here for the next pipelined request: that call returns at once and this
        loop goes on, so a long pipeline does not nest calls.
        """
        if conn.serving:
            return
        conn.serving = True
        try:
            while (conn.state == _HEAD and conn.pending is None and self.conns.get(conn.fd) is conn
                   and self.serve_next(conn)):
                pass
        finally:
            conn.serving = False

    def serve_next(self, conn: _Connection) -> bool:
        """Answer the next request head in the buffer; False while none is complete."""
        del conn.inbuf[:leading_empty_lines(conn.inbuf)]
        end = find_head_end(conn.inbuf)
        if end < 0:
            if len(conn.inbuf) > MAX_HEAD_BYTES:
                self.stats.malformed += 1
                self.send_error_and_close(conn, 431, "request head too large")
            return False
        if end > MAX_HEAD_BYTES:
            self.stats.malformed += 1
            self.send_error_and_close(conn, 431, "request head too large")
            return False
        head = bytes(conn.inbuf[:end])
        self.stats.requests += 1
        try:
            request = parse_head(head)
        except BadRequest as exc:
            self.stats.malformed += 1
            extra = [("Allow", "GET, HEAD")] if exc.status == 405 else []
            self.send_error_and_close(conn, exc.status, str(exc), extra)
            return False
        del conn.inbuf[:end]
        conn.keep_alive = request.keep_alive
        try:
            path = clean_path(request.raw_path)
        except RequestRefused as exc:
            self.refuse(conn, request.raw_path.decode("utf-8", "replace"), exc, request.method == "HEAD")
            return True
        conn.retry_until = time.monotonic() + self.server.header_timeout
        self.open_and_respond(conn, request.method, request.headers, path)
        return True

    def open_and_respond(self, conn: _Connection, method: str, headers: dict[str, str], path: str) -> None:
        is_head = method == "HEAD"
        try:
            content = self.server.provider.open(conn.client, path)
        except RetryLater as exc:
            # The provider is still learning who the client is: ask again shortly, without
            # reading further requests from this connection meanwhile.
            now = time.monotonic()
            if now >= conn.retry_until:
                self.refuse(conn, path, AccessDenied("client not identified in time"), is_head)
                return
            conn.pending = (method, headers, path)
            conn.retry_at = now + max(0.001, exc.after)
            self.retrying[conn.fd] = conn
            self.set_events(conn, 0)
            return
        except RequestRefused as exc:
            self.refuse(conn, path, exc, is_head)
            return
        except Exception as exc:  # the provider is foreign code; it must not stop the server
            self.stats.internal_errors += 1
            self.server.emit(TransferRecord(client=conn.client, path=path, outcome=f"error: internal error: {exc!r}",
                                            transport="http"), self.stats)
            self.respond(conn, 500, error_head(500, "internal error", conn.keep_alive), is_head)
            return
        self.start_response(conn, method, headers, path, content)

    def start_response(self, conn: _Connection, method: str, headers: dict[str, str], path: str,
                       content: Content) -> None:
        size = content.size
        try:
            wanted = parse_range(None if "if-range" in headers else headers.get("range"), size)
        except BadRequest as exc:
            content.close()
            self.respond(conn, 416, error_head(416, str(exc), conn.keep_alive, [("Content-Range", f"bytes */{size}")]),
                         method == "HEAD")
            return
        out_headers = [("Content-Type", content_type(path)), ("Accept-Ranges", "bytes")]
        if wanted is None:
            status, start, length = 200, 0, size
        else:
            status, start, length = 206, wanted.start, wanted.length
            out_headers.append(("Content-Range", f"bytes {wanted.start}-{wanted.end}/{size}"))
        out_headers.append(("Content-Length", str(length)))
        head = response_head(status, out_headers, conn.keep_alive)
        self.count_response(status)
        if method == "HEAD":
            content.close()
            self.send_head_only(conn, head)
            return
        conn.content = content
        fileno = getattr(content, "fileno", None)
        conn.file_fd = fileno() if callable(fileno) else -1
        conn.offset, conn.remaining = start, length
        conn.path, conn.sent, conn.whole = path, 0, status == 200
        conn.started = time.monotonic()
        conn.head_len = len(head)
        if conn.file_fd < 0 and length <= _CHUNK_BYTES:
            body = content.read_at(start, length)     # generated text: one send with the head
            conn.offset += len(body)
            conn.remaining -= len(body)
            head += body
        conn.out = memoryview(head)
        self.start_sending(conn)

    def refuse(self, conn: _Connection, path: str, exc: RequestRefused, is_head: bool) -> None:
        extra: list[tuple[str, str]] = []
        if isinstance(exc, FileNotFound):
            status, outcome, message = 404, "not-found", "no such file"
        elif isinstance(exc, AccessDenied):
            status, outcome, message = 403, "denied", "access denied"
        elif isinstance(exc, OutOfResources):   # out of file descriptors: retryable, never a 404
            status, outcome, message = 503, f"error: {exc}", "busy, retry"
            extra = [("Retry-After", "1")]
        else:
            status, outcome, message = 400, f"error: {exc}", "bad request"
        self.server.emit(TransferRecord(client=conn.client, path=path, outcome=outcome, transport="http"), self.stats)
        self.respond(conn, status, error_head(status, message, conn.keep_alive, extra), is_head)

    def respond(self, conn: _Connection, status: int, response: bytes, is_head: bool) -> None:
        """A small complete response (no content): the body is dropped for HEAD."""
        self.count_response(status)
        if is_head:
            response = response[:response.index(b"\r\n\r\n") + 4]
        self.send_head_only(conn, response)

    def send_head_only(self, conn: _Connection, data: bytes) -> None:
        conn.out = memoryview(data)
        conn.remaining = 0
        conn.path = ""
        self.start_sending(conn)

    def start_sending(self, conn: _Connection) -> None:
        conn.state = _SEND
        conn.progress_at = time.monotonic()
        conn.deadline = conn.progress_at + self.server.send_timeout
        self.write(conn)

    def send_error_and_close(self, conn: _Connection, status: int, message: str,
                             extra: list[tuple[str, str]] = ()) -> None:
        """Refuse the request (complete or not) at the start of the buffer, and close."""
        is_head = conn.inbuf.startswith(b"HEAD ")    # even a refused HEAD gets no body (RFC 9110 §9.3.2)
        conn.keep_alive = False
        conn.inbuf.clear()
        self.respond(conn, status, error_head(status, message, False, extra), is_head)

    def count_response(self, status: int) -> None:
        responses = self.stats.responses
        responses[status] = responses.get(status, 0) + 1

    # -- responses --------------------------------------------------------------------

    def write(self, conn: _Connection) -> None:
        sock = conn.sock
        progressed = False
        try:
            while conn.out:
                n = sock.send(conn.out)
                conn.out = conn.out[n:]
                conn.sent += n
                progressed = True
            while conn.remaining > 0:
                if conn.file_fd >= 0:
                    n = os.sendfile(conn.fd, conn.file_fd, conn.offset, min(conn.remaining, _SENDFILE_MAX))
                    if n == 0:
                        raise OSError(errno.EIO, "file shorter than its size")
                    conn.offset += n
                    conn.remaining -= n
                    conn.sent += n
                    progressed = True
                else:
                    chunk = conn.content.read_at(conn.offset, min(conn.remaining, _CHUNK_BYTES))
                    if not chunk:
                        raise OSError(errno.EIO, "content shorter than its size")
                    conn.offset += len(chunk)
                    conn.remaining -= len(chunk)
                    conn.out = memoryview(chunk)
                    while conn.out:
                        n = sock.send(conn.out)
                        conn.out = conn.out[n:]
                        conn.sent += n
                        progressed = True
        except (BlockingIOError, InterruptedError):
            if progressed:
                conn.progress_at = time.monotonic()
                conn.deadline = conn.progress_at + self.server.send_timeout
            self.set_events(conn, selectors.EVENT_WRITE)
            return
        except (ConnectionError, TimeoutError):
            self.abort(conn, "connection closed by client")
            return
        except OSError as exc:
            self.stats.internal_errors += 1
            self.abort(conn, f"content read failed: {exc.strerror or exc}")
            return
        self.finish(conn)

    def finish(self, conn: _Connection) -> None:
        """The response is out: record the transfer, then wait for the next request or close."""
        if conn.content is not None:
            record = self.record(conn, "complete" if conn.whole else "partial")
            self.release_content(conn)
            self.stats.transfers_complete += 1
            self.stats.bytes_sent += record.bytes_sent
            self.server.emit(record, self.stats)
        if not conn.keep_alive or self.stopping:
            self.close_lingering(conn)
            return
        now = time.monotonic()
        conn.state = _HEAD
        conn.progress_at = now
        conn.deadline = now + self.server.header_timeout
        self.set_events(conn, selectors.EVENT_READ)
        if conn.inbuf:
            self.serve_buffered(conn)       # a pipelined request

    def close_lingering(self, conn: _Connection) -> None:
        """End the connection after its last response.

        Closing a socket with unread input makes the kernel reset the connection and drop what
        it has not sent yet, the end of the response included; so when the client may still be
        sending (a pipelined request, a stray CRLF) the input is read and discarded until the
        client closes, for ``_LINGER_SECONDS`` at most (Apache's lingering close)."""
        try:
            conn.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self.disconnect(conn)
            return
        if self.stopping:
            self.disconnect(conn)
            return
        conn.state = _LINGER
        conn.inbuf.clear()
        conn.deadline = time.monotonic() + _LINGER_SECONDS
        self.set_events(conn, selectors.EVENT_READ)

    def abort(self, conn: _Connection, why: str) -> None:
        if conn.content is not None:
            self.stats.transfers_aborted += 1
            record = self.record(conn, why if why in ("timeout", "reclaimed") else f"error: {why}")
            self.stats.bytes_sent += record.bytes_sent
            self.release_content(conn)
            self.server.emit(record, self.stats)
        self.disconnect(conn)

    def record(self, conn: _Connection, outcome: str) -> TransferRecord:
        content = conn.content
        return TransferRecord(client=conn.client, path=conn.path, meta=content.meta if content is not None else {},
                              bytes_sent=max(0, conn.sent - conn.head_len),
                              size=content.size if content is not None else 0,
                              duration=time.monotonic() - conn.started, outcome=outcome, transport="http")

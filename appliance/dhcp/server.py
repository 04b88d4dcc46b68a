"""The proxyDHCP's sockets: thin I/O around ``packet`` (codec) and ``policy``.

Two UDP sockets on 0.0.0.0, both tied to the configured interface with
SO_BINDTODEVICE: the DHCP port (67; DISCOVERs are broadcast, so the socket
must be bound to the wildcard address to see them) and the PXE boot-server
port (4011; optional — if it cannot be bound, the proxy runs without it).
Replies to port 67 go to the relay (giaddr), to the client's ciaddr, or as a
broadcast to 255.255.255.255:68 — a client without an address cannot take
unicast; replies to port 4011 go back to the sender.

Every datagram is handled on its own: one that does not parse is counted as
malformed and dropped, an exception in the policy or a callback is counted
and logged; the loop goes on.  Everything is counted per datagram but logged
at most once a minute per kind (host and outcome): any LAN peer can repeat a
configured client's requests as fast as it likes.  The configuration is read
through a callable on every datagram, so a reloaded ``[hosts]`` applies at once.
"""

from __future__ import annotations

import logging
import select
import socket
from dataclasses import dataclass, replace
from typing import Callable

from ..config.model import Config
from ..logthrottle import LogThrottle
from ..wakeup import LoopServer
from . import packet as p
from .policy import DHCP_PORT, PXE_PORT, decide, seen_lease

log = logging.getLogger(__name__)

CLIENT_PORT = 68
MAX_DATAGRAM = 4096


@dataclass
class DhcpStats:
    """Counters since start (or the last reset)."""

    received: int = 0
    malformed: int = 0          # datagrams that did not parse
    ignored: int = 0            # parsed, but no reply (unknown MAC, not PXE, not a DISCOVER, ...)
    replies: int = 0
    send_errors: int = 0
    leases_seen: int = 0        # (ip, mac) learned for configured hosts
    internal_errors: int = 0    # policy / callback exceptions


def reply_destination(request: p.DhcpPacket, port: int, source: tuple[str, int]) -> tuple[str, int]:
    """Where the reply to ``request`` (received on ``port`` from ``source``) goes."""
    if port == PXE_PORT:
        return source
    if request.giaddr != "0.0.0.0":
        return request.giaddr, DHCP_PORT
    if request.ciaddr != "0.0.0.0" and not request.broadcast:
        return request.ciaddr, CLIENT_PORT
    return "255.255.255.255", CLIENT_PORT


class ProxyDhcpServer(LoopServer):
    """``start()`` binds, ``serve_forever()`` / ``run_in_thread()`` loops, ``stop()`` ends
    (``LoopServer``).

    ``on_lease(ip, mac)`` is called (from the server's thread) when a
    configured client shows which address it has taken.
    """

    thread_name = "proxydhcp"

    def __init__(self, config: Callable[[], Config], *, interface: str | None,
                 on_lease: Callable[[str, str], None] | None = None,
                 host: str = "0.0.0.0", port: int = DHCP_PORT, pxe_port: int | None = PXE_PORT,
                 client_port: int = CLIENT_PORT) -> None:
        super().__init__()
        self._config = config
        self.interface = interface
        self.on_lease = on_lease
        self.host = host
        self.port = port
        self.pxe_port = pxe_port
        self.client_port = client_port
        self.stats = DhcpStats()
        self._sockets: dict[int, tuple[socket.socket, int]] = {}    # fd → (socket, logical port)
        self._leases: dict[str, str] = {}                            # mac → ip last reported
        self._log = LogThrottle(log)

    # -- sockets -------------------------------------------------------------------

    def _bind(self, port: int) -> socket.socket:
        # No SO_REUSEADDR: beside a DHCP or PXE server that binds the port with it (dnsmasq with
        # --bind-interfaces), the kernel would hand each unicast datagram (renewals, relayed
        # requests) to one socket only, ours, which drops it.  Better the bind fails, loudly.
        # Servers tied to other interfaces (SO_BINDTODEVICE) do not conflict without it.
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
            if self.interface:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, self.interface.encode())
            sock.bind((self.host, port))
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        return sock

    def open(self) -> None:
        """Bind the DHCP port (``OSError`` if impossible) and, if possible, the PXE port."""
        main = self._bind(self.port)
        self._sockets[main.fileno()] = (main, DHCP_PORT)
        if self.pxe_port is not None:
            try:
                pxe = self._bind(self.pxe_port)
            except OSError as exc:
                log.warning("proxyDHCP: cannot bind the PXE boot-server port %s: %s (continuing without it)",
                            self.pxe_port, exc.strerror)
            else:
                self._sockets[pxe.fileno()] = (pxe, PXE_PORT)

    @property
    def addresses(self) -> list[tuple[str, int]]:
        return [s.getsockname() for s, _ in self._sockets.values()]

    def close(self) -> None:
        for sock, _ in self._sockets.values():
            sock.close()
        self._sockets.clear()

    # -- one datagram ----------------------------------------------------------------

    def handle(self, data: bytes, source: tuple[str, int], port: int, sock: socket.socket | None = None) -> None:
        """Handle one datagram that arrived on logical ``port`` (67 or 4011) from ``source``."""
        self.stats.received += 1
        try:
            request = p.parse_packet(data)
        except p.MalformedPacket as exc:
            self._drop_malformed(source, str(exc))
            return
        try:
            config = self._config()
            self._note_lease(request, config, port, source[0])
            decision = decide(request, config, port)
        except Exception:
            self.stats.internal_errors += 1
            self._log("internal", logging.ERROR, "proxyDHCP: internal error handling a request from %s:%s", *source,
                      exc_info=True)
            return
        if decision.reply is None:
            self.stats.ignored += 1
            if decision.host is not None:
                self._log((decision.host, decision.outcome), logging.INFO, "proxyDHCP: %s (%s): no reply: %s",
                          decision.host, request.mac, decision.reason)
            return
        try:
            datagram = p.encode_packet(decision.reply)
        except ValueError:
            self.stats.internal_errors += 1
            self._log("encode", logging.ERROR, "proxyDHCP: cannot encode the reply for %s", decision.host,
                      exc_info=True)
            return
        host, dport = reply_destination(request, port, source)
        if port != PXE_PORT and dport == CLIENT_PORT:
            dport = self.client_port
        if sock is None:
            sock = next((s for s, lp in self._sockets.values() if lp == port), None)
        if sock is None:
            self.stats.send_errors += 1
            return
        try:
            sock.sendto(datagram, (host, dport))
        except OSError as exc:
            self.stats.send_errors += 1
            self._log(("send", exc.errno), logging.WARNING, "proxyDHCP: sending to %s:%s failed: %s",
                      host, dport, exc.strerror)
            return
        self.stats.replies += 1
        self._log((decision.host, decision.outcome), logging.INFO, "proxyDHCP: %s (%s): %s → %s:%s",
                  decision.host, request.mac, decision.reason, host, dport)

    def _drop_malformed(self, source: tuple[str, int], why: str) -> None:
        self.stats.malformed += 1
        self._log("malformed", logging.DEBUG, "proxyDHCP: malformed datagram from %s:%s dropped: %s", *source, why)

    def _note_lease(self, request: p.DhcpPacket, config: Config, port: int, source_ip: str) -> None:
        lease = seen_lease(request, config, port, source_ip)
        if lease is None:
            return
        ip, mac = lease
        if self._leases.get(mac) == ip:
            return
        self._leases[mac] = ip
        self.stats.leases_seen += 1
        self._log(("lease", mac), logging.INFO, "proxyDHCP: %s uses %s", mac, ip)
        if self.on_lease is not None:
            try:
                self.on_lease(ip, mac)
            except Exception:   # the reply still goes out
                self.stats.internal_errors += 1
                self._log("lease callback", logging.ERROR, "proxyDHCP: lease callback failed for %s %s", ip, mac,
                          exc_info=True)

    # -- the loop ----------------------------------------------------------------------

    def step(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds and handle what has arrived (bounded per call)."""
        fds = [*self._sockets, self.wake.fileno()]
        readable, _, _ = select.select(fds, [], [], timeout)
        for fd in readable:
            if fd == self.wake.fileno():
                self.wake.drain()
                continue
            sock, port = self._sockets[fd]
            for _ in range(64):
                try:
                    data, _, flags, source = sock.recvmsg(MAX_DATAGRAM)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError as exc:
                    self._log(("receive", exc.errno), logging.WARNING, "proxyDHCP: receive failed: %s", exc.strerror)
                    break
                if flags & socket.MSG_TRUNC:
                    # Cut short by the buffer: what fitted is not what the client asked.
                    self.stats.received += 1
                    self._drop_malformed(source, f"longer than {MAX_DATAGRAM} bytes")
                    continue
                self.handle(data, source, port, sock)

    def read_stats(self, reset: bool = False) -> DhcpStats:
        """A copy of the counters; with ``reset`` the counters restart at zero."""
        current = self.stats
        if reset:
            self.stats = DhcpStats()
        return replace(current)

"""Who is asking: a TFTP client's MAC, learned before any file is served.

For a client on one of our links the MAC can always be learned, and is:

1. the source MAC of the request frame itself (``frames.FrameSources``);
2. else the kernel neighbour table (rtnetlink, ``rtnetlink.NetlinkSocket``);
3. else a neighbour solicitation: a datagram to the client makes the kernel
   resolve it (ARP / IPv6 ND) while the request waits (``RetryLater``),
   for at most ``LEARN_WITHIN`` seconds.

A client reached through a router (the routing table has a gateway for it)
or on this machine has no MAC we can see: its ``mac`` is None and the
host's ``tftp_access`` decides.  When netlink fails, on-link cannot be told
from routed: the client then counts as on-link (``must_know``) and only a
MAC seen in its frame can open a host's files; netlink is retried with
backoff and the failure is reported through ``Health``.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import threading
import time
from typing import Callable, Mapping, NamedTuple

from ..content import RetryLater
from .frames import FrameSources
from .health import Health
from .rtnetlink import RTN_UNICAST, NetlinkError, NetlinkSocket

# NUD states that carry a usable link-layer address (reachable, stale, delay, probe, permanent, noarp).
_USABLE_NUD = 0x02 | 0x04 | 0x08 | 0x10 | 0x80 | 0x40
LEARN_WITHIN = 1.0         # seconds a request may wait for its client's MAC
POLL = 0.02                # seconds between neighbour-table looks while waiting
ROUTE_TTL = 10.0           # seconds a client's on-link / routed answer is reused
BACKOFF_FIRST, BACKOFF_MAX = 0.5, 30.0
_DISCARD_PORT = 9          # RFC 863: the solicitation datagram means nothing to the client
COMPONENT = "client-mac"


def canonical_ip(ip: str) -> str:
    """Strip IPv4-mapped IPv6 (``::ffff:10.0.0.5`` → ``10.0.0.5``) and scope ids."""
    text = ip.split("%", 1)[0]
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return text
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
        return str(addr.ipv4_mapped)
    return str(addr)


class ClientLink(NamedTuple):      # a NamedTuple: defined at every start, ~15x cheaper than a dataclass
    """What is known of a client: its MAC, and whether it had to be known (on-link or undecidable)."""

    mac: str | None
    must_know: bool


class NetlinkUnavailable(Exception):
    pass


class _Netlink:
    """One rtnetlink socket, reopened after failures with exponential backoff.

    ``factory`` makes the socket (``NetlinkSocket`` or one with its
    ``route_to``/``neighbours``/``close``)."""

    def __init__(self, factory: Callable[[], NetlinkSocket] | None, health: Health,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._factory = factory
        self._health = health
        self._clock = clock
        self._sock = None
        self._retry_at = 0.0
        self._backoff = BACKOFF_FIRST

    def call(self, fn: Callable[[NetlinkSocket], object]) -> object:
        if self._sock is None:
            now = self._clock()
            if now < self._retry_at:
                raise NetlinkUnavailable()
            try:
                self._sock = self._open()
            except OSError as exc:
                self._failed(exc, now)
        try:
            result = fn(self._sock)
        except Exception as exc:     # OSError, a malformed answer: no answer now, whatever the cause
            self._failed(exc, self._clock())
        if self._backoff != BACKOFF_FIRST:
            self._backoff = BACKOFF_FIRST
        self._health.ok(COMPONENT)
        return result

    def _open(self) -> NetlinkSocket:
        return (self._factory or NetlinkSocket)()

    def _failed(self, exc: Exception, now: float) -> None:
        self.close()
        self._retry_at = now + self._backoff
        self._health.fail(COMPONENT, f"netlink: {exc or type(exc).__name__}; clients are refused unless "
                                     "their request frame shows the host's MAC (retrying)")
        self._backoff = min(self._backoff * 2, BACKOFF_MAX)
        raise NetlinkUnavailable() from exc

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            try:
                sock.close()
            except OSError:  # closing a broken socket: nothing left to do
                pass


def _is_answer(exc: Exception) -> bool:
    """A netlink error that answers the question (no route to the client), not a broken netlink."""
    return isinstance(exc, NetlinkError) and exc.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH)


class NeighbourTable:
    """``link_of(ip, port)`` → ClientLink, learning the MAC of on-link clients first.

    Used from the TFTP and HTTP threads (serialised: one netlink socket carries
    one request at a time); ``learn`` (leases seen by the proxyDHCP) from any.
    """

    def __init__(self, static: Mapping[str, str] | None = None, *, health: Health | None = None,
                 frames: FrameSources | None = None, netlink: Callable[[], NetlinkSocket] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._static = dict(static or {})      # leases seen by the proxyDHCP, tests
        self._learned: dict[str, str] = {}     # MAC → the address ``learn`` last gave it
        self.health = health or Health()
        self._frames = frames
        self._netlink = _Netlink(netlink, self.health, clock)
        self._clock = clock
        self._on_link: dict[str, tuple[bool, float]] = {}
        self._waiting: dict[tuple[str, int], float] = {}     # request → give up at
        self._solicitors: dict[int, socket.socket] = {}
        self._lock = threading.Lock()

    def connect(self) -> None:
        """Open the netlink socket now, before serving.

        A failure is then on the first readiness status, reported through
        ``Health``, and retried as usual.
        """
        with self._lock:
            try:
                self._netlink.call(lambda nl: None)
            except NetlinkUnavailable:
                pass

    def learn(self, ip: str, mac: str) -> None:
        """``mac`` now uses ``ip``.  A MAC holds one DHCP lease: the address it used before is
        forgotten (another machine may get it), so the table stays as small as the host list."""
        ip, mac = canonical_ip(ip), mac.lower()
        previous = self._learned.get(mac)
        if previous is not None and previous != ip and self._static.get(previous) == mac:
            self._static.pop(previous, None)
        self._static[ip] = mac
        self._learned[mac] = ip

    def use_frames(self, frames: FrameSources) -> None:
        if self._frames is not None:
            self._frames.close()
        self._frames = frames

    def lease_of(self, ip: str) -> str | None:
        return self._static.get(canonical_ip(ip))

    def link_of(self, ip: str, port: int) -> ClientLink:
        """The client's MAC; raises ``RetryLater`` while an on-link client's MAC is being learned."""
        with self._lock:
            return self._link_of(ip, port)

    def _link_of(self, ip: str, port: int) -> ClientLink:
        ip = canonical_ip(ip)
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return ClientLink(None, True)
        seen = self._frames.mac_of(ip, port) if self._frames is not None else None
        try:
            on_link = self._is_on_link(addr)
        except NetlinkUnavailable:
            return ClientLink(seen, True)      # cannot tell routed from on-link: strict
        if not on_link:
            return ClientLink(self._static.get(ip), False)
        if seen is not None:
            self._waiting.pop((ip, port), None)
            return ClientLink(seen, True)
        try:
            mac = self._kernel_mac(ip, addr.version)
        except NetlinkUnavailable:
            mac = None
        if mac is None:
            mac = self._static.get(ip)
        if mac is not None:
            self._waiting.pop((ip, port), None)
            return ClientLink(mac, True)
        self._wait_for(ip, port, addr.version)
        return ClientLink(None, True)

    def _wait_for(self, ip: str, port: int, version: int) -> None:
        """Solicit the neighbour entry on first sight and defer the request; give up after LEARN_WITHIN."""
        now = self._clock()
        key = (ip, port)
        give_up = self._waiting.get(key)
        if give_up is None:
            if len(self._waiting) > 1024:
                self._waiting = {k: t for k, t in self._waiting.items() if t > now}
            self._waiting[key] = now + LEARN_WITHIN
            self._solicit(ip, version)
            raise RetryLater(POLL)
        if now < give_up:
            raise RetryLater(POLL)
        del self._waiting[key]

    def _solicit(self, ip: str, version: int) -> None:
        family = socket.AF_INET6 if version == 6 else socket.AF_INET
        sock = self._solicitors.get(family)
        try:
            if sock is None:
                sock = socket.socket(family, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
                self._solicitors[family] = sock
            sock.sendto(b"", (ip, _DISCARD_PORT))
        except OSError:
            pass   # the neighbour table may still fill from the client's own traffic

    def _is_on_link(self, addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        ip = str(addr)
        if addr.version == 6 and addr.is_link_local:
            return True
        now = self._clock()
        cached = self._on_link.get(ip)
        if cached is not None and cached[1] > now:
            return cached[0]

        def lookup(nl: NetlinkSocket) -> bool:
            try:
                routes = nl.route_to(ip)
            except OSError as exc:
                if _is_answer(exc):
                    return False        # unreachable: certainly not on a link of ours
                raise
            return any(r.type == RTN_UNICAST and r.gateway is None for r in routes)

        on_link = bool(self._netlink.call(lookup))
        if len(self._on_link) > 4096:
            self._on_link.clear()
        self._on_link[ip] = (on_link, now + ROUTE_TTL)
        return on_link

    def _kernel_mac(self, ip: str, version: int) -> str | None:
        def lookup(nl: NetlinkSocket) -> str | None:
            family = socket.AF_INET6 if version == 6 else socket.AF_INET
            for entry in nl.neighbours(family):
                if entry.address == ip and entry.state & _USABLE_NUD:
                    if entry.lladdr and entry.lladdr != "00:00:00:00:00:00":
                        return entry.lladdr
            return None

        return self._netlink.call(lookup)  # type: ignore[return-value]

    def close(self) -> None:
        self._netlink.close()
        if self._frames is not None:
            self._frames.close()
        for sock in self._solicitors.values():
            sock.close()
        self._solicitors.clear()

"""A UDP proxy on loopback that injects faults: random drop, duplication and
reordering, a total outage, and the loss of the first ACKs of one block.

    client ──▶ front (listen) ──▶ upstream socket per client ──▶ server port
    client ◀── front socket per server TID ◀──────────────────── server TID

Each server TID is mirrored by its own front socket, so the client sees the
same "new port per session" behaviour as without the proxy.  Impairments are
drawn from a seeded ``random.Random``; only loopback addresses are used.

- ``outage``: after ``outage_after`` datagrams from the server, every datagram
  in both directions is dropped for ``outage`` seconds (a cable pulled, a
  switch rebooting);
- ``ack_losses``: the first ACK the client sends for a block at or above
  ``ack_loss_block`` and its next ``ack_losses - 1`` repetitions are dropped
  (the server must retransmit that block that many times).
"""

from __future__ import annotations

import random
import select
import socket
import threading
import time
from dataclasses import dataclass


@dataclass
class Impairment:
    drop: float = 0.10
    duplicate: float = 0.05
    reorder: float = 0.05       # hold a datagram back until the next one on that path
    outage: float = 0.0         # seconds without any datagram, both ways
    outage_after: int = 40      # server datagrams forwarded before the outage starts
    ack_losses: int = 0         # ACKs of one block lost in a row
    ack_loss_block: int = 20


class LossyProxy:
    def __init__(self, server: tuple[str, int], impairment: Impairment, seed: int = 1) -> None:
        self.server = server
        self.impairment = impairment
        self.rng = random.Random(seed)
        self.front = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.front.bind(("127.0.0.1", 0))
        self.address = self.front.getsockname()
        self._upstream: dict[tuple, socket.socket] = {}          # client → socket towards server
        self._upstream_client: dict[socket.socket, tuple] = {}
        self._mirror: dict[tuple, socket.socket] = {}            # (client, server TID) → front socket
        self._mirror_route: dict[socket.socket, tuple] = {}      # front socket → (client, server TID)
        self._held: dict[int, tuple[socket.socket, bytes, tuple]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.counts = {"forwarded": 0, "dropped": 0, "duplicated": 0, "reordered": 0,
                       "outage_dropped": 0, "acks_dropped": 0}
        self._from_server = 0
        self._outage_until: float | None = None
        self._ack_block: int | None = None

    def __enter__(self) -> LossyProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        for sock in [self.front, *self._upstream.values(), *self._mirror.values()]:
            sock.close()

    def _faulted(self, data: bytes, from_server: bool) -> bool:
        """Whether the scripted faults (outage, ACK loss) swallow this datagram."""
        imp = self.impairment
        if imp.outage > 0:
            now = time.monotonic()
            if self._outage_until is None and from_server:
                self._from_server += 1
                if self._from_server > imp.outage_after:
                    self._outage_until = now + imp.outage
            if self._outage_until is not None and now < self._outage_until:
                self.counts["outage_dropped"] += 1
                return True
        if imp.ack_losses and not from_server and data[:2] == b"\0\4" and len(data) >= 4:
            block = int.from_bytes(data[2:4], "big")
            if self._ack_block is None and block >= imp.ack_loss_block:
                self._ack_block = block
            if block == self._ack_block and self.counts["acks_dropped"] < imp.ack_losses:
                self.counts["acks_dropped"] += 1
                return True
        return False

    def _forward(self, path: int, sock: socket.socket, data: bytes, to: tuple, from_server: bool = False) -> None:
        if self._faulted(data, from_server):
            return
        r = self.rng.random()
        imp = self.impairment
        if r < imp.drop:
            self.counts["dropped"] += 1
            return
        held = self._held.pop(path, None)
        if r < imp.drop + imp.reorder and held is None:
            self._held[path] = (sock, data, to)
            self.counts["reordered"] += 1
            return
        copies = 2 if r > 1.0 - imp.duplicate else 1
        self.counts["duplicated"] += copies - 1
        for _ in range(copies):
            sock.sendto(data, to)
        if held is not None:
            held[0].sendto(held[1], held[2])
        self.counts["forwarded"] += 1

    def _run(self) -> None:
        while not self._stop.is_set():
            sockets = [self.front, *self._upstream.values(), *self._mirror.values()]
            readable, _, _ = select.select(sockets, [], [], 0.05)
            if not readable:
                # Release held datagrams when a path goes quiet, so nothing waits forever.
                for path, (sock, data, to) in list(self._held.items()):
                    sock.sendto(data, to)
                    del self._held[path]
            for sock in readable:
                try:
                    data, addr = sock.recvfrom(65536)
                except OSError:
                    continue
                if sock is self.front:                    # new request from a client
                    upstream = self._upstream.get(addr)
                    if upstream is None:
                        upstream = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                        upstream.bind(("127.0.0.1", 0))
                        self._upstream[addr] = upstream
                        self._upstream_client[upstream] = addr
                    self._forward(hash((addr, "up")), upstream, data, self.server)
                elif sock in self._upstream_client:       # server → client
                    client = self._upstream_client[sock]
                    mirror = self._mirror.get((client, addr))
                    if mirror is None:
                        mirror = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                        mirror.bind(("127.0.0.1", 0))
                        self._mirror[(client, addr)] = mirror
                        self._mirror_route[mirror] = (client, addr)
                    self._forward(hash((client, addr, "down")), mirror, data, client, from_server=True)
                else:                                      # client → server TID
                    client, server_tid = self._mirror_route[sock]
                    if addr != client:
                        continue
                    self._forward(hash((client, server_tid, "up")), self._upstream[client], data, server_tid)

"""A UDP proxy on loopback that drops, duplicates and reorders datagrams.

    client ──▶ front (listen) ──▶ upstream socket per client ──▶ server port
    client ◀── front socket per server TID ◀──────────────────── server TID

Each server TID is mirrored by its own front socket, so the client sees the
same "new port per session" behaviour as without the proxy.  Impairments are
drawn from a seeded ``random.Random``; only loopback addresses are used.
"""

from __future__ import annotations

import random
import select
import socket
import threading
from dataclasses import dataclass


@dataclass
class Impairment:
    drop: float = 0.10
    duplicate: float = 0.05
    reorder: float = 0.05       # hold a datagram back until the next one on that path


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
        self.counts = {"forwarded": 0, "dropped": 0, "duplicated": 0, "reordered": 0}

    def __enter__(self) -> LossyProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        for sock in [self.front, *self._upstream.values(), *self._mirror.values()]:
            sock.close()

    def _forward(self, path: int, sock: socket.socket, data: bytes, to: tuple) -> None:
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
                    self._forward(hash((client, addr, "down")), mirror, data, client)
                else:                                      # client → server TID
                    client, server_tid = self._mirror_route[sock]
                    if addr != client:
                        continue
                    self._forward(hash((client, server_tid, "up")), self._upstream[client], data, server_tid)

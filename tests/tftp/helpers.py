"""Helpers for the TFTP tests: a server on 127.0.0.1:0, raw UDP peers, binaries."""

from __future__ import annotations

import os
import shutil
import socket
from contextlib import contextmanager
from collections.abc import Iterator

import pytest

from helpers import WAIT_DEADLINE, eventually, poll
from appliance.content import DictProvider, TransferRecord
from appliance.tftp import TftpServer
from appliance.tftp.packets import Packet, parse_packet


def require_binary(name: str) -> str:
    """Path of ``name``; skips when absent locally, fails loudly under CI=true."""
    path = shutil.which(name)
    if path:
        return path
    message = f"{name} is not installed (apt-get install -y curl tftp-hpa atftp)"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message)
    pytest.skip(message)


class Served:
    """A running server plus the records it emitted."""

    def __init__(self, server: TftpServer, records: list[TransferRecord]) -> None:
        self.server = server
        self.records = records
        self.address = server.addresses[0]
        self.port = self.address[1]

    def wait_records(self, count: int, timeout: float = WAIT_DEADLINE) -> list[TransferRecord]:
        """The records so far, once there are ``count`` or ``timeout`` has passed."""
        poll(lambda: len(self.records) >= count, timeout)
        return list(self.records)


@contextmanager
def serving(files: dict, listen: tuple[str, ...] = ("127.0.0.1:0",), **options) -> Iterator[Served]:
    records: list[TransferRecord] = []
    server = TftpServer(DictProvider(files), listen=listen, on_transfer=records.append, **options)
    server.run_in_thread()
    try:
        eventually(lambda: len(server.worker_pids()) == server.workers, what="transfer workers to start")
        yield Served(server, records)
    finally:
        server.stop(wait=10)


class RawPeer:
    """A UDP socket on 127.0.0.1 for hand-made datagrams."""

    def __init__(self, family: int = socket.AF_INET) -> None:
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.bind(("::1" if family == socket.AF_INET6 else "127.0.0.1", 0))
        self.sock.settimeout(2.0)

    @property
    def port(self) -> int:
        return self.sock.getsockname()[1]

    def send(self, datagram: bytes, address: tuple[str, int]) -> None:
        self.sock.sendto(datagram, address)

    def recv(self, timeout: float = 10.0) -> tuple[Packet, tuple[str, int]]:
        """The next datagram; the default bound is for an answer a loaded machine may delay."""
        self.sock.settimeout(timeout)
        data, addr = self.sock.recvfrom(65536)
        return parse_packet(data), (addr[0], addr[1])

    def recv_nothing(self, wait: float = 0.3) -> bool:
        self.sock.settimeout(wait)
        try:
            self.sock.recvfrom(65536)
        except socket.timeout:
            return True
        return False

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawPeer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

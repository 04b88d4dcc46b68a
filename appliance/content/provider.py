"""What a transport (TFTP, HTTP) serves, behind a narrow interface.

Transports never know about hosts, generations or the Nix store: they ask a
``ContentProvider`` for a ``Content`` by (client, cleaned path) and stream it
with positional reads.  Providers signal the two answers a client may see with
``FileNotFound`` (TFTP error 1, HTTP 404) and ``AccessDenied`` (TFTP error 2,
HTTP 403); any other exception is an internal error, counted by the transport.

    RequestRefused            refusal of one request
    ├── FileNotFound          no such file (for this client)
    └── AccessDenied          the file exists but not for this client

``FileContent``, ``BytesContent``, ``DictProvider`` and ``DirectoryProvider``
are small ready-made implementations (tests, the demo, the benchmark).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Protocol, runtime_checkable

__all__ = [
    "AccessDenied",
    "BytesContent",
    "Content",
    "ContentProvider",
    "DictProvider",
    "DirectoryProvider",
    "FileContent",
    "FileNotFound",
    "RequestRefused",
    "TransferRecord",
]

_EMPTY_META: Mapping[str, object] = MappingProxyType({})


class RequestRefused(Exception):
    """A request is refused; the transport answers with its own error for the subclass."""


class FileNotFound(RequestRefused):
    pass


class AccessDenied(RequestRefused):
    pass


@runtime_checkable
class Content(Protocol):
    size: int                       # total bytes
    meta: Mapping[str, object]      # opaque to transports, copied into the TransferRecord

    def read_at(self, offset: int, n: int) -> bytes: ...   # positional read, streaming

    def close(self) -> None: ...


@runtime_checkable
class ContentProvider(Protocol):
    def open(self, client: tuple[str, int], path: str) -> Content: ...


@dataclass(frozen=True)
class TransferRecord:
    """One per finished or aborted transfer (the source of boot events).

    ``outcome`` says why it ended: "complete" | "early-terminate" |
    "timeout" (no progress for the give-up time) | "reclaimed" (a stalled
    session ended to make room under load) | "error: ..." | "not-found" |
    "denied".  ``bytes_sent`` counts payload bytes the client acknowledged (so
    a complete transfer has ``bytes_sent == size``).
    ``blksize`` and ``windowsize`` are TFTP's negotiated values (0 elsewhere);
    ``retransmissions`` counts datagrams sent again after a timeout;
    ``transport`` names the protocol that carried the transfer.
    """

    client: tuple[str, int]
    path: str
    meta: Mapping[str, object]
    bytes_sent: int
    size: int
    duration: float
    outcome: str
    blksize: int = 0
    windowsize: int = 0
    transport: str = "tftp"
    retransmissions: int = 0


class BytesContent:
    """Generated content held in memory."""

    __slots__ = ("_data", "size", "meta")

    def __init__(self, data: bytes, meta: Mapping[str, object] | None = None) -> None:
        self._data = bytes(data)
        self.size = len(self._data)
        self.meta = _EMPTY_META if meta is None else meta

    def read_at(self, offset: int, n: int) -> bytes:
        return self._data[offset:offset + n]

    def close(self) -> None:
        pass


class FileContent:
    """A regular file read with ``os.pread`` (never loaded whole).

    Given a path it opens (and owns) the fd; given an fd it takes ownership of
    it.  Anything but a regular file is ``FileNotFound``.
    """

    __slots__ = ("_fd", "size", "meta")

    def __init__(self, path_or_fd: str | os.PathLike[str] | int,
                 meta: Mapping[str, object] | None = None) -> None:
        if isinstance(path_or_fd, int):
            fd = path_or_fd
        else:
            try:
                fd = os.open(path_or_fd, os.O_RDONLY | os.O_CLOEXEC)
            except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as exc:
                raise FileNotFound(f"{os.fspath(path_or_fd)}: {exc.strerror}") from exc
            except PermissionError as exc:
                raise AccessDenied(f"{os.fspath(path_or_fd)}: {exc.strerror}") from exc
        try:
            info = os.fstat(fd)
        except OSError:
            os.close(fd)
            raise
        if not stat.S_ISREG(info.st_mode):
            os.close(fd)
            raise FileNotFound(f"{path_or_fd}: not a regular file")
        self._fd = fd
        self.size = info.st_size
        self.meta = _EMPTY_META if meta is None else meta

    def read_at(self, offset: int, n: int) -> bytes:
        return os.pread(self._fd, n, offset)

    def close(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)

    def __del__(self) -> None:  # last resort; the server always calls close()
        try:
            self.close()
        except (OSError, AttributeError):
            pass


@dataclass
class DictProvider:
    """Serves a fixed mapping: cleaned path → bytes (generated) or a file path."""

    files: Mapping[str, bytes | str | os.PathLike[str]]
    meta: Mapping[str, object] = field(default_factory=dict)

    def open(self, client: tuple[str, int], path: str) -> Content:
        try:
            source = self.files[path]
        except KeyError:
            raise FileNotFound(path) from None
        if isinstance(source, (bytes, bytearray, memoryview)):
            return BytesContent(bytes(source), self.meta)
        return FileContent(source, self.meta)


class DirectoryProvider:
    """Serves regular files below ``root`` (like ``tftpd -s root``).

    Containment is checked on the resolved path with ``commonpath``, not by
    string prefix, so symlinks cannot lead outside the root.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = os.path.realpath(root)

    def open(self, client: tuple[str, int], path: str) -> Content:
        real = os.path.realpath(os.path.join(self.root, path))
        if os.path.commonpath([self.root, real]) != self.root:
            raise AccessDenied(f"{path}: outside the served directory")
        return FileContent(real, {"path": path})

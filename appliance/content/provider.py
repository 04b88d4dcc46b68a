"""What a transport (TFTP, HTTP) serves, behind a narrow interface.

Transports never know about hosts, generations or the Nix store: they ask a
``ContentProvider`` for a ``Content`` by (client, cleaned path) and stream it
with positional reads.  Providers signal the two answers a client may see with
``FileNotFound`` (TFTP error 1, HTTP 404) and ``AccessDenied`` (TFTP error 2,
HTTP 403); any other exception is an internal error, counted by the transport.

    RequestRefused            refusal of one request
    ├── FileNotFound          no such file (for this client)
    ├── AccessDenied          the file exists but not for this client
    └── OutOfResources        the file cannot be opened right now (no file
                              descriptors left): the client should retry
    RetryLater                no answer yet: the transport asks again after
                              ``after`` seconds, serving other clients meanwhile

``FileContent``, ``BytesContent``, ``DictProvider`` and ``DirectoryProvider``
are small ready-made implementations (tests, the demo, the benchmark).
"""

from __future__ import annotations

import errno
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
    "OutOfResources",
    "RequestRefused",
    "RetryLater",
    "TransferRecord",
]

_EMPTY_META: Mapping[str, object] = MappingProxyType({})


class RequestRefused(Exception):
    """A request is refused; the transport answers with its own error for the subclass."""


class FileNotFound(RequestRefused):
    pass


class AccessDenied(RequestRefused):
    pass


class OutOfResources(RequestRefused):
    """Out of file descriptors (or kernel memory): not the client's fault, and
    never "file not found" — a transport answers with something retryable."""


class RetryLater(Exception):
    """The provider cannot decide yet (e.g. it is still learning who the client is).

    The transport keeps the request, answers nothing, and calls ``open``
    again after ``after`` seconds; the provider must end the wait itself
    (answer or refuse) within a bounded time.
    """

    def __init__(self, after: float) -> None:
        super().__init__(f"retry after {after:g} s")
        self.after = after


_EXHAUSTED = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})


def _refusal(exc: OSError, path: object, resolved: bool) -> Exception:
    """The refusal a failed open means for the client (or ``exc`` itself if none fits)."""
    where = os.fspath(path) if isinstance(path, (str, os.PathLike)) else str(path)
    if exc.errno in _EXHAUSTED:
        return OutOfResources(f"{where}: {exc.strerror}")
    if resolved and exc.errno in (errno.ELOOP, errno.ENOTDIR):
        # The path was resolved (no symlinks) when it was validated: now a
        # component is a symlink or not a directory — something was swapped in.
        return AccessDenied(f"{where}: a path component was replaced (symlink or non-directory) "
                            "after validation; not following it")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return AccessDenied(f"{where}: {exc.strerror}")
    if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.ELOOP, errno.ENAMETOOLONG):
        return FileNotFound(f"{where}: {exc.strerror}")
    return exc


def open_resolved(path: str | os.PathLike[str]) -> int:
    """Open the file at an absolute, already resolved ``path`` following no symlink.

    Each component is opened relative to the previous one with ``O_NOFOLLOW``,
    so a directory or the file itself replaced by a symlink after the path was
    checked (e.g. for lying inside the Nix store) makes the open fail
    (ELOOP/ENOTDIR) instead of leading somewhere else.  ``O_NONBLOCK`` keeps a
    FIFO from blocking the caller (it is then refused as not a regular file).
    """
    text = os.fspath(path)
    parts = [p for p in text.split("/") if p not in ("", ".")]
    if not text.startswith("/") or not parts or ".." in parts:
        raise ValueError(f"{text!r} is not an absolute resolved path")
    directory = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for name in parts[:-1]:
            child = os.open(name, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=directory)
            os.close(directory)
            directory = child
        return os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=directory)
    finally:
        os.close(directory)


@runtime_checkable
class Content(Protocol):
    size: int                       # total bytes
    meta: Mapping[str, object]      # opaque to transports, copied into the TransferRecord

    def read_at(self, offset: int, n: int) -> bytes: ...   # positional read, streaming

    def close(self) -> None: ...


@runtime_checkable
class ContentProvider(Protocol):
    def open(self, client: tuple[str, int], path: str) -> Content: ...


@dataclass(frozen=True, kw_only=True)
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
    meta: Mapping[str, object] = field(default_factory=dict)
    bytes_sent: int = 0
    size: int = 0
    duration: float = 0.0
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
    it.  Anything but a regular file is ``FileNotFound``; running out of file
    descriptors is ``OutOfResources``.  ``FileContent.resolved(path)`` opens a
    path resolved and validated earlier without following symlinks
    (``open_resolved``).
    """

    __slots__ = ("_fd", "size", "meta")

    def __init__(self, path_or_fd: str | os.PathLike[str] | int,
                 meta: Mapping[str, object] | None = None) -> None:
        if isinstance(path_or_fd, int):
            fd = path_or_fd
        else:
            try:
                fd = os.open(path_or_fd, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            except OSError as exc:
                raise _refusal(exc, path_or_fd, resolved=False) from exc
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

    @classmethod
    def resolved(cls, path: str | os.PathLike[str], meta: Mapping[str, object] | None = None) -> FileContent:
        try:
            fd = open_resolved(path)
        except OSError as exc:
            raise _refusal(exc, path, resolved=True) from exc
        return cls(fd, meta)

    def read_at(self, offset: int, n: int) -> bytes:
        return os.pread(self._fd, n, offset)

    def fileno(self) -> int:
        """The open file, for zero-copy ``os.sendfile`` (owned by this object)."""
        return self._fd

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
    string prefix, so symlinks cannot lead outside the root; the resolved
    path is then opened without following symlinks, so one swapped in
    between the check and the open is refused.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = os.path.realpath(root)

    def open(self, client: tuple[str, int], path: str) -> Content:
        real = os.path.realpath(os.path.join(self.root, path))
        if os.path.commonpath([self.root, real]) != self.root:
            raise AccessDenied(f"{path}: outside the served directory")
        return FileContent.resolved(real, {"path": path})

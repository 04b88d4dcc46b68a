"""An exclusive ``flock`` on a lock file: one writer at a time across processes."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


class FileLock:
    """``FileLock.open(path)`` opens (creating) the lock file, raising ``OSError``
    for the caller to translate; ``with lock:`` holds the lock, and leaving
    the block closes the file, which releases it."""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    @classmethod
    def open(cls, path: Path, mode: int = 0o600) -> "FileLock":
        return cls(os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, mode))

    def __enter__(self) -> "FileLock":
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(self._fd)
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        os.close(self._fd)

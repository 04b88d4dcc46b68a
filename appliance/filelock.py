"""An exclusive ``flock`` on a lock file: one writer at a time across processes."""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path


class LockTimeout(OSError):
    """Another process held the lock for the whole wait."""


class FileLock:
    """``FileLock.open(path)`` opens (creating) the lock file, raising ``OSError``
    for the caller to translate; ``with lock:`` holds the lock, and leaving
    the block closes the file, which releases it.  With ``wait`` (seconds),
    entering raises ``LockTimeout`` when the lock stays taken that long."""

    POLL = 0.05

    def __init__(self, fd: int, wait: float | None = None) -> None:
        self._fd = fd
        self._wait = wait

    @classmethod
    def open(cls, path: Path, mode: int = 0o600, wait: float | None = None) -> "FileLock":
        return cls(os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, mode), wait)

    def __enter__(self) -> "FileLock":
        try:
            if self._wait is None:
                fcntl.flock(self._fd, fcntl.LOCK_EX)
            else:
                self._acquire_within(self._wait)
        except BaseException:
            os.close(self._fd)
            raise
        return self

    def _acquire_within(self, wait: float) -> None:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise LockTimeout(f"held by another process for {wait:g} s") from None
                time.sleep(self.POLL)

    def __exit__(self, *exc_info: object) -> None:
        os.close(self._fd)

"""An exclusive ``flock`` on a lock file: one writer at a time across processes."""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

PROC_LOCKS = Path("/proc/locks")


class LockTimeout(OSError):
    """Another process held the lock for the whole wait; ``holder`` says which, when known."""

    def __init__(self, wait: float, holder: str | None) -> None:
        self.wait = wait
        self.holder = holder
        super().__init__(f"held by {holder or 'another process'} for {wait:g} s")


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
                    raise LockTimeout(wait, lock_holder(self._fd)) from None
                time.sleep(self.POLL)

    def __exit__(self, *exc_info: object) -> None:
        os.close(self._fd)


def lock_holder(fd: int) -> str | None:
    """``pid 1234 (netboot iscsi apply)``: the process holding a flock on ``fd``'s file, read
    from /proc/locks (proc(5)); None when it cannot be told (no procfs, another PID namespace)."""
    try:
        st = os.fstat(fd)
        pids = flock_holders(PROC_LOCKS.read_text(), os.major(st.st_dev), os.minor(st.st_dev), st.st_ino)
    except (OSError, ValueError):
        return None
    if not pids:
        return None
    try:
        with open(f"/proc/{pids[0]}/cmdline", "rb") as f:
            argv = f.read(4096).rstrip(b"\0").split(b"\0")
    except OSError:      # gone meanwhile, or not ours to read
        return f"pid {pids[0]}"
    # One line, whatever the arguments hold (``python -c`` scripts have newlines).
    command = " ".join(b" ".join(argv).decode(errors="replace").split())
    if len(command) > 160:
        command = command[:157] + "…"
    return f"pid {pids[0]} ({command})"


def flock_holders(proc_locks: str, major: int, minor: int, inode: int) -> list[int]:
    """The PIDs holding a FLOCK on the file ``major:minor:inode``, from /proc/locks text
    (``1: FLOCK  ADVISORY  WRITE 1234 fe:00:2146515 0 EOF``; ``->`` lines are waiters)."""
    pids = []
    for line in proc_locks.splitlines():
        fields = line.split()
        if len(fields) < 6 or fields[1] != "FLOCK":
            continue
        try:
            pid = int(fields[4])
            dev_major, dev_minor, ino = fields[5].split(":")
            if (int(dev_major, 16), int(dev_minor, 16), int(ino)) == (major, minor, inode) and pid > 0:
                pids.append(pid)
        except ValueError:
            continue
    return pids

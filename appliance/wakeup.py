"""Waking a loop blocked in select/epoll from another thread or a signal handler.

``WakePipe`` is the self-pipe every loop here shares (TFTP, HTTP, proxyDHCP,
the control loop); ``LoopServer`` adds the thread / stop lifecycle of a
server whose loop is ``step(timeout)``.
"""

from __future__ import annotations

import errno
import os
import threading


class WakePipe:
    """A non-blocking pipe: ``wake()`` from anywhere, the loop polls ``fileno()`` and ``drain()``s."""

    def __init__(self) -> None:
        self._read = self._write = -1

    def open(self) -> None:
        if self._read < 0:
            self._read, self._write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    def fileno(self) -> int:
        return self._read

    @property
    def is_open(self) -> bool:
        return self._read >= 0

    def wake(self) -> None:
        """Async-signal-safe: one write; a full pipe means the loop is awake already."""
        if self._write >= 0:
            try:
                os.write(self._write, b"x")
            except OSError:
                pass

    def drain(self) -> None:
        try:
            os.read(self._read, 512)
        except OSError:
            pass

    def close(self) -> None:
        for fd in (self._read, self._write):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError as exc:
                    if exc.errno != errno.EBADF:   # already closed (a forked worker's copy)
                        raise
        self._read = self._write = -1


class LoopServer:
    """``open()`` binds (errors reach the caller), ``serve_forever()`` runs
    ``step()`` until ``stop()`` (any thread), ``run_in_thread()`` does both.

    Subclasses implement ``open``, ``close`` and ``step``; ``step`` must
    include ``self.wake`` among what it waits on and ``drain()`` it.
    """

    thread_name = "server"

    def __init__(self) -> None:
        self.wake = WakePipe()
        self._stopping = False
        self._thread: threading.Thread | None = None

    def open(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def step(self, timeout: float) -> None:
        raise NotImplementedError

    def serve_forever(self) -> None:
        self.open()
        try:
            while not self._stopping:
                self.step(1.0)
        finally:
            self.close()

    def run_in_thread(self, name: str | None = None) -> threading.Thread:
        """Bind now (so errors surface to the caller) and serve in a daemon thread."""
        self.open()
        self._thread = threading.Thread(target=self.serve_forever, name=name or self.thread_name, daemon=True)
        self._thread.start()
        return self._thread

    def stop(self, wait: float = 5.0) -> None:
        self._stopping = True
        self.wake.wake()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(wait)
            self._thread = None
        elif self._thread is None:
            self.close()

"""Waking a loop blocked in select/epoll from another thread or a signal handler.

``WakePipe`` is the self-pipe every loop here shares (TFTP, HTTP, proxyDHCP,
the control loop); ``LoopServer`` is the one start / serve / drain / stop
lifecycle of the servers whose loop is ``step(timeout)``.
"""

from __future__ import annotations

import errno
import os
import threading
import time


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
    """The lifecycle of a server loop: bind, serve, drain, close.

    ``start()`` binds (errors reach the caller; once it returns the sockets
    queue what arrives, so readiness may be signalled).  ``serve_forever()``
    binds if needed and runs ``step()`` until ``stop()``; ``run_in_thread()``
    binds in the caller's thread and serves in a daemon thread.

    ``stop(drain, wait)`` may be called from any thread, from a callback
    inside the loop and from a signal handler: the loop stops accepting new
    work (``stop_accepting``), lets running work finish until the drain
    deadline (while ``busy()``, plus ``stop_grace()``), then ``close()``
    aborts the rest.  From another thread ``stop`` waits up to ``wait``
    seconds for that; from the loop's own thread it returns at once.  A
    server is used once: after ``stop()`` it does not start again.

    Subclasses implement ``open`` (bind; on failure release what was bound
    and raise), ``step`` (wait at most ``timeout`` on its sockets and
    ``self.wake``, ``drain()`` the latter, handle what arrived) and ``close``
    (abort what still runs and release everything; also called when
    ``open`` was not); ``stop_accepting``, ``busy`` and ``stop_grace`` when
    work may outlive ``stop()``.
    """

    thread_name = "server"
    idle_wait = 1.0          # seconds per step() while serving; stop() wakes it at once
    drain_poll = 0.05        # at most this long per step() while draining

    def __init__(self) -> None:
        self.wake = WakePipe()
        # Reentrant: stop() may run in a signal handler on the thread that holds it.
        self._lock = threading.RLock()
        self._stop_at: float | None = None     # the drain deadline, once stop() was called
        self._opened = False
        self._closed = False
        self._serving = False
        self._loop_thread: int | None = None
        self._finished = threading.Event()

    # -- what a server implements ----------------------------------------------------

    def open(self) -> None:
        raise NotImplementedError

    def step(self, timeout: float) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def stop_accepting(self, stop_at: float) -> None:
        """Called once in the loop after ``stop()``: take no new work (``stop_at``: the drain deadline)."""

    def busy(self) -> bool:
        """Whether work that a drain lets finish is still running."""
        return False

    def stop_grace(self) -> float:
        """How long after the drain deadline the loop still runs (to collect reports of aborted work)."""
        return 0.0

    # -- the lifecycle ---------------------------------------------------------------

    def start(self) -> None:
        """Bind (once); raises what ``open`` raises."""
        with self._lock:
            if self._opened or self._closed:
                return
            self.wake.open()
            try:
                self.open()
            except BaseException:
                self.wake.close()
                raise
            self._opened = True

    def serve_forever(self) -> None:
        """Run the loop until ``stop()``; then drain, abort the rest and close."""
        self.start()
        with self._lock:
            if self._closed:
                return
            self._serving = True
            self._loop_thread = threading.get_ident()
        try:
            self._loop()
        finally:
            self._finish()

    def run_in_thread(self, name: str | None = None) -> threading.Thread:
        """Bind now (so errors surface to the caller) and serve in a daemon thread."""
        self.start()
        with self._lock:
            self._serving = not self._closed      # from now on stop() waits for the thread
        thread = threading.Thread(target=self.serve_forever, name=name or self.thread_name, daemon=True)
        thread.start()
        return thread

    def stop(self, drain: float = 0.0, wait: float | None = 10.0) -> None:
        """Stop accepting; let running work finish for up to ``drain`` seconds, then abort it."""
        with self._lock:
            if self._stop_at is None:
                self._stop_at = time.monotonic() + max(0.0, drain)
            looping = self._serving
            self.wake.wake()        # under the lock: the pipe is not closed meanwhile
        if looping:
            self.wait(wait)
        else:
            self._finish()

    @property
    def stopping(self) -> bool:
        """``stop()`` was called: take no new work."""
        return self._stop_at is not None

    def wait(self, timeout: float | None) -> bool:
        """Wait until the loop has closed (at once from the loop's own thread); whether it has."""
        if threading.get_ident() == self._loop_thread:
            return False
        return self._finished.wait(timeout)

    def __enter__(self):
        self.run_in_thread()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _loop(self) -> None:
        accepting = True
        while True:
            stop_at = self._stop_at
            if stop_at is None:
                self.step(self.idle_wait)
                continue
            if accepting:
                accepting = False
                self.stop_accepting(stop_at)
            now = time.monotonic()
            if not self.busy() or now >= stop_at + self.stop_grace():
                return
            self.step(min(self.drain_poll, stop_at - now) if now < stop_at else self.drain_poll)

    def _finish(self) -> None:
        with self._lock:
            first, self._closed = not self._closed, True
        try:
            if first:
                self.close()
        finally:
            with self._lock:
                if first:
                    self.wake.close()
                self._serving = False
                self._loop_thread = None
            self._finished.set()

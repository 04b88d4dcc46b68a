"""Transfer workers: child processes that only pump data.

The server process keeps everything that needs shared state — listening
sockets, request admission, the ``ContentProvider`` (snapshot, access
control), boot events — and hands each admitted transfer to a worker: the
session socket (the transfer's TID) and the open file travel as file
descriptors over a Unix socket (``SCM_RIGHTS``), small generated contents as
bytes, together with the ``Transfer`` arguments.  The worker runs the same
session loop as the server (``TftpServer.adopt``), so retransmission and
give-up rules come from the same ``Transfer`` state machine, and reports each
``TransferRecord`` (and its counters) back.

Workers are fresh interpreters (``run_worker(FD)``), not
forks of a process that already runs threads.  They ignore SIGINT/SIGTERM
and stop when the server tells them to, or when the server's end of the
socket closes (the server died): no orphans, no lost records on a clean stop.
"""

from __future__ import annotations

import array
import os
import signal
import socket
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:     # pickle and subprocess are imported where workers start: none on one CPU
    import subprocess

__all__ = ["WorkerGone", "WorkerPool", "default_worker_count"]

_MESSAGE_BYTES = 256 * 1024        # one control message (headers, records, small generated files)
INLINE_CONTENT_MAX = 64 * 1024     # generated content up to this size travels inline
_PACKAGE_ROOT = str(Path(__file__).resolve().parent.parent.parent)
_WORKER_MAIN = "import sys; from appliance.tftp.worker import run_worker; sys.exit(run_worker(int(sys.argv[1])))"


def default_worker_count() -> int:
    """One worker per usable CPU but one; none (serve in-process) on a single CPU.

    One worker already takes the data path away from the admitting process
    (its threads, the GIL, provider look-ups and file opens no longer delay
    datagrams).  Each further worker adds wake-ups (fewer ACKs handled per
    epoll wait) and only pays where a core would otherwise idle: the last
    core is left to the admitting process, the control loop and the kernel's
    network stack.  On one CPU a second interpreter only competes with the
    start-up for it.
    """
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return cpus - 1 if cpus > 1 else 0


class WorkerGone(Exception):
    """A worker's socket closed: it exited or crashed.  ``messages``: what it sent before
    (a worker that stops sends its last records and exits at once)."""

    def __init__(self, why: str, messages: list[dict]) -> None:
        super().__init__(why)
        self.messages = messages


class Worker:
    """A worker process as the server sees it: its control socket and load."""

    __slots__ = ("proc", "sock", "ready", "sessions", "stats", "keys")

    def __init__(self, proc: subprocess.Popen, sock: socket.socket) -> None:
        self.proc = proc
        self.sock = sock
        self.ready = False
        self.sessions = 0
        self.stats: object = None           # the worker's latest TftpStats
        self.keys: set = set()

    @property
    def fd(self) -> int:
        return self.sock.fileno()


def _send(sock: socket.socket, message: dict, fds: tuple[int, ...] = ()) -> None:
    import pickle

    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else []
    sock.sendmsg([data], anc)


def _receive(sock: socket.socket) -> tuple[dict, list[int]] | None:
    """One message and the descriptors it carried; None at end of stream."""
    import pickle

    fds = array.array("i")
    data, anc, _flags, _addr = sock.recvmsg(_MESSAGE_BYTES, socket.CMSG_SPACE(4 * fds.itemsize))
    for level, kind, payload in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[:len(payload) - len(payload) % fds.itemsize])
    if not data:
        for fd in fds:
            os.close(fd)
        return None
    return pickle.loads(data), list(fds)


class WorkerPool:
    """The server side: start workers, hand transfers to the least busy, read their reports."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.workers: dict[int, Worker] = {}       # control fd → worker

    def spawn(self) -> Worker:
        import subprocess

        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            env = dict(os.environ)
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [_PACKAGE_ROOT, env.get("PYTHONPATH")]))
            proc = subprocess.Popen([sys.executable, "-c", _WORKER_MAIN, str(child.fileno())],
                                    pass_fds=[child.fileno()], env=env, stdin=subprocess.DEVNULL,
                                    close_fds=True)
        except BaseException:
            parent.close()
            raise
        finally:
            child.close()
        parent.setblocking(False)
        worker = Worker(proc, parent)
        self.workers[worker.fd] = worker
        return worker

    def spawn_all(self) -> None:
        for _ in range(self.count - len(self.workers)):
            self.spawn()

    def busiest(self, address: str | None = None) -> Worker | None:
        """The worker with the most transfers (of clients at ``address``, if given)."""
        def load(w: Worker) -> int:
            return w.sessions if address is None else sum(1 for key in w.keys if key[0] == address)

        worker = max(self.workers.values(), key=load, default=None)
        return worker if worker is not None and load(worker) > 0 else None

    def reclaim(self, worker: Worker, address: str | None, stalled_for: float) -> None:
        """Ask ``worker`` to end its transfer longest without progress (of ``address``),
        if stalled for ``stalled_for`` seconds; its record tells when room is made."""
        try:
            _send(worker.sock, {"op": "reclaim", "address": address, "stalled_for": stalled_for})
        except OSError:
            pass

    def pick(self) -> Worker | None:
        ready = [w for w in self.workers.values() if w.ready]
        return min(ready, key=lambda w: w.sessions) if ready else None

    def hand_off(self, worker: Worker, message: dict, fds: tuple[int, ...]) -> bool:
        """Give a transfer to ``worker``; False if its socket is full or gone (serve it here)."""
        try:
            _send(worker.sock, message, fds)
        except OSError:
            return False
        worker.sessions += 1
        worker.keys.add(message["key"])
        return True

    def read(self, worker: Worker) -> list[dict]:
        """Messages waiting from ``worker``; raises ``WorkerGone`` (with them) when it has exited."""
        messages = []
        while True:
            try:
                got = _receive(worker.sock)
            except BlockingIOError:
                return messages
            except OSError as exc:
                raise WorkerGone(str(exc), messages) from exc
            if got is None:
                raise WorkerGone("control socket closed", messages)
            message, fds = got
            for fd in fds:
                os.close(fd)
            if message["op"] == "ready":
                worker.ready = True
            elif message["op"] in ("record", "exhausted"):
                worker.sessions -= 1
                worker.keys.discard(message["key"])
            if "stats" in message:
                worker.stats = message["stats"]
            messages.append(message)

    def remove(self, worker: Worker, kill: bool = False) -> int | None:
        """Forget ``worker``; reap it (killing it first if asked or if it lingers).  Its exit status."""
        import subprocess

        self.workers.pop(worker.fd, None)
        worker.sock.close()
        if kill and worker.proc.poll() is None:
            worker.proc.kill()
        try:
            return worker.proc.wait(2.0)
        except subprocess.TimeoutExpired:
            worker.proc.kill()
            return worker.proc.wait()

    def stop(self, drain: float) -> None:
        """Ask every worker to finish its transfers within ``drain`` seconds and exit."""
        for worker in self.workers.values():
            try:
                _send(worker.sock, {"op": "stop", "drain": drain})
            except OSError:
                pass


# -- the worker process ------------------------------------------------------------------

def run_worker(control_fd: int) -> int:
    from ..content import BytesContent, FileContent, TransferRecord
    from .server import TftpServer

    # The server process decides when workers stop (a terminal's Ctrl-C or
    # systemd's SIGTERM reach the whole group): transfers end with records.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    control = socket.socket(fileno=control_fd)
    control.setblocking(True)
    server = TftpServer(None, listen=[])
    server.pump_single_blocking = True

    def report(record: TransferRecord) -> None:
        # The server process holds the meta (host, generation) and puts it back.
        message = {"op": "record", "key": (record.client[0], record.client[1]),
                   "record": replace(record, meta={}), "stats": server.read_stats()}
        try:
            _send(control, message)
        except OSError:
            pass                       # the server is gone; we stop on its EOF

    def on_control() -> None:
        try:
            got = _receive(control)
        except OSError:
            got = None
        if got is None:                # the server exited: abort what runs and leave
            server.stop(0.0, wait=0)
            return
        message, fds = got
        if message["op"] == "session" and len(fds) < (1 if message["data"] is not None else 2):
            # Out of file descriptors: the kernel dropped what did not fit.
            for fd in fds:
                os.close(fd)
            try:
                _send(control, {"op": "exhausted", "key": message["key"]})
            except OSError:
                pass
        elif message["op"] == "session":
            sock = socket.socket(fileno=fds[0])
            sock.setblocking(False)
            try:
                content = FileContent(fds[1]) if message["data"] is None else BytesContent(message["data"])
            except Exception:
                sock.close()
                for fd in fds[1:]:
                    os.close(fd)
                raise
            server.adopt(sock, message["client"], content, message["transfer"])
        elif message["op"] == "reclaim":
            server.reclaim_stalled(address=message["address"], stalled_for=message["stalled_for"])
        elif message["op"] == "stop":
            server.stop(message["drain"], wait=0)

    server.on_transfer = report
    server.start()
    server.watch(control.fileno(), on_control)
    try:
        _send(control, {"op": "ready"})
    except OSError:
        return 0                       # the server stopped before this worker was up
    server.serve_forever()
    try:
        _send(control, {"op": "stopped", "stats": server.read_stats()})
    except OSError:
        pass
    return 0


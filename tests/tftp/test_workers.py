"""Transfer workers: many transfers at once are byte-identical, a dead worker is
replaced and its transfers get records, SIGTERM leaves no process behind.

(Single-client peers run against workers in test_peers.py as well.)
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path

import pytest

from appliance.tftp.packets import Data, OptionAck, encode_error, encode_request
from helpers import eventually

from .helpers import RawPeer, require_binary, serving

REPO = Path(__file__).resolve().parents[2]


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.fixture(scope="module")
def big(tmp_path_factory) -> tuple[Path, bytes]:
    data = os.urandom(3_000_000 + 77)
    path = tmp_path_factory.mktemp("workers") / "big.bin"
    path.write_bytes(data)
    return path, data


def test_concurrent_clients_on_workers_are_byte_identical(big, tmp_path):
    curl, atftp = require_binary("curl"), require_binary("atftp")
    path, data = big
    generated = b"#!ipxe\nkernel tftp://x/kernel\nboot\n"
    with serving({"big.bin": str(path), "boot.ipxe": generated}, workers=2) as s:
        procs = []
        for i in range(6):
            procs.append(subprocess.Popen([curl, "-sS", "--max-time", "60", "--tftp-blksize", "1468", "-o",
                                           str(tmp_path / f"curl{i}"), f"tftp://127.0.0.1:{s.port}/big.bin"]))
        procs.append(subprocess.Popen([atftp, "--option", "blksize 1468", "--option", "windowsize 16", "-g",
                                       "-r", "big.bin", "-l", str(tmp_path / "atftp"), "127.0.0.1", str(s.port)]))
        procs.append(subprocess.Popen([curl, "-sS", "--max-time", "60", "-o", str(tmp_path / "gen"),
                                       f"tftp://127.0.0.1:{s.port}/boot.ipxe"]))
        assert [p.wait(90) for p in procs] == [0] * len(procs)
        for i in range(6):
            assert (tmp_path / f"curl{i}").read_bytes() == data
        assert (tmp_path / "atftp").read_bytes() == data
        assert (tmp_path / "gen").read_bytes() == generated
        records = s.wait_records(8)
        assert sorted(r.outcome for r in records) == ["complete"] * 8
        assert {r.windowsize for r in records if r.path == "big.bin"} == {1, 16}
        stats = s.server.read_stats()
        assert stats.transfers_complete == 8
        assert stats.bytes_sent == 7 * len(data) + len(generated)


def test_a_killed_worker_is_replaced_and_its_transfer_gets_a_record(big, tmp_path):
    curl = require_binary("curl")
    path, data = big
    with serving({"big.bin": str(path)}, workers=1) as s, RawPeer() as peer:
        (victim,) = s.server.worker_pids()
        # A client that takes the first block and then stays silent: its transfer
        # sits in the worker, retransmitting.
        peer.send(encode_request("big.bin", "octet", (("blksize", "1024"),)), s.address)
        packet, _ = peer.recv()
        assert isinstance(packet, OptionAck)
        os.kill(victim, signal.SIGKILL)
        (record,) = s.wait_records(1)
        assert record.outcome == "error: transfer worker exited"
        assert record.path == "big.bin" and record.client[1] == peer.port
        eventually(lambda: len(s.server.worker_pids()) == 1 and s.server.worker_pids() != [victim], 10,
                   "a replacement worker")
        assert not alive(victim)
        assert s.server.read_stats().worker_failures == 1
        out = tmp_path / "after"
        subprocess.run([curl, "-sS", "--max-time", "60", "-o", str(out), f"tftp://127.0.0.1:{s.port}/big.bin"],
                       check=True, timeout=90)
        assert out.read_bytes() == data
        assert s.wait_records(2)[1].outcome == "complete"


def test_sigterm_stops_server_and_workers(big):
    path, _ = big
    proc = subprocess.Popen([sys.executable, "-m", "appliance.tftp", "--root", str(path.parent),
                             "--listen", "127.0.0.1:0", "--workers", "2", "-v"],
                            cwd=REPO, stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        port = int(proc.stdout.readline().rsplit(":", 1)[1])
        eventually(lambda: len(_children(proc.pid)) == 2, what="two transfer workers")
        workers = _children(proc.pid)
        with ExitStack() as peers:
            def start_in_a_worker() -> RawPeer | None:
                """A transfer held by a worker; None (that one ended) while workers are not ready."""
                peer = peers.enter_context(RawPeer())
                peer.send(encode_request("big.bin", "octet"), ("127.0.0.1", port))
                packet, tid = peer.recv()
                assert isinstance(packet, Data) and packet.block == 1
                # (the admitting process closes its copy right after handing it over)
                holders, _ = eventually(lambda: len(h := _socket_holders(tid[1], [proc.pid, *workers])) == 1 and h,
                                        5, "the transfer's socket to be in one process")
                if holders[0] in workers:
                    return peer
                peer.send(encode_error(0, "again"), tid)      # served by the admitting process
                return None

            # A transfer in progress in a worker when SIGTERM arrives ends with a record and an ERROR.
            eventually(start_in_a_worker, what="a transfer held by a worker")
            os.kill(proc.pid, signal.SIGTERM)
            assert proc.wait(15) == 0
        out = proc.stdout.read()
        assert "big.bin error: server stopping" in out or "big.bin error: server" in out, out
        eventually(lambda: not any(alive(pid) for pid in workers), what="the workers to exit")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _children(pid: int) -> list[int]:
    """The child processes of ``pid`` (those started by any of its threads), zombies included."""
    children = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                children += [int(p) for p in f.read().split()]
    except FileNotFoundError:
        pass
    return children


def _socket_holders(port: int, pids: list[int]) -> list[int]:
    """Those of ``pids`` that hold the UDP socket bound to local ``port`` (proc(5): net/udp, fd/)."""
    with open("/proc/net/udp") as f:
        rows = [line.split() for line in f.readlines()[1:]]
    inodes = {f"socket:[{row[9]}]" for row in rows if int(row[1].rsplit(":", 1)[1], 16) == port}
    holders = []
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except FileNotFoundError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") in inodes:
                    holders.append(pid)
                    break
            except OSError:
                pass
    return holders


def test_a_worker_that_cannot_start_is_not_restarted_and_transfers_are_served_here(big, tmp_path, monkeypatch):
    from appliance.content import DictProvider
    from appliance.tftp import TftpServer
    from appliance.tftp import worker as worker_module

    curl = require_binary("curl")
    path, data = big
    monkeypatch.setattr(worker_module, "_WORKER_MAIN", "import sys; sys.exit(3)")
    records = []
    before = set(_children(os.getpid()))
    server = TftpServer(DictProvider({"big.bin": str(path)}), listen=["127.0.0.1:0"],
                        on_transfer=records.append, workers=1)
    server.run_in_thread()
    try:
        eventually(lambda: server.read_stats().worker_failures == 1, what="the worker's failure")
        assert server.worker_pids() == []
        out = tmp_path / "here"
        subprocess.run([curl, "-sS", "--max-time", "60", "-o", str(out),
                        f"tftp://127.0.0.1:{server.addresses[0][1]}/big.bin"], check=True, timeout=90)
        assert out.read_bytes() == data
        eventually(lambda: len(records) == 1, what="the record")
        assert records[0].outcome == "complete"
        # The loop has served a transfer since it handled the failure: a replacement would
        # exist by now (a child process, or reaped and counted as a second failure).
        assert set(_children(os.getpid())) - before == set(), "a worker that never started was restarted"
        assert server.read_stats().worker_failures == 1, "a worker that never started was restarted"
    finally:
        server.stop(wait=10)

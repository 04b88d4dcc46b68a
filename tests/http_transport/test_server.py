"""The HTTP transport with real clients (curl; raw sockets only for requests curl will not send)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from appliance.content import AccessDenied, BytesContent, DictProvider, FileNotFound, OutOfResources, TransferRecord
from appliance.http import HttpServer
from helpers import WAIT_DEADLINE, eventually, poll

pytestmark = pytest.mark.skipif(subprocess.run(["which", "curl"], capture_output=True).returncode != 0,
                                reason="curl missing")

BIG = 3 * 1024 * 1024 + 17
HUGE = 256 * 1024 * 1024


@pytest.fixture
def files(tmp_path):
    big = tmp_path / "kernel"
    big.write_bytes(os.urandom(BIG))
    (tmp_path / "dir").mkdir()
    huge = tmp_path / "huge"
    with open(huge, "wb") as f:
        f.truncate(HUGE)                       # sparse; more than any socket buffer holds
    return {"pc/kernel": str(big), "pc/boot.ipxe": b"#!ipxe\nboot\n", "dir": str(tmp_path / "dir"),
            "pc/huge": str(huge)}


class Served:
    def __init__(self, provider, **kw) -> None:
        self.records: list[TransferRecord] = []
        self.server = HttpServer(provider, [("127.0.0.1", 0)], self.records.append, **kw)
        self.server.run_in_thread()
        self.port = self.server.addresses[0][1]
        self.url = f"http://127.0.0.1:{self.port}"

    def wait_records(self, n: int, timeout: float = WAIT_DEADLINE) -> list[TransferRecord]:
        poll(lambda: len(self.records) >= n, timeout)
        return self.records


@pytest.fixture
def served(files):
    s = Served(DictProvider(files, {"host": "pc"}))
    yield s
    s.server.stop()


def curl(*args: str, timeout: float = 20) -> subprocess.CompletedProcess:
    return subprocess.run(["curl", "-sS", "--max-time", str(timeout), *args], capture_output=True, timeout=timeout + 5)


def status_and_body(*args: str) -> tuple[int, bytes]:
    r = curl("-w", "\n%{http_code}", *args)
    body, _, code = r.stdout.rpartition(b"\n")
    return int(code), body


def raw(port: int, request: bytes, timeout: float = 5.0) -> bytes:
    """Send bytes, read until the server closes (or the timeout)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(request)
        out = b""
        try:
            while chunk := s.recv(65536):
                out += chunk
        except (socket.timeout, ConnectionResetError):
            pass
        return out


def test_get_store_file_and_generated_text_byte_identical(served, files, tmp_path):
    out = tmp_path / "got"
    r = curl("--fail", "-o", str(out), f"{served.url}/pc/kernel")
    assert r.returncode == 0, r.stderr
    assert out.read_bytes() == open(files["pc/kernel"], "rb").read()
    assert status_and_body(f"{served.url}/pc/boot.ipxe") == (200, b"#!ipxe\nboot\n")
    records = served.wait_records(2)
    kernel = next(r for r in records if r.path == "pc/kernel")
    assert (kernel.outcome, kernel.bytes_sent, kernel.size, kernel.transport) == ("complete", BIG, BIG, "http")
    assert kernel.meta == {"host": "pc"}


def test_head_gives_length_without_body(served):
    r = curl("-I", f"{served.url}/pc/kernel")
    head = r.stdout.decode()
    assert head.startswith("HTTP/1.1 200")
    assert f"Content-Length: {BIG}" in head and "Accept-Ranges: bytes" in head
    assert r.stdout.endswith(b"\r\n\r\n")      # no body
    r = curl("-I", f"{served.url}/pc/missing")
    assert r.stdout.startswith(b"HTTP/1.1 404") and r.stdout.endswith(b"\r\n\r\n")


def test_single_ranges(served, files):
    data = open(files["pc/kernel"], "rb").read()
    r = curl("-i", "-r", "100-199", f"{served.url}/pc/kernel")
    head, _, body = r.stdout.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 206") and f"Content-Range: bytes 100-199/{BIG}".encode() in head
    assert body == data[100:200]
    assert status_and_body("-r", "-10", f"{served.url}/pc/kernel") == (206, data[-10:])
    assert status_and_body("-r", f"{BIG - 5}-", f"{served.url}/pc/kernel") == (206, data[-5:])
    assert status_and_body("-r", f"{BIG - 5}-{BIG + 100}", f"{served.url}/pc/kernel") == (206, data[-5:])
    # several ranges: the whole file (a server may ignore Range)
    assert status_and_body("-r", "0-1,5-6", f"{served.url}/pc/kernel") == (200, data)
    # unsatisfiable: 416 with the size
    r = curl("-i", "-r", f"{BIG}-", f"{served.url}/pc/kernel")
    assert r.stdout.startswith(b"HTTP/1.1 416") and f"Content-Range: bytes */{BIG}".encode() in r.stdout
    records = served.wait_records(4)
    assert any(r.outcome == "partial" and r.bytes_sent == 100 for r in records)


@pytest.mark.parametrize("path, status", [
    ("/../etc/passwd", 403), ("/pc/../../etc/passwd", 403), ("/%2e%2e/etc/passwd", 403),
    ("/pc%2f..%2f..%2fetc", 403), ("/a%00b", 403), ("/a%5cb", 403),
    ("/", 404), ("/dir", 404), ("/dir/", 404), ("/pc/", 404), ("/nope", 404),
])
def test_containment_and_no_listings(served, path, status):
    code, body = status_and_body("--path-as-is", f"{served.url}{path}")
    assert code == status
    assert b"kernel" not in body and b"root:" not in body


@pytest.mark.parametrize("request_bytes, status", [
    (b"garbage\r\n\r\n", 400),
    (b"GET /pc/boot.ipxe HTTP/2.0\r\nHost: x\r\n\r\n", 505),
    (b"GET /pc/boot.ipxe HTTP/1.1\r\n\r\n", 400),                       # no Host
    (b"POST /pc/boot.ipxe HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc", 400),
    (b"DELETE /pc/boot.ipxe HTTP/1.1\r\nHost: x\r\n\r\n", 405),
    (b"GET /pc/boot.ipxe HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    (b"GET pc/boot.ipxe HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    (b"GET /pc/boot.ipxe HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n", 400),
    (b"GET /pc/boot.ipxe HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", 400),
    (b"GET /\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 431),
    (b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 100 + b"\r\n", 431),
    (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + os.urandom(64) + b"\r\n\r\n", 400),   # TLS hello
    (b"GET /pc/boot.ipxe HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", 400),   # RFC 9112 §3.2: one Host
    (b"GET /pc/boot.ipxe HTTP/1.1\r\nHost: x\rRange: bytes=0-1\r\n\r\n", 400),   # bare CR (RFC 9112 §2.2)
    (b"GET /pc/boot.ipxe HTTP/1.1\r\nHost: x\x00y\r\n\r\n", 400),            # NUL in a field (RFC 9110 §5.5)
    (b"GET /pc/boot.ipxe HTTP/1.1\r\nHost: x\r\nRange: bytes=0-1\x00\r\n\r\n", 400),
])
def test_malformed_requests_get_4xx_and_the_server_goes_on(served, request_bytes, status):
    answer = raw(served.port, request_bytes)
    assert answer.startswith(f"HTTP/1.1 {status} ".encode()), answer[:200]
    assert status_and_body(f"{served.url}/pc/boot.ipxe") == (200, b"#!ipxe\nboot\n")


def test_keep_alive_and_pipelining(served):
    r = curl("-v", "-o", "/dev/null", "-o", "/dev/null", f"{served.url}/pc/boot.ipxe", f"{served.url}/pc/kernel")
    assert b"Re-using existing connection" in r.stderr or b"Reusing existing" in r.stderr
    one = b"GET /pc/boot.ipxe HTTP/1.1\r\nHost: x\r\n\r\n"
    answer = raw(served.port, one + one + b"GET /pc/boot.ipxe HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert answer.count(b"HTTP/1.1 200 OK") == 3 and answer.count(b"#!ipxe\nboot\n") == 3


def test_absolute_form_targets_are_served(served):
    """RFC 9112 §3.2.2: a server must accept the absolute-form (what a client sends to a proxy)."""
    for target, expected in ((f"http://127.0.0.1:{served.port}/pc/boot.ipxe", (200, b"#!ipxe\nboot\n")),
                             ("HTTP://boot.example/pc/boot.ipxe?x=1", (200, b"#!ipxe\nboot\n")),
                             ("http://boot.example", (404, None)),
                             ("http://boot.example/../../etc/passwd", (403, None))):
        code, body = status_and_body("--path-as-is", "--request-target", target, f"{served.url}/")
        assert code == expected[0], target
        if expected[1] is not None:
            assert body == expected[1]
    assert raw(served.port, b"GET ftp://x/pc/boot.ipxe HTTP/1.1\r\nHost: x\r\n\r\n").startswith(b"HTTP/1.1 400 ")


def test_pipelined_heads_with_mixed_line_endings_are_each_answered(served):
    """A bare-LF head followed by a CRLF one: two requests, two answers (RFC 9112 §2.2 allows bare LF)."""
    answer = raw(served.port, b"GET /pc/boot.ipxe HTTP/1.1\nHost: x\n\n"
                 b"GET /pc/boot.ipxe HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert answer.count(b"HTTP/1.1 200 OK") == 2, answer[:300]


def test_empty_lines_before_a_request_line_are_skipped(served):
    """RFC 9112 §2.2: a server expecting a request line SHOULD ignore empty lines before it (some
    clients send a CRLF after a request); the request after them is answered, not refused."""
    answer = raw(served.port, b"\r\nGET /pc/boot.ipxe HTTP/1.1\r\nHost: x\r\n\r\n\r\n\n"
                 b"GET /pc/boot.ipxe HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert answer.count(b"HTTP/1.1 200 OK") == 2 and answer.count(b"#!ipxe\nboot\n") == 2, answer[:300]
    assert served.server.read_stats().malformed == 0


@pytest.mark.parametrize("request_bytes, status", [
    (b"HEAD /pc/boot.ipxe HTTP/1.1\r\n\r\n", 400),                                  # no Host
    (b"HEAD /pc/boot.ipxe HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    (b"HEAD /pc/boot.ipxe HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", 400),
    pytest.param(b"HEAD /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 431, id="head-too-large"),
])
def test_a_refused_head_request_gets_no_body(served, request_bytes, status):
    """RFC 9110 §9.3.2: the response to HEAD has no content, refusals included (Content-Length
    still says how long the error text would be)."""
    answer = raw(served.port, request_bytes)
    head, sep, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(f"HTTP/1.1 {status} ".encode()) and sep, answer[:200]
    assert body == b"", answer[:300]


@pytest.mark.parametrize("closing", [b"Connection: close\r\n", b""], ids=["connection-close", "http-1.0"])
def test_bytes_sent_after_a_closing_request_do_not_cut_its_response(served, files, closing):
    """A response that ends the connection reaches a slow reader whole even when the client sent
    more (a pipelined request, a stray CRLF): closing a socket with unread input makes the kernel
    reset the connection and drop what it has not yet sent, so the server drains the input first
    (a lingering close)."""
    data = open(files["pc/kernel"], "rb").read()
    version = b"HTTP/1.1" if closing else b"HTTP/1.0"
    with socket.socket() as client:
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)     # a slow reader
        client.settimeout(10)
        client.connect(("127.0.0.1", served.port))
        client.sendall(b"GET /pc/kernel " + version + b"\r\nHost: x\r\n" + closing + b"\r\n")
        assert client.recv(12).startswith(b"HTTP/1.1 200")     # the response is under way
        client.sendall(b"GET /pc/boot.ipxe HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.5)                     # the server has handed the whole file to the kernel
        answer = b"HTTP/1.1 200"
        while chunk := client.recv(65536):  # a reset raises ConnectionResetError here
            answer += chunk
    assert answer.partition(b"\r\n\r\n")[2] == data


def test_provider_refusals_and_failures_map_to_status_and_events():
    class Provider:
        def open(self, client, path):
            if path == "other":
                raise AccessDenied("another host's file")
            if path == "boom":
                raise RuntimeError("provider bug")
            if path == "fine":
                return BytesContent(b"fine", {"generation": 7})
            raise FileNotFound(path)

    s = Served(Provider())
    try:
        assert status_and_body(f"{s.url}/other")[0] == 403
        assert status_and_body(f"{s.url}/boom")[0] == 500
        assert status_and_body(f"{s.url}/nothing")[0] == 404
        assert status_and_body(f"{s.url}/fine") == (200, b"fine")
        outcomes = [(r.path, r.outcome.split(":")[0]) for r in s.wait_records(4)]
        assert outcomes == [("other", "denied"), ("boom", "error"), ("nothing", "not-found"), ("fine", "complete")]
        assert s.server.read_stats().internal_errors == 1
    finally:
        s.server.stop()


def test_out_of_file_descriptors_is_503_retry_not_404():
    class Provider:
        def open(self, client, path):
            raise OutOfResources(f"{path}: Too many open files")

    s = Served(Provider())
    try:
        status, _ = status_and_body(f"{s.url}/kernel")
        assert status == 503
        assert s.wait_records(1)[0].outcome.startswith("error")
    finally:
        s.server.stop()


def test_slowloris_cannot_exhaust_connections(files):
    """Slots held by clients that trickle a head are reclaimed; a real client is served at once."""
    # Long enough that a client left to wait for a trickler to be cut shows, even on a loaded machine.
    header_timeout = 6.0
    s = Served(DictProvider(files), max_connections=8, header_timeout=header_timeout)
    slow: list[socket.socket] = []
    stop = threading.Event()
    try:
        for _ in range(8):
            c = socket.create_connection(("127.0.0.1", s.port), timeout=5)
            c.sendall(b"GET /pc/kernel HTTP/1.1\r\n")
            slow.append(c)

        def trickle() -> None:          # a byte every 0.1 s, well past header_timeout
            for _ in range(int(header_timeout * 10 * 4)):
                if stop.wait(0.1):
                    return
                for c in slow:
                    try:
                        c.send(b"X")
                    except OSError:
                        pass
        t = threading.Thread(target=trickle)
        t.start()
        for _ in range(5):
            start = time.monotonic()
            assert status_and_body(f"{s.url}/pc/boot.ipxe") == (200, b"#!ipxe\nboot\n")
            assert time.monotonic() - start < header_timeout - 2
        assert s.server.read_stats().evicted >= 1     # the first one took a trickler's slot
        # the trickling clients that were not evicted are cut at header_timeout, however steady
        eventually(lambda: s.server.read_stats().connections_active == 0, 2 * header_timeout,
                   "the tricklers to be cut while still trickling", 0.1)
        stop.set()
        t.join()
    finally:
        stop.set()
        for c in slow:
            c.close()
        s.server.stop()


def stalled_reader(port: int, path: str, source: str = "127.0.0.1") -> socket.socket:
    """A client that asks for a file and then stops reading (a small receive window)."""
    reader = socket.socket()
    try:
        reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        reader.bind((source, 0))
        reader.connect(("127.0.0.1", port))
        reader.sendall(f"GET /{path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    except OSError:
        reader.close()
        raise
    return reader


def test_busy_answers_503_when_every_slot_is_transferring(files):
    # reclaim_after beyond send_timeout: the reader counts as transferring until it is cut
    s = Served(DictProvider(files), max_connections=1, send_timeout=2.0, reclaim_after=60.0)
    try:
        reader = stalled_reader(s.port, "pc/huge")
        assert reader.recv(16).startswith(b"HTTP/1.1 200")
        code, _ = status_and_body(f"{s.url}/pc/boot.ipxe")
        assert code == 503
        # a reader that stops reading is cut after send_timeout; its transfer is a "timeout" event
        records = s.wait_records(1)
        assert records and records[0].path == "pc/huge" and records[0].outcome == "timeout"
        assert 0 < records[0].bytes_sent < HUGE
        assert status_and_body(f"{s.url}/pc/boot.ipxe")[0] == 200
        reader.close()
    finally:
        s.server.stop()


def test_a_reader_stalled_past_reclaim_after_gives_its_slot_to_a_newcomer(files):
    s = Served(DictProvider(files), max_connections=1, reclaim_after=1.0)
    try:
        reader = stalled_reader(s.port, "pc/huge")
        assert reader.recv(16).startswith(b"HTTP/1.1 200")
        time.sleep(1.5)                     # the reader has now taken nothing for over reclaim_after
        assert status_and_body(f"{s.url}/pc/boot.ipxe") == (200, b"#!ipxe\nboot\n")
        records = s.wait_records(2)
        assert [(r.path, r.outcome) for r in records] == [("pc/huge", "reclaimed"), ("pc/boot.ipxe", "complete")]
        assert 0 < records[0].bytes_sent < HUGE
        assert s.server.read_stats().reclaimed == 1
        reader.close()
    finally:
        s.server.stop()


def test_stalled_readers_on_many_addresses_cannot_hold_every_slot(files):
    """Like the TFTP engine: at the connection cap the transfer longest without progress is
    reclaimed for a newcomer, while a client that keeps reading is never cut."""
    s = Served(DictProvider(files), max_connections=512, max_per_client=64)
    steady = socket.create_connection(("127.0.0.1", s.port), timeout=5, source_address=("127.0.0.10", 0))
    steady.sendall(b"GET /pc/huge HTTP/1.1\r\nHost: x\r\n\r\n")
    done = threading.Event()
    steady_got: list[int] = []

    def read_steadily() -> None:     # about 6 MB/s: slower than the server, but never idle
        try:
            while not done.wait(0.01) and (chunk := steady.recv(65536)):
                steady_got.append(len(chunk))
        except OSError as exc:
            steady_got.append(-1)
            raise AssertionError(f"the steady reader was cut: {exc!r}")

    reader_thread = threading.Thread(target=read_steadily)
    reader_thread.start()
    readers: list[socket.socket] = []
    try:
        # 7 x 64 + 63 stalled readers on 8 source addresses, each under the per-address cap: every slot taken
        sources = [f"127.0.0.{n}" for n in range(2, 10)]
        for source in sources:
            for _ in range(63 if source == sources[-1] else 64):
                readers.append(stalled_reader(s.port, "pc/huge", source))
        eventually(lambda: s.server.read_stats().responses.get(200, 0) == 512, 30, "every slot to be transferring")
        assert s.server.read_stats().connections_active == 512
        time.sleep(s.server.reclaim_after + 0.5)    # the stalled readers have now gone longer without progress
        with_progress = sum(steady_got)
        results: list[tuple[int, bytes, float]] = []

        def fetch() -> None:
            start = time.monotonic()
            code, body = status_and_body(f"{s.url}/pc/boot.ipxe")
            results.append((code, body, time.monotonic() - start))
        clients = [threading.Thread(target=fetch) for _ in range(5)]
        for c in clients:
            c.start()
        for c in clients:
            c.join()
        assert [(code, body) for code, body, _ in results] == [(200, b"#!ipxe\nboot\n")] * 5
        # a newcomer made to wait for a stalled reader's send_timeout (30 s) instead of reclaiming
        assert max(took for _, _, took in results) < 10
        stats = s.server.read_stats()
        assert stats.reclaimed >= 1 and stats.refused_busy == 0
        reclaimed = [r for r in s.records if r.outcome == "reclaimed"]
        assert len(reclaimed) == stats.reclaimed
        assert {r.client[0] for r in reclaimed} <= set(sources)
        eventually(lambda: sum(steady_got) > with_progress + 1_000_000, what="the steady reader to keep receiving")
        assert -1 not in steady_got
        assert not [r for r in s.records if r.client == steady.getsockname()]
    finally:
        done.set()
        reader_thread.join()
        steady.close()
        for reader in readers:
            reader.close()
        s.server.stop()


def test_client_disconnect_mid_transfer_is_an_aborted_event(files):
    s = Served(DictProvider(files))
    try:
        c = stalled_reader(s.port, "pc/huge")
        c.recv(100)
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        c.close()                                   # RST
        records = s.wait_records(1)
        assert records[0].outcome.startswith("error:") and records[0].bytes_sent < HUGE
        assert s.server.read_stats().transfers_aborted == 1
    finally:
        s.server.stop()


def test_stop_lets_a_response_in_progress_finish_within_the_drain(files):
    s = Served(DictProvider(files))
    reader = stalled_reader(s.port, "pc/kernel")
    try:
        assert reader.recv(16).startswith(b"HTTP/1.1 200")    # the response is under way
        stopper = threading.Thread(target=s.server.stop, kwargs={"drain": 10})
        stopper.start()
        eventually(lambda: s.server.read_stats().connections_active == 1 and stopper.is_alive(), 5,
                   "stop to wait for the response")
        received = 16
        reader.settimeout(10)
        while chunk := reader.recv(1 << 20):
            received += len(chunk)
        stopper.join(10)
        assert not stopper.is_alive()
        assert received > BIG                                   # head and the whole body
        (record,) = s.records
        assert record.outcome == "complete" and record.bytes_sent == BIG
    finally:
        reader.close()
        s.server.stop()


def test_stop_aborts_what_the_drain_did_not_finish(files):
    s = Served(DictProvider(files), workers=2)
    reader = stalled_reader(s.port, "pc/huge")
    try:
        assert reader.recv(16).startswith(b"HTTP/1.1 200")
        started = time.monotonic()
        s.server.stop(drain=0.3)
        assert time.monotonic() - started < 10     # not the stalled reader's send_timeout (30 s)
        (record,) = s.records
        assert record.path == "pc/huge" and record.outcome == "error: server stopping"
        assert s.server.read_stats().connections_active == 0
    finally:
        reader.close()


def test_stop_closes_listeners_and_bad_bind_is_an_operator_error():
    from appliance.errors import HttpError

    s = Served(DictProvider({}))
    port = s.port
    with pytest.raises(HttpError, match="cannot listen"):
        HttpServer(DictProvider({}), [("127.0.0.1", port)]).start()
    s.server.stop()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_a_deferred_request_is_answered_once_the_provider_decides():
    from appliance.content import RetryLater

    class Learning:
        asked = 0

        def open(self, client, path):
            self.asked += 1
            if self.asked < 3:
                raise RetryLater(0.05)      # still learning the client's MAC
            return BytesContent(b"yours")

    s = Served(Learning())
    try:
        assert status_and_body(f"{s.url}/x") == (200, b"yours")
    finally:
        s.server.stop()


def test_a_request_deferred_late_in_the_idle_window_is_still_answered():
    """A request that arrives shortly before an idle keep-alive connection would time out, and
    that the provider defers (still learning the client's MAC), is answered when the provider
    decides within ``header_timeout`` of the request; the idle timeout must not close it unanswered."""
    from appliance.content import RetryLater

    class Learning:
        first_asked: float | None = None

        def open(self, client, path):
            now = time.monotonic()
            self.first_asked = self.first_asked or now
            if now - self.first_asked < 0.8:
                raise RetryLater(0.05)
            return BytesContent(b"yours")

    s = Served(Learning(), header_timeout=1.5)
    try:
        with socket.create_connection(("127.0.0.1", s.port), timeout=5) as client:
            time.sleep(1.0)                 # idle for most of header_timeout
            client.sendall(b"GET /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            answer = b""
            while chunk := client.recv(4096):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"yours"), answer[:200]
    finally:
        s.server.stop()


@pytest.mark.parametrize("range_value", [
    b"bytes=\xb2-",                         # a Latin-1 superscript: str.isdigit() but not a number
    b"bytes=0-\xb9\xb2",
    b"bytes=-\xb3",
    b"bytes=" + b"9" * 5000 + b"-",         # past Python's int-from-text digit limit
    b"bytes=0-" + b"9" * 5000,
], ids=["superscript-first", "superscript-last", "superscript-suffix", "5000-digit-first", "5000-digit-last"])
def test_no_range_header_stops_the_server(served, files, range_value):
    """Whatever a Range header holds, the request gets an answer and the server keeps serving."""
    data = open(files["pc/kernel"], "rb").read()
    answer = raw(served.port, b"GET /pc/kernel HTTP/1.1\r\nHost: x\r\nConnection: close\r\nRange: "
                 + range_value + b"\r\n\r\n")
    assert answer.startswith((b"HTTP/1.1 200 ", b"HTTP/1.1 206 ", b"HTTP/1.1 416 ")), answer[:100]
    assert status_and_body(f"{served.url}/pc/kernel") == (200, data)
    assert status_and_body("-r", "-10", f"{served.url}/pc/kernel") == (206, data[-10:])


def test_a_long_pipeline_is_answered_in_order_and_the_server_goes_on(served):
    """Pipelined requests are answered one after another, however many arrive at once."""
    count = 2000
    one = b"GET /pc/missing HTTP/1.1\r\nHost: x\r\n\r\n"
    answer = raw(served.port, one * (count - 1) + b"GET /pc/boot.ipxe HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                 timeout=20)
    assert answer.count(b"HTTP/1.1 404 ") == count - 1
    assert answer.endswith(b"#!ipxe\nboot\n")
    assert status_and_body(f"{served.url}/pc/boot.ipxe") == (200, b"#!ipxe\nboot\n")


def test_failing_content_aborts_its_transfer_only():
    """Content that raises something unexpected mid-transfer costs that transfer, not the server."""
    class Broken(BytesContent):
        def read_at(self, offset, length):
            if offset > 0:
                raise RuntimeError("backing store went away")
            return super().read_at(offset, length)

    class Provider:
        def open(self, client, path):
            if path == "broken":
                return Broken(b"x" * (4 * 1024 * 1024))
            return BytesContent(b"fine")

    s = Served(Provider())
    try:
        r = curl("-o", "/dev/null", "-w", "%{http_code} %{size_download}", f"{s.url}/broken", timeout=10)
        assert r.returncode != 0            # the response was cut short
        assert status_and_body(f"{s.url}/fine") == (200, b"fine")
        records = s.wait_records(1)
        assert records[0].path == "broken" and records[0].outcome.startswith("error:")
        assert s.server.read_stats().internal_errors >= 1
    finally:
        s.server.stop()


_FD_LIMITED_SERVER = r'''
import resource, sys
resource.setrlimit(resource.RLIMIT_NOFILE, (48, 48))
from appliance.content import DictProvider
from appliance.http import HttpServer
server = HttpServer(DictProvider({"a": b"hello"}), [("127.0.0.1", 0)], header_timeout=30.0)
server.run_in_thread()
print(server.addresses[0][1], flush=True)
sys.stdin.readline()
print(server.read_stats().internal_errors, flush=True)
sys.stdin.readline()
'''


def test_out_of_file_descriptors_the_server_waits_instead_of_spinning():
    """With every descriptor in use, pending connections wait in the backlog; the loop does not retry
    accept() in a busy loop (which would hold a core and the GIL), and serves again once fds free up."""
    server = subprocess.Popen([sys.executable, "-c", _FD_LIMITED_SERVER], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, cwd=os.getcwd(),
                              env={**os.environ, "PYTHONPATH": os.getcwd()})
    clients: list[socket.socket] = []
    try:
        port = int(server.stdout.readline())
        clients = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(60)]
        time.sleep(2.0)                         # the window in which a spinning loop retries accept()
        server.stdin.write("\n")
        server.stdin.flush()
        failed_accepts = int(server.stdout.readline())
        assert failed_accepts < 100
        for c in clients[:40]:
            c.close()
        code, body = status_and_body(f"http://127.0.0.1:{port}/a")
        assert (code, body) == (200, b"hello")
    finally:
        for c in clients:
            c.close()
        server.kill()
        server.wait()

"""One host asking for its files thousands of times cannot push other hosts' boot events out
(README: Boot events)."""

from __future__ import annotations

import json
import socket
import subprocess
import threading

from helpers import free_port

from .control_harness import PC, PC_PREFIX, PI, PI_PREFIX, eventually, get, status

PIPELINED = 2000
TFTP_REPEATS = 100


def pipeline(port: int, path: str, count: int) -> int:
    """Send ``count`` GETs on one connection without waiting (HTTP/1.1 pipelining); the 200s read back."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        requests = f"GET /{path} HTTP/1.1\r\nHost: x\r\n\r\n".encode() * count
        sender = threading.Thread(target=sock.sendall, args=(requests,))
        sender.start()
        received = b""
        try:
            while received.count(b"HTTP/1.1 200 ") < count and (chunk := sock.recv(1 << 16)):
                received += chunk
        finally:
            sender.join()
        return received.count(b"HTTP/1.1 200 ")


def pc_events(store) -> list[dict]:
    lines = (store.layout.state / "events.jsonl").read_bytes().splitlines()
    return [e for e in map(json.loads, lines) if e["host"] == PC]


def test_a_host_repeating_requests_is_coalesced_and_other_hosts_keep_their_history(store, make_daemon):
    http_port = free_port(socket.SOCK_STREAM)
    store.write_config(store.read_config().replace("[server]\n", f'[server]\nhttp_listen = ["127.0.0.1:{http_port}"]\n', 1))
    make_daemon(store.config).start()
    get(store.port, PI_PREFIX + "cmdline.txt")
    eventually(lambda: status(store.config, PI)["hosts"][PI]["last_boot_events"], what="the Pi's event")

    # pc: thousands of pipelined HTTP requests, then the same file over TFTP again and again (curl)
    assert pipeline(http_port, PC_PREFIX + "boot.ipxe", PIPELINED) == PIPELINED
    url = f"tftp://127.0.0.1:{store.port}/{PC_PREFIX}boot.ipxe"
    tftp = subprocess.run(["curl", "-sS", "--max-time", "60", *(["-o", "/dev/null", url] * TFTP_REPEATS)],
                          capture_output=True, timeout=90)
    assert tftp.returncode == 0, tftp.stderr
    get(store.port, PC_PREFIX + "generations/2/kernel")          # a different file: recorded at once

    # every transfer is accounted for: written, or counted on the host's next written event
    transfers = PIPELINED + TFTP_REPEATS + 1
    events, _ = eventually(lambda: (evs := pc_events(store)) and evs[-1]["path"].endswith("/kernel") and evs,
                           what="the kernel's event")
    assert len(events) + sum(e.get("suppressed", 0) for e in events) == transfers
    assert len(events) <= 10
    assert events[-1]["suppressed"] > 0
    # the Pi's boot is still what status shows for it
    pi_events = status(store.config, PI)["hosts"][PI]["last_boot_events"]
    assert [e["path"] for e in pi_events] == [PI_PREFIX + "cmdline.txt"]

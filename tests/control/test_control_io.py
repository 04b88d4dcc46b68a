"""The TFTP loop never waits on control I/O (state file lock, fsync, rebuilds).

The test holds the state directory's lock (as a slow disk or a CLI command
stuck mid-write would) while real TFTP clients fetch files: other hosts'
transfers go on, and a trial host booting again is still served its
last confirmed generation at once; the state catches up once the lock is free.
"""

from __future__ import annotations

import fcntl
import os
import socket
import time
import urllib.request
from contextlib import contextmanager

from helpers import free_port

from .control_harness import (PC_PREFIX, PI, PI_PREFIX, cli_ok, curl, eventually, get, history, status)

LOCK_HELD = 60.0    # far longer than any of the fetches below may take
FETCH_TIMEOUT = 10  # a transfer waiting on the lock would wait until the lock is released: never


@contextmanager
def state_lock_held(store):
    fd = os.open(store.layout.state / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield time.monotonic()
    finally:
        os.close(fd)


def test_a_blocked_state_store_delays_no_transfer_and_the_trial_still_reverts(daemon, store):
    cli_ok(store.config, "trial", PI, "1")
    trial_kernel = store.kernel_bytes(PI, 1)
    eventually(lambda: get(store.port, PI_PREFIX + "cmdline.txt").startswith(store.init_of(PI, 1).encode()),
               what="trial served")
    with state_lock_held(store) as since:
        # the trial kernel is served: recording that needs the state file
        assert get(store.port, PI_PREFIX + "kernel8.img") == trial_kernel
        # other hosts are served meanwhile, with the lock still held
        for _ in range(3):
            f = curl(store.port, PC_PREFIX + "boot.ipxe", timeout=FETCH_TIMEOUT)
            assert f.ok, f"pc's transfer waited on the state lock: {f}"
        # the Pi boots again before any confirmation: that very boot gets generation 2
        assert get(store.port, PI_PREFIX + "config.txt", timeout=FETCH_TIMEOUT)
        assert get(store.port, PI_PREFIX + "kernel8.img", timeout=FETCH_TIMEOUT) == store.kernel_bytes(PI, 2)
        assert get(store.port, PI_PREFIX + "cmdline.txt", timeout=FETCH_TIMEOUT).startswith(store.init_of(PI, 2).encode())
        assert time.monotonic() - since < LOCK_HELD
    # the state catches up once the lock is free
    entry, _ = eventually(lambda: [h for h in history(store.config, PI) if h["event"] == "trial-reverted"],
                          what="revert recorded")
    assert "again" in entry[-1]["reason"] and "now serving 2" in entry[-1]["reason"]
    s = status(store.config, PI)["hosts"][PI]
    assert s["trial"] is None and s["served"] == 2
    assert get(store.port, PI_PREFIX + "kernel8.img") == store.kernel_bytes(PI, 2)


def test_boot_events_that_cannot_be_written_are_counted_and_reported_once(store, make_daemon):
    metrics_port = free_port(socket.SOCK_STREAM)
    store.write_config(store.read_config().replace("[server]\n",
                                                   f'[server]\nmetrics_listen = "127.0.0.1:{metrics_port}"\n', 1))
    store.layout.state.mkdir(parents=True, exist_ok=True)
    (store.layout.state / "events.jsonl").mkdir()       # cannot be appended to
    d = make_daemon(store.config).start()
    for name in ("cmdline.txt", "config.txt", "kernel8.img"):     # three files: repeats would be coalesced
        assert get(store.port, PI_PREFIX + name)

    def dropped() -> int:
        text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
        return int(next(line.split()[-1] for line in text.splitlines()
                        if line.startswith("netboot_boot_events_dropped_total")))

    eventually(lambda: dropped() == 3, what="three dropped boot events counted")
    assert d.log().count("degraded: boot-events") == 1, d.log()
    assert "boot-events" in status(store.config)["degraded"]

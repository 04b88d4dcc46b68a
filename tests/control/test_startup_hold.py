"""While LIO is set up at start, TFTP already answers: hosts with a root disk wait
(their requests are held, not refused), every other host is served at once."""

from __future__ import annotations

import subprocess
import time

from appliance.boot import Generated
from appliance.content import RetryLater
from appliance.config import load_config
from appliance.control.neighbours import NeighbourTable
from appliance.control.resolver import BootResolver
from appliance.control.snapshot import build_snapshot
from appliance.nix import StoreCache
from appliance.tftp import TftpServer

from .control_harness import PI, PI_PREFIX, build_store, cli_ok, curl, eventually


def test_held_host_waits_for_the_hold_to_lift_others_are_served(tmp_path):
    store = build_store(tmp_path / "demo")
    config = load_config(store.config)
    neighbours = NeighbourTable()
    path = PI_PREFIX + "cmdline.txt"
    expected = cli_ok(store.config, "cat", PI, "cmdline.txt").encode()
    snapshot = build_snapshot(config, {}, StoreCache())
    resolver = BootResolver(snapshot, neighbours)
    other = next(p for name, hs in snapshot.hosts.items() if name != PI
                 for p, source in sorted(hs.tree.files.items()) if isinstance(source, Generated))
    resolver.held = frozenset([PI])
    held_asks = []

    class Watched:
        """The resolver, noting each time it holds a request back."""

        def open(self, client, path):
            try:
                return resolver.open(client, path)
            except RetryLater:
                held_asks.append(path)
                raise

    try:
        with TftpServer(Watched(), listen=[f"127.0.0.1:{store.port}"]):
            waiting = subprocess.Popen(["curl", "-sS", "--max-time", "20", f"tftp://127.0.0.1:{store.port}/{path}"],
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            # Another host's file is served while the held one waits.
            assert curl(store.port, other).ok
            # The server has asked again and again (the request is held, not dropped or refused).
            eventually(lambda: len(held_asks) >= 3, what="the held request to be asked for again")
            assert waiting.poll() is None, "a held host was answered before the hold lifted"
            lifted = time.monotonic()
            resolver.held = frozenset()
            out, err = waiting.communicate(timeout=20)
            assert waiting.returncode == 0, err
            assert out == expected
            assert time.monotonic() - lifted < 10      # asked again soon, not left to curl's retries
    finally:
        neighbours.close()


"""A netlink failure never turns access open: degraded → strict, reported, then recovery.

The resolver and the TFTP engine run in this process with the real kernel
netlink behind a switch that makes every netlink call fail while it is on
(the fault injected); files are fetched with curl over loopback.  Loopback
clients have no MAC (not on a link), so the demo's pi-desktop (``open``)
serves them — unless the appliance cannot tell what the client is.
"""

from __future__ import annotations

import json
import time

from appliance.config import load_config
from appliance.control.health import Health, read_health_file, write_health_file
from appliance.control.metrics import BootCounters, render_metrics
from appliance.control.neighbours import BACKOFF_MAX, COMPONENT, ROUTE_TTL, NeighbourTable
from appliance.control.rtnetlink import NetlinkSocket
from appliance.control.resolver import BootResolver
from appliance.control.snapshot import build_snapshot
from appliance.nix import StoreCache
from appliance.tftp import TftpServer, TftpStats

from .control_harness import CURL_ACCESS, PI_PREFIX, build_store, cli_ok, curl


class SwitchableNetlink:
    """The kernel's rtnetlink socket, failing like a broken one while ``broken`` is set."""

    broken = False
    opened = 0

    def __init__(self) -> None:
        type(self).opened += 1
        if self.broken:
            raise OSError(105, "No buffer space available")
        self._sock = NetlinkSocket()

    def route_to(self, destination):
        if self.broken:
            raise OSError(105, "No buffer space available")
        return self._sock.route_to(destination)

    def neighbours(self, family):
        if self.broken:
            raise OSError(105, "No buffer space available")
        return self._sock.neighbours(family)

    def close(self) -> None:
        self._sock.close()


def test_netlink_failure_is_strict_reported_and_recovers(tmp_path):
    store = build_store(tmp_path / "demo")
    config = load_config(store.config)
    skew = [0.0]
    health = Health()
    netlink = type("Netlink", (SwitchableNetlink,), {})
    neighbours = NeighbourTable(health=health, netlink=netlink, clock=lambda: time.monotonic() + skew[0])
    resolver = BootResolver(build_snapshot(config, {}, StoreCache()), neighbours)
    path = PI_PREFIX + "cmdline.txt"

    def metrics() -> str:
        return render_metrics(TftpStats(), BootCounters(), {}, {}, health=health.report())

    with TftpServer(resolver, listen=[f"127.0.0.1:{store.port}"]):
        # healthy: loopback is no on-link client, pi-desktop is "open"
        assert curl(store.port, path).ok
        assert health.problems() == {}

        netlink.broken = True
        skew[0] += ROUTE_TTL + 1               # what was learned of the client has expired
        for _ in range(5):
            f = curl(store.port, path)
            assert f.rc == CURL_ACCESS, f"served while netlink is broken: {f}"
        assert COMPONENT in health.problems() and "netlink" in health.problems()[COMPONENT]
        assert f'netboot_degraded{{component="{COMPONENT}"}} 1' in metrics()
        # retried with backoff, not on every request, and not given up
        assert netlink.opened <= 3
        write_health_file(store.layout.state, health.report())
        shown = json.loads(cli_ok(store.config, "status", "--json"))["degraded"]
        assert COMPONENT in shown
        assert f"degraded: {COMPONENT}:" in cli_ok(store.config, "status")

        netlink.broken = False
        skew[0] += BACKOFF_MAX + 1
        assert curl(store.port, path).ok
        assert health.problems() == {}
        assert f'netboot_degraded{{component="{COMPONENT}"}} 0' in metrics()
        write_health_file(store.layout.state, health.report())
        assert read_health_file(store.layout.state).degraded() == {}
    neighbours.close()

"""Every degraded component reaches systemd's STATUS= line and ``netboot status``.

The real ``netboot serve`` runs with the harness's notify socket (an AF_UNIX
datagram socket this test binds, passed in ``NOTIFY_SOCKET``).  Netlink is made
to fail inside the daemon process (a ``sitecustomize`` making every
``AF_NETLINK`` socket fail as a broken one does), so client MACs
cannot be learned.  Netlink is opened before serving, so the degradation is on
the very first STATUS= line, the one sent with READY=1.
"""

from __future__ import annotations

import re
import socket

from appliance.control.health import HEALTH_FILE
from appliance.control.neighbours import COMPONENT

from .control_harness import PI_PREFIX, cli_ok, curl, eventually, status

BROKEN_NETLINK = '''
import socket


class Socket(socket.socket):
    def __init__(self, family=-1, *args, **kwargs):
        if family == socket.AF_NETLINK:
            raise OSError(105, "No buffer space available")
        super().__init__(family, *args, **kwargs)


socket.socket = Socket
'''


def _status_lines(daemon) -> list[str]:
    daemon.drain_notify()
    return [line[len("STATUS="):] for m in daemon.messages for line in m.splitlines() if line.startswith("STATUS=")]


def test_status_line_carries_a_client_mac_degradation(store, make_daemon, tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BROKEN_NETLINK)
    daemon = make_daemon(store.config, env={"PYTHONPATH": str(site)}).start()
    line = _status_lines(daemon)[0]
    assert line.startswith("degraded: netlink: ") and "clients are refused" in line, line
    # While degraded every client is strict: one whose MAC no frame shows is refused (access violation).
    assert curl(store.port, PI_PREFIX + "cmdline.txt").rc == 69

    shown = status(store.config)
    assert "netlink" in shown["degraded"][COMPONENT]
    assert shown["health"][COMPONENT]["state"] == "degraded" and shown["health"][COMPONENT]["since"] > 0
    assert f"degraded: {COMPONENT}: netlink" in cli_ok(store.config, "status")

    # A second degraded component joins the first on the one line.
    store.state_file().write_bytes(b"\x00not json")
    both, _ = eventually(lambda: next((s for s in _status_lines(daemon) if "is corrupt" in s), None),
                         what="state damage in STATUS=")
    assert "netlink" in both and f"{store.state_file()} is corrupt" in both, both

    # Stopped: nothing published is left for status to show.
    assert daemon.stop() == 0
    assert not (store.layout.state / HEALTH_FILE).exists()


def test_gc_roots_that_cannot_be_made_are_a_degradation_not_a_log_line(store, make_daemon, tmp_path):
    """Without its GC roots, nix-collect-garbage may delete what a host boots next: say so where
    an operator looks (STATUS=, status), and recover once the directory can be made."""
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    gcroots = blocker / "gcroots"
    text = store.read_config()
    store.write_config(re.sub(r'gcroots_dir = "[^"]*"', f'gcroots_dir = "{gcroots}"', text))
    daemon = make_daemon(store.config).start()
    line = _status_lines(daemon)[0]
    assert line.startswith("degraded: ") and "GC roots" in line and str(gcroots) in line, line
    assert "gcroots" in status(store.config)["degraded"]
    blocker.unlink()
    cli_ok(store.config, "pin", "pi-desktop", "1")          # the next refresh makes them
    eventually(lambda: any(s.startswith("serving") for s in _status_lines(daemon)),
               what="recovered on the STATUS= line")
    assert any(p.name.endswith(".netboot-root") for p in gcroots.iterdir())


def test_a_proxy_dhcp_that_cannot_listen_is_a_degradation(store, make_daemon):
    """[dhcp] interface = "eht0" (a typo): the Pis get no boot answer; say so where an operator looks."""
    store.write_config(store.read_config() + '\n[dhcp]\nenable = true\ninterface = "eht0"\n'
                                             'server_address = "10.0.4.3"\n')
    daemon = make_daemon(store.config).start()
    line = _status_lines(daemon)[0]
    assert line.startswith("degraded: ") and "proxyDHCP" in line and "eht0" in line, line
    assert "dhcp" in status(store.config)["degraded"]


def test_a_metrics_port_that_cannot_be_bound_is_a_degradation(store, make_daemon):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        text = store.read_config().replace("[server]\n", f'[server]\nmetrics_listen = "127.0.0.1:{port}"\n', 1)
        store.write_config(text)
        daemon = make_daemon(store.config).start()
        line = _status_lines(daemon)[0]
    assert line.startswith("degraded: ") and f"metrics cannot listen on 127.0.0.1:{port}" in line, line

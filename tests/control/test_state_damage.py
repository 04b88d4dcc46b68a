"""The daemon and a damaged state.json: it keeps serving, reports degraded, writes nothing over it.

A running daemon keeps its last good state; a restarting one serves what can
be read (completed from the last good copy) instead of crash-looping; once
``netboot state repair`` runs, both pick the repaired file up.
"""

from __future__ import annotations

import socket
import urllib.request

from helpers import free_port

from .control_harness import PI, PI_PREFIX, cli, cli_ok, eventually, get

NESTED = b'{"version": 1, "hosts": ' + b"[" * 100_000


def _kernel_is(store, number: int):
    want = store.kernel_bytes(PI, number)
    return lambda: get(store.port, PI_PREFIX + "kernel8.img") == want


def _with_metrics(store) -> int:
    port = free_port(socket.SOCK_STREAM)
    text = store.read_config().replace("[iscsi]", f'metrics_listen = "127.0.0.1:{port}"\n\n[iscsi]', 1)
    store.write_config(text)
    return port


def _degraded_metric(port: int) -> str | None:
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    lines = [line for line in body.splitlines() if line.startswith('netboot_degraded{component="state"}')]
    return lines[0].split()[-1] if lines else None


def test_running_daemon_keeps_its_last_good_state_when_state_json_is_damaged(store, make_daemon):
    mport = _with_metrics(store)
    daemon = make_daemon(store.config).start()
    cli_ok(store.config, "pin", PI, "1")
    eventually(_kernel_is(store, 1), what="pin 1 served")
    assert _degraded_metric(mport) == "0"
    store.state_file().write_bytes(NESTED)          # RecursionError in a plain json.loads
    eventually(lambda: _degraded_metric(mport) == "1", what="degraded in metrics")
    assert daemon.alive()
    assert _kernel_is(store, 1)()                   # last good state: still pinned
    assert store.state_file().read_bytes() == NESTED     # nothing written over it
    daemon.wait_notify("STATUS=degraded: " + str(store.state_file()) +
                       " is corrupt; run 'netboot state repair'")
    assert daemon.log().count("degraded:") == 1 and "Traceback" not in daemon.log()
    # The CLI refuses too; repair restores the pin from the last good copy and the daemon resumes.
    r = cli(store.config, "pin", PI, "2")
    assert r.returncode == 1 and "netboot state repair" in r.stderr
    out = cli_ok(store.config, "state", "repair")
    assert f"restored from the last good copy: {PI} (pin 1)" in out, out
    eventually(lambda: _degraded_metric(mport) == "0", what="degraded cleared after repair")
    cli_ok(store.config, "pin", PI, "2")
    eventually(_kernel_is(store, 2), what="pin 2 served after repair")


def test_restarting_daemon_with_a_damaged_state_serves_what_can_be_read(store, make_daemon):
    cli_ok(store.config, "pin", PI, "1")
    good = store.state_file().read_bytes()
    store.state_file().write_bytes(b"\x00\xffnot json")
    daemon = make_daemon(store.config).start()      # READY=1: no crash, no crash loop
    assert any("STATUS=degraded" in m for m in daemon.messages), daemon.messages
    assert _kernel_is(store, 1)()                   # the pin from the last good copy
    assert store.state_file().read_bytes() == b"\x00\xffnot json"
    assert "Traceback" not in daemon.log()
    last_good = store.layout.state / "state.json.last-good"
    assert last_good.read_bytes() == good           # the copy the pin came from, untouched

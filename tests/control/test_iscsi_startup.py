"""``serve`` with iSCSI enabled where LIO cannot be opened (this host has no configfs):
it fails loudly, or — when the operator chose ``on_failure = "degraded"`` — serves
TFTP only, says so (sd_notify STATUS, ``status``, metrics) and keeps retrying."""

from __future__ import annotations

import re
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from helpers import free_port, netboot

from .control_harness import PI, PI_PREFIX, cli, eventually, get, status
from appliance.iscsi.sessions import ISCSI_FABRIC

# The retries back off (2 s, 4 s, 8 s, ...): by the time the test has read the failure count, on a
# loaded machine, the next attempt can be a few doublings away.
RETRY_WAIT = 120.0

pytestmark = pytest.mark.skipif(ISCSI_FABRIC.parent.is_dir(), reason="needs a host without kernel LIO")


def _iscsi_config(store, tmp_path: Path, on_failure: str | None, metrics_port: int | None = None) -> str:
    (tmp_path / "luns").mkdir(exist_ok=True)
    text = store.read_config().replace(
        "[iscsi]\nenable = false\n",
        '[iscsi]\nenable = true\nportals = ["127.0.0.1:3260"]\n'
        + (f'on_failure = "{on_failure}"\n' if on_failure else ""))
    if metrics_port:
        text = text.replace("[server]\n", f'[server]\nmetrics_listen = "127.0.0.1:{metrics_port}"\n', 1)
    return text + f"""
[hosts.{PI}.iscsi]
initiator = "iqn.2026-04.net.example:{PI}"
lun = {{ file = "{tmp_path}/luns/{PI}.img", size = "64M" }}
"""


def _metrics(port: int) -> str:
    return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()


def _failures(metrics: str) -> int:
    return int(re.search(r"^netboot_iscsi_apply_failures_total (\d+)$", metrics, re.M).group(1))


def test_serve_fails_with_one_clear_line_when_lio_cannot_be_opened(store, tmp_path):
    store.write_config(_iscsi_config(store, tmp_path, None))
    started = time.monotonic()
    proc = netboot("serve", config=store.config, input="")
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert time.monotonic() - started < 30
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("netboot: iSCSI: ") and "LIO" in last and 'on_failure = "degraded"' in last, last
    assert "Traceback" not in proc.stderr
    assert "serving TFTP" not in proc.stderr
    # Nothing listens: a boot file request gets no answer.
    fetched = subprocess.run(["curl", "-s", "--max-time", "2", f"tftp://127.0.0.1:{store.port}/{PI_PREFIX}cmdline.txt"],
                             capture_output=True)
    assert fetched.returncode != 0


def test_degraded_mode_serves_tftp_says_so_and_retries(store, tmp_path, make_daemon):
    port = free_port(socket.SOCK_STREAM)
    store.write_config(_iscsi_config(store, tmp_path, "degraded", port))
    d = make_daemon(store.config).start()
    ready = next(m for m in d.messages if "READY=1" in m.splitlines())
    assert "STATUS=degraded: iSCSI unavailable" in ready and "TFTP only" in ready, ready
    assert get(store.port, PI_PREFIX + "cmdline.txt")       # boot files are still served

    health = status(store.config)["iscsi"]
    assert health["state"] == "degraded" and "LIO" in health["error"], health
    text = cli(store.config, "status")
    assert "iSCSI degraded" in text.stdout + text.stderr
    metrics = _metrics(port)
    assert 'netboot_degraded{component="iscsi"} 1' in metrics, metrics
    failures = _failures(metrics)
    assert failures >= 1

    # It retries with backoff: another failed attempt shows up without any operator action.
    eventually(lambda: _failures(_metrics(port)) > failures, deadline=RETRY_WAIT, what="a retry", interval=0.5)
    assert "iSCSI: retrying in" in d.log()


def test_on_failure_must_be_fail_or_degraded(store, tmp_path):
    store.write_config(_iscsi_config(store, tmp_path, "ignore"))
    r = cli(store.config, "check", "--no-files")
    assert r.returncode == 2 and "iscsi.on_failure" in r.stderr and "fail or degraded" in r.stderr

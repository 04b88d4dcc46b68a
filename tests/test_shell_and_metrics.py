"""The admin shell and the Prometheus endpoint, driven as an operator would."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from appliance.control.metrics import BootCounters, render_metrics
from appliance.demo import build_demo
from appliance.tftp import TftpStats
from helpers import eventually, free_port, netboot, netboot_argv


def _get(url: str) -> str:
    return urllib.request.urlopen(url, timeout=5).read().decode()


def _reachable(url: str) -> bool:
    try:
        _get(url)
    except OSError:
        return False
    return True


@pytest.fixture
def demo(tmp_path: Path):
    return build_demo(tmp_path / "demo", port=free_port())


def test_shell_lists_generations_and_pins(demo, tmp_path):
    env = {"XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    out = netboot("shell", "ls /hosts/pi-desktop/generations", config=demo.config, env=env)
    assert out.returncode == 0, out.stderr
    assert "o- 1" in out.stdout and "o- 2" in out.stdout
    assert "served current" in out.stdout          # generation 2: followed
    out = netboot("shell", "cd /hosts/pi-desktop", "pin 1", config=demo.config, env=env)
    assert "serving generation 1 (pin)" in out.stdout, out.stdout + out.stderr
    status = json.loads(netboot("status", "--json", config=demo.config).stdout)
    assert status["hosts"]["pi-desktop"]["served"] == 1
    assert status["hosts"]["pi-desktop"]["reason"] == "pin"
    # A bad generation is an error line in the shell, not a crash, and changes nothing.
    out = netboot("shell", "cd /hosts/pi-desktop", "pin 9", config=demo.config, env=env)
    assert "error: pi-desktop: no generation 9" in out.stdout
    assert "Traceback" not in out.stdout + out.stderr
    status = json.loads(netboot("status", "--json", config=demo.config).stdout)
    assert status["hosts"]["pi-desktop"]["served"] == 1


def test_render_metrics_counts_per_host():
    boots = BootCounters()
    boots.record("pi", "complete", 100)
    boots.record("pi", "complete", 50)
    boots.record("pi", "error: client", 0)
    text = render_metrics(TftpStats(requests=3, errors_sent={1: 2}), boots, {"pi": 4, "pc": None}, {"pi": True})
    assert 'netboot_boot_transfers_total{host="pi",outcome="complete"} 2' in text
    assert 'netboot_boot_transfers_total{host="pi",outcome="error"} 1' in text
    assert 'netboot_boot_bytes_total{host="pi"} 150' in text
    assert 'netboot_tftp_errors_sent_total{code="1"} 2' in text
    assert 'netboot_served_generation{host="pc"} -1' in text
    assert 'netboot_iscsi_session_up{host="pi"} 1' in text
    assert "netboot_tftp_requests_total 3" in text


def test_metrics_count_retransmits_reclaims_give_ups_and_fd_exhaustion():
    stats = TftpStats(retransmits=7, sessions_reclaimed=2, transfers_given_up=1, fd_exhausted=3)
    text = render_metrics(stats, BootCounters(), {}, {})
    for line in ("netboot_tftp_retransmits_total 7", "netboot_tftp_sessions_reclaimed_total 2",
                 "netboot_tftp_transfers_given_up_total 1", "netboot_tftp_fd_exhausted_total 3"):
        assert line in text


def test_daemon_metrics_endpoint(demo):
    mport = free_port(socket.SOCK_STREAM)
    text = demo.config.read_text().replace("[iscsi]", f'metrics_listen = "127.0.0.1:{mport}"\n\n[iscsi]', 1)
    demo.config.write_text(text)
    tport = int(text.split("tftp_listen = [\"127.0.0.1:")[1].split('"')[0])
    proc = subprocess.Popen(netboot_argv("serve", config=demo.config),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        metrics_url = f"http://127.0.0.1:{mport}/metrics"
        eventually(lambda: _reachable(metrics_url), what="the metrics endpoint", interval=0.1)
        got = subprocess.run(["curl", "-s", "-o", "-", f"tftp://127.0.0.1:{tport}/dc-a6-32-01-02-03/config.txt"],
                             capture_output=True, timeout=30)
        assert got.stdout.startswith(b"# netboot-appliance")
        # The record is emitted when the server sees the last ACK, just after curl exits.
        want = 'netboot_boot_transfers_total{host="pi-desktop",outcome="complete"} 1'
        eventually(lambda: want in _get(metrics_url), what=want)
        body = _get(metrics_url)
        assert 'netboot_served_generation{host="pi-desktop"} 2' in body
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, proc.stderr.read()


def test_demo_serves_what_it_prints(tmp_path):
    """``netboot demo``: every curl command it prints fetches the file ``netboot cat`` shows."""
    port = free_port()
    root = tmp_path / "demo"
    proc = subprocess.Popen(netboot_argv("demo", "--port", port, "--dir", root),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        commands = []
        deadline = time.monotonic() + 60
        for line in proc.stdout:
            if line.strip().startswith("curl "):
                commands.append(line.split()[-1])
            if "serving TFTP" in line or time.monotonic() > deadline:
                break
        assert len(commands) >= 10
        # The line comes once the port is bound: nothing else can bind it now.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe, pytest.raises(OSError):
            probe.bind(("127.0.0.1", port))
        config = root / "appliance.toml"
        hosts = {"dc-a6-32-01-02-03": "pi-desktop", "52-54-00-12-34-56": "arm-board",
                 "52-54-00-ab-cd-ef": "pc", "pxelinux.cfg": "arm-board"}
        for url in commands:
            path = url.split(f":{port}/", 1)[1]
            host = hosts.get(path.split("/", 1)[0]) if "/" in path else None
            if host is None:
                continue     # unprefixed files need the client's MAC (loopback has none)
            got = subprocess.run(["curl", "-s", "-o", "-", url], capture_output=True, timeout=60).stdout
            want = netboot("cat", host, path, config=config, text=False).stdout
            assert got == want and got, path
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("script, words, code", [
    (("cd /hosts/nosuch",), "no such path /hosts/nosuch", 2),
    (("cd /hosts/pi-desktop", "pinn 1"), "command not found pinn", 2),
    (("cd /hosts/pi-desktop", "pin abc"), "'abc' is not a generation number", 2),
    (("cd /hosts/pi-desktop", "trial"), "missing required parameter generation", 2),
    (("cd /hosts/pi-desktop", "pin 9"), "no generation 9", 2),
    (("cd /hosts/pi-desktop", "trial 1_0"), "'1_0' is not a generation number", 2),
])
def test_a_shell_script_with_a_mistake_stops_there_with_an_error_line(demo, tmp_path, script, words, code):
    """A typo in a shell script (a path, a command, a generation that does not exist) is an error
    line and exit 2, as for netboot's commands, never a traceback; what follows it is not run."""
    env = {"XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    out = netboot("shell", *script, "cd /hosts/pi-desktop", "pin 1", config=demo.config, env=env)
    assert "Traceback" not in out.stdout + out.stderr, out.stderr
    assert out.returncode == code, (out.returncode, out.stdout, out.stderr)
    assert words in (out.stdout + out.stderr).lower(), out.stdout + out.stderr
    status = json.loads(netboot("status", "--json", config=demo.config).stdout)
    assert status["hosts"]["pi-desktop"]["reason"] == "follow"      # the pin after the mistake did not run


def test_the_interactive_shell_survives_mistakes(demo, tmp_path):
    """Interactively, a mistake is reported and the shell goes on to the next command."""
    env = {"XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    lines = "cd /hosts/nosuch\ncd /hosts/pi-desktop\npin abc\nbogus\npin 1\nexit\n"
    out = netboot("shell", config=demo.config, env=env, input=lines)
    assert "Traceback" not in out.stdout + out.stderr, out.stderr
    assert out.returncode == 0, out.stderr
    assert "serving generation 1 (pin)" in out.stdout, out.stdout + out.stderr
    status = json.loads(netboot("status", "--json", config=demo.config).stdout)
    assert status["hosts"]["pi-desktop"]["served"] == 1


def test_a_shell_line_that_is_not_text_is_an_error_line(demo, tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    out = subprocess.run([sys.executable.encode(), b"-m", b"appliance.cli.main", b"-c", bytes(demo.config),
                          b"shell", b"cd /hosts/\xff"], capture_output=True, env=env, timeout=60)
    assert b"Traceback" not in out.stdout + out.stderr, out.stderr
    assert out.returncode == 2 and b"error:" in out.stdout


def test_a_damaged_state_file_does_not_end_the_interactive_shell(demo, tmp_path):
    """ls needs the state; when it is damaged that is an error line, and the session goes on."""
    env = {"XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    (demo.state / "state.json").write_bytes(b"\x00not json")
    out = netboot("shell", config=demo.config, env=env, input="ls\n/iscsi status\nexit\n")
    assert "Traceback" not in out.stdout + out.stderr, out.stderr
    assert "error:" in out.stdout and "is corrupt" in out.stdout, out.stdout
    assert "iSCSI is disabled" in out.stdout          # the command after the failure ran

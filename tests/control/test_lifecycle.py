"""``netboot serve`` as systemd sees it: READY=1, SIGHUP reload, SIGTERM, config follow
(sd_notify(3); README: `netboot serve`)."""

from __future__ import annotations

import json
import signal
import socket

from .control_harness import (PC, PC_PREFIX, PI, PI_PREFIX, RawTransfer, cli, curl, eventually, get,
                              repoint_profile)
from appliance.demo.store import add_generation, make_toplevel


def test_ready_is_sent_once_listening(store, make_daemon):
    d = make_daemon(store.config).start()
    # READY=1 arrived (start() waited for it): the port already answers, no sleep needed.
    assert get(store.port, PI_PREFIX + "cmdline.txt").startswith(store.init_of(PI, 2).encode())
    ready = [m for m in d.messages if "READY=1" in m.splitlines()]
    assert len(ready) == 1


def test_ready_not_sent_when_the_port_is_taken(store, make_daemon):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
        busy.bind(("127.0.0.1", store.port))
        d = make_daemon(store.config)
        try:
            d.start()
        except AssertionError as exc:
            assert "exited" in str(exc)
        else:
            raise AssertionError("daemon reported READY=1 without its TFTP port")
        assert d.proc.returncode != 0
        assert all("READY=1" not in m.splitlines() for m in d.messages)


# A daemon that does not stop on SIGTERM, or waits for a stalled transfer to time out (30 s
# without progress), outlasts this; one that stops (after at most the 2 s drain) does not, even on
# a loaded machine.
STOPPED_WITHIN = 15.0


def test_sigterm_exits_zero_promptly(daemon, store):
    assert get(store.port, PI_PREFIX + "config.txt")
    daemon.signal(signal.SIGTERM)
    assert daemon.proc.wait(STOPPED_WITHIN) == 0
    assert any("STOPPING=1" in m for m in (daemon.drain_notify() or daemon.messages))


def test_sigterm_with_a_stalled_transfer_exits_zero(daemon, store):
    stalled = RawTransfer(store.port, PI_PREFIX + "kernel8.img", blksize=512)
    stalled.step(3)                     # then never ACK again
    try:
        daemon.signal(signal.SIGTERM)
        assert daemon.proc.wait(STOPPED_WITHIN) == 0
    finally:
        stalled.close()


def _config_via_symlink(store, tmp_path):
    """Config at <etc>/appliance.toml → <static>/appliance.toml, like NixOS /etc → /etc/static.

    Editing the target is invisible to inotify on <etc>, so only SIGHUP can pick it up.
    """
    etc, static = tmp_path / "etc", tmp_path / "static"
    etc.mkdir()
    static.mkdir()
    target = static / "appliance.toml"
    target.write_text(store.read_config())
    (etc / "appliance.toml").symlink_to(target)
    return etc / "appliance.toml", target


def test_sighup_with_a_broken_config_keeps_the_old_one(store, make_daemon, tmp_path):
    link, target = _config_via_symlink(store, tmp_path)
    d = make_daemon(link).start()
    before = get(store.port, PI_PREFIX + "cmdline.txt")
    broken = store.read_config().replace('mac = "dc:a6:32:01:02:03"', 'mac = "dc:a6:32:1:2"')
    broken = broken.replace('cmdline = "ip=dhcp root=', 'cmdline = "BROKEN ip=dhcp root=')
    store.write_config(broken, target)
    n = len(d.messages)
    d.signal(signal.SIGHUP)
    d.wait_notify("RELOADING=1", after=n)
    d.wait_notify("READY=1", after=n + 1)
    log = d.log()
    assert "config reload rejected" in log
    assert "hosts.pi-desktop.mac" in log and "dc:a6:32:1:2" in log
    assert d.alive()
    # still serving the old configuration, old MAC prefix and old cmdline
    assert get(store.port, PI_PREFIX + "cmdline.txt") == before
    assert get(store.port, PC_PREFIX + "boot.ipxe")


def test_sighup_with_a_good_config_is_served_within_a_second(store, make_daemon, tmp_path):
    link, target = _config_via_symlink(store, tmp_path)
    d = make_daemon(link).start()
    # a new host with its own profile, and a changed cmdline for pi-desktop
    top = make_toplevel(store.layout.store, "lab", "25.11.1", kernel_params=("console=ttyS0",))
    add_generation(store.profile("lab"), top)
    text = store.read_config().replace('cmdline = "ip=dhcp root=', 'cmdline = "quiet ip=dhcp root=')
    text += (f'\n[hosts.lab]\nboot = "ipxe"\nmac = "52:54:00:00:00:42"\n'
             f'profile = "{store.profile("lab")}"\ncmdline = "ip=dhcp"\n')
    store.write_config(text, target)
    # A barrier: an event the daemon does follow (pc switches to generation 1), queued after the
    # edit; once it is logged, an event for the edit would have been handled too.
    n = d.log().count("pc: serving generation 1")
    repoint_profile(store.profile(PC), 1)
    eventually(lambda: d.log().count("pc: serving generation 1") > n, what="the profile switch followed")
    # no inotify path to the target: nothing changed yet
    assert "configuration reloaded" not in d.log()
    assert b"quiet" not in get(store.port, PI_PREFIX + "cmdline.txt")
    assert curl(store.port, "52-54-00-00-00-42/boot.ipxe").rc != 0
    d.signal(signal.SIGHUP)
    eventually(lambda: b" quiet ip=dhcp" in get(store.port, PI_PREFIX + "cmdline.txt"),
               what="changed cmdline served after SIGHUP")
    script, _ = eventually(lambda: curl(store.port, "52-54-00-00-00-42/boot.ipxe").data,
                           what="added host served after SIGHUP")
    assert f"init={top}/init".encode() in script


def test_config_edit_without_sighup_is_followed(daemon, store):
    text = store.read_config().replace('cmdline = "ip=dhcp root=', 'cmdline = "edited=1 ip=dhcp root=')
    store.write_config(text)
    eventually(lambda: b"edited=1" in get(store.port, PI_PREFIX + "cmdline.txt"),
               what="config edit picked up via inotify")
    # an in-place rewrite (not a rename) is followed too
    store.config.write_text(text.replace("edited=1", "edited=2"))
    eventually(lambda: b"edited=2" in get(store.port, PI_PREFIX + "cmdline.txt"),
               what="in-place config edit picked up via inotify")
    assert daemon.alive()


def test_broken_config_edit_without_sighup_keeps_serving(daemon, store):
    before = get(store.port, PI_PREFIX + "cmdline.txt")
    store.write_config(store.read_config().replace('boot = "rpi"', 'boot = "floppy"'))
    eventually(lambda: "config reload rejected" in daemon.log(), what="rejection logged")
    assert "hosts.pi-desktop.boot" in daemon.log()
    assert get(store.port, PI_PREFIX + "cmdline.txt") == before
    assert daemon.alive()


def _status_lines(daemon) -> list[str]:
    daemon.drain_notify()
    return [line[len("STATUS="):] for m in daemon.messages for line in m.splitlines() if line.startswith("STATUS=")]


def test_a_rejected_reload_is_on_the_status_line_and_check_says_the_daemon_keeps_the_old_config(
        store, make_daemon, tmp_path):
    """The operator who broke the file learns it from systemctl status and from check, not only the log."""
    link, target = _config_via_symlink(store, tmp_path)
    d = make_daemon(link).start()
    good = store.read_config()
    store.write_config(good.replace('mac = "dc:a6:32:01:02:03"', 'mac = "dc:a6:32:1:2"'), target)
    d.signal(signal.SIGHUP)
    line, _ = eventually(lambda: next((s for s in _status_lines(d) if "rejected" in s), None),
                         what="the rejected reload on the STATUS= line")
    assert "hosts.pi-desktop.mac" in line and "keeps serving" in line, line
    out = cli(link, "check")
    assert out.returncode == 2 and "hosts.pi-desktop.mac" in out.stderr
    assert f"netboot serve (pid {d.pid}) keeps serving the configuration it loaded last" in out.stderr, out.stderr
    # Fixed: the next reload clears it.
    store.write_config(good, target)
    n = len(_status_lines(d))
    d.signal(signal.SIGHUP)
    eventually(lambda: any(s.startswith("serving") for s in _status_lines(d)[n:]),
               what="STATUS= serving again")
    assert cli(link, "check").returncode == 0
    # Another file on the same state directory is not what the daemon serves: no such claim.
    other = tmp_path / "other.toml"
    other.write_text(good.replace('mac = "dc:a6:32:01:02:03"', 'mac = "dc:a6:32:1:2"'))
    out = cli(other, "check")
    assert out.returncode == 2 and "keeps serving" not in out.stderr, out.stderr


def test_a_second_serve_on_a_running_appliance_names_the_first_and_leaves_it_alone(daemon, store):
    """``netboot serve`` typed while the service runs: the port is taken by that daemon; say so,
    and leave its health file (status keeps showing the running one)."""
    out = cli(store.config, "serve", timeout=60)
    assert out.returncode == 1, out.stderr
    assert "Traceback" not in out.stderr
    assert f"netboot serve (pid {daemon.pid}) already serves this configuration" in out.stderr, out.stderr
    assert daemon.alive()
    assert json.loads((store.layout.state / "health.json").read_text())["pid"] == daemon.pid

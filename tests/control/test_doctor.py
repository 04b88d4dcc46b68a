"""``netboot doctor``: a real served demo store, then broken variants of it.

The served case runs ``netboot serve`` and fetches with curl (a real TFTP
client), so the doctor's port probes, boot events and stage analysis see a
real boot sequence; each broken variant breaks one thing an operator could
get wrong and checks that the doctor names it with its fix.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

from appliance.doctor import Facts, HostFacts, diagnose
from appliance.doctor.facts import Generation, LioFacts, PortFacts

from helpers import netboot

from .control_harness import PI, PI_PREFIX, curl, eventually, status


def doctor(config, *args: str) -> tuple[int, dict]:
    proc = netboot("doctor", "--json", *args, config=config)
    return proc.returncode, json.loads(proc.stdout)


def problems(report: dict, check: str | None = None) -> list[dict]:
    return [f for f in report["findings"] if f["status"] == "error" and (check is None or f["check"] == check)]


def test_a_served_pi_that_fetched_kernel_and_initrd_is_healthy(store, daemon) -> None:
    for name in ("start4.elf", "config.txt", "kernel8.img", "initrd"):
        assert curl(store.port, PI_PREFIX + name).ok, name
    eventually(lambda: len(status(store.config, PI)["hosts"][PI]["last_boot_events"]) >= 4)
    code, report = doctor(store.config, PI)
    assert code == 0, report
    assert problems(report) == []
    [port] = [f for f in report["findings"] if f["check"].startswith("port:")]
    # The test serves on 127.0.0.1: answering, and flagged as out of every other machine's reach.
    assert port["status"] == "warning" and "answering" in port["message"] and "loopback" in port["message"]
    host = [f["message"] for f in report["findings"] if f["check"] == f"host:{PI}"]
    assert any(m.startswith("serves generation 2 (follow)") for m in host)
    assert any("last boot fetched kernel and initrd" in m for m in host)


def test_nothing_listening_is_named_with_how_to_start_it(store) -> None:
    code, report = doctor(store.config, PI)
    assert code == 1
    [port] = problems(report, f"port:udp/{store.port}")
    assert "nothing listens on UDP port" in port["message"] and "netboot serve" in port["fix"]


def test_a_boot_that_stopped_after_the_firmware_is_located(store, daemon) -> None:
    for name in ("start4.elf", "config.txt"):
        assert curl(store.port, PI_PREFIX + name).ok
    events = store.layout.state / "events.jsonl"
    eventually(lambda: events.exists() and len(events.read_text().splitlines()) >= 2)
    code, report = doctor(store.config, PI)
    assert code == 1
    [stop] = problems(report, f"host:{PI}")
    assert "boot stopped before the kernel" in stop["message"] and "config.txt" in stop["message"]
    assert f"netboot cat {PI} {PI_PREFIX}config.txt" in stop["fix"]


def test_incomplete_firmware_is_named(store) -> None:
    (store.layout.firmware / "start4.elf").unlink()
    _, report = doctor(store.config, PI)
    found = [f for f in problems(report, f"host:{PI}") if "lacks start4.elf" in f["message"]]
    assert found and "[firmware.rpi] path" in found[0]["fix"]


def test_a_host_without_generations_is_told_how_to_publish(store) -> None:
    for link in store.layout.profiles.glob(f"{PI}*"):
        link.unlink()
    _, report = doctor(store.config, PI)
    [missing] = problems(report, f"host:{PI}")
    assert "no generation in profile" in missing["message"] and f"netboot register {PI}" in missing["fix"]


def test_a_bad_config_is_the_only_finding_and_points_at_check(store) -> None:
    text = store.config.read_text().replace('mac = "dc:a6:32:01:02:03"', 'mac = "dc:a6:32:1:2"')
    store.config.write_text(text)
    code, report = doctor(store.config)
    assert code == 1
    assert all(f["check"] == "config" for f in report["findings"])
    assert any("is not a MAC address" in f["message"] for f in report["findings"])


def test_text_output_gives_each_problem_its_fix(store) -> None:
    proc = netboot("doctor", PI, config=store.config)
    assert proc.returncode == 1
    lines = proc.stdout.splitlines()
    fail = next(i for i, line in enumerate(lines) if line.startswith("FAIL port:udp/"))
    assert lines[fail + 1].lstrip().startswith("fix: ")
    assert lines[-1].startswith("1 problem")


# -- the rules on hand-made facts (pure) ---------------------------------------------

def _pi(**kw) -> HostFacts:
    base = dict(name="pi", boot="rpi", tftp_prefix="pi/", profile="/p/pi", prefix_kind="literal",
                generations=(Generation(1, True),), served=1, reason="follow",
                tree_paths=frozenset(f"pi/{f}" for f in ("start4.elf", "fixup4.dat", "kernel8.img", "initrd",
                                                         "config.txt", "cmdline.txt", "bcm2711-rpi-400.dtb")),
                firmware_path="/fw", firmware_files=frozenset({"start4.elf", "fixup4.dat"}),
                iscsi=True, target="iqn.2026-11.lan.netboot:pi", sessions=0)
    base.update(kw)
    return HostFacts(**base)


def _events(*paths: str, outcome: str = "complete") -> tuple[dict, ...]:
    return tuple({"path": f"pi/{p}", "outcome": outcome, "client": "10.0.4.20:1234", "bytes": 10, "size": 10}
                 for p in paths)


def _facts(host: HostFacts, **kw) -> Facts:
    lio = LioFacts(True, True, frozenset({"configfs", "target_core_mod", "iscsi_target_mod"}), True,
                   "/etc/target", ())
    return Facts(config_path="/etc/netboot/appliance.toml", iscsi_enabled=True, server_address="10.0.4.3",
                 ports=(PortFacts("udp", "0.0.0.0:69", 69, True, True),), lio=lio, hosts=(host,), **kw)


def _errors(facts: Facts) -> list[str]:
    return [f"{f.message} | {f.fix}" for f in diagnose(facts) if f.status == "error"]


def test_rule_kernel_and_initrd_served_but_no_iscsi_login() -> None:
    [e] = _errors(_facts(_pi(events=_events("start4.elf", "kernel8.img", "initrd"))))
    assert "no iSCSI session" in e and "initiator IQN and CHAP" in e


def test_rule_aborted_initrd_transfer() -> None:
    events = _events("kernel8.img") + _events("initrd", outcome="timeout")
    [e] = _errors(_facts(_pi(events=events)))
    assert "initrd ended timeout" in e


def test_rule_no_request_gives_the_eeprom_settings() -> None:
    [w] = [f for f in diagnose(_facts(_pi(events=()))) if f.status == "warning"]
    assert "TFTP_IP=10.0.4.3" in w.fix and "TFTP_PREFIX=1, TFTP_PREFIX_STR=pi/" in w.fix and "BOOT_ORDER" in w.fix


def test_rule_lio_pending_changes_missing_module_and_dbroot() -> None:
    lio = LioFacts(True, True, frozenset({"configfs", "target_core_mod"}), True, "/var/target",
                   ("create backstore netboot-pi",))
    facts = _facts(_pi(events=_events("kernel8.img", "initrd"), sessions=1))
    facts = Facts(**{**facts.__dict__, "lio": lio})
    findings = {f.message: f for f in diagnose(facts) if f.check == "lio"}
    assert any("1 pending change" in m and f.fix == "netboot iscsi apply" for m, f in findings.items())
    assert any("iscsi_target_mod is not loaded" in m for m in findings)
    assert any("database root is /var/target" in m for m in findings)


def test_rule_unreadable_secret_and_port_not_answering() -> None:
    facts = _facts(_pi(events=_events("kernel8.img", "initrd"), sessions=1,
                       secret_problems=(("hosts.pi.iscsi.chap.secret_file", "/run/s cannot be read"),)))
    facts = Facts(**{**facts.__dict__, "ports": (PortFacts("udp", "0.0.0.0:69", 69, True, False, "probe: timed out"),)})
    errors = _errors(facts)
    assert any("cannot be read" in e and "mode 0400" in e for e in errors)
    assert any("a probe got no answer" in e and "openFirewall" in e for e in errors)


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl missing")
def test_doctor_is_in_the_help() -> None:
    proc = netboot("--help")
    assert "doctor" in proc.stdout


def test_a_pi5_is_checked_by_its_own_style():
    """rpi5 needs no start4.elf: the doctor asks the boot style what firmware and tree must hold."""
    whole = frozenset(f"pi/{f}" for f in ("config.txt", "cmdline.txt", "initrd", "kernel_2712.img",
                                          "bcm2712-rpi-5-b.dtb"))
    pi5 = dict(boot="rpi5", firmware_files=frozenset({"bcm2712-rpi-5-b.dtb"}), iscsi=False, target=None)
    assert not any("lacks" in e for e in _errors(_facts(_pi(tree_paths=whole, **pi5))))
    errors = _errors(_facts(_pi(tree_paths=whole - {"pi/bcm2712-rpi-5-b.dtb"}, **pi5)))
    assert [e for e in errors if "lacks" in e] == [e for e in errors if "lacks bcm2712-*.dtb" in e] != []
    assert not any("start4.elf" in e for e in errors)
    # Never fetched anything: the fix is the Pi's EEPROM, as for a Pi 4.
    assert any("rpi-eeprom-config" in f.fix for f in diagnose(_facts(_pi(tree_paths=whole, **pi5))))


def test_rule_a_tftp_port_on_loopback_only_is_unreachable_for_every_client() -> None:
    """A demo config copied to a server: "listening and answering" on 127.0.0.1 boots nothing."""
    facts = _facts(_pi(events=_events("kernel8.img", "initrd"), sessions=1))
    for address in ("127.0.0.1:69", "[::1]:69"):
        facts = Facts(**{**facts.__dict__, "ports": (PortFacts("udp", address, 69, True, True),)})
        [port] = [f for f in diagnose(facts) if f.check == "port:udp/69"]
        assert port.status == "warning" and "loopback" in port.message, port
        assert "tftp_listen" in port.fix


def test_a_damaged_state_file_is_one_finding_and_every_host_is_still_checked(store) -> None:
    """The daemon serves what a damaged state file still says: doctor checks those trees, and
    names the damage once, not once per host."""
    store.state_file().write_bytes(b"\x00not json")
    _, report = doctor(store.config)
    state = [f for f in report["findings"] if "corrupt" in f["message"]]
    assert len(state) == 1, state
    assert not [f for f in report["findings"] if f["check"].startswith("host:") and "boot tree" in f["message"]]
    assert any(f["check"] == f"host:{PI}" and f["message"].startswith("serves generation 2")
               for f in report["findings"])


def test_rule_a_kernel_served_under_a_config_txt_name_is_seen_as_the_kernel() -> None:
    """config_txt = ["kernel=Image"]: the boot that fetched Image and initrd got its kernel."""
    host = _pi(kernel_names=frozenset({"Image"}), events=_events("start4.elf", "config.txt", "Image", "initrd"),
               sessions=1)
    assert _errors(_facts(host)) == []


def test_what_the_running_daemon_reports_degraded_is_a_finding(store, make_daemon, tmp_path) -> None:
    """doctor is where an operator looks when a machine will not boot: the daemon's own
    degradations (here: GC roots it cannot make) are among the findings."""
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    text = re.sub(r'gcroots_dir = "[^"]*"', f'gcroots_dir = "{blocker / "gcroots"}"', store.read_config())
    store.write_config(text)
    make_daemon(store.config).start()
    code, report = doctor(store.config)
    [found] = [f for f in report["findings"] if f["check"] == "daemon:gcroots"]
    assert found["status"] == "error" and "GC roots" in found["message"] and found["fix"]
    assert code == 1


def test_a_bad_config_with_the_daemon_running_says_it_keeps_the_last_good_one(store, daemon) -> None:
    store.write_config(store.read_config().replace('mac = "dc:a6:32:01:02:03"', 'mac = "dc:a6:32:1:2"'))
    code, report = doctor(store.config)
    assert code == 1
    assert all(f["check"] == "config" for f in report["findings"])
    assert any(f"netboot serve (pid {daemon.pid}) keeps serving" in f["message"] for f in report["findings"])


def test_a_busy_server_that_answers_late_is_answering(store) -> None:
    """A TFTP server busy for a moment (a boot storm, a loaded machine) answers the probe
    late: that is a server that answers, not one to tell the operator is down."""
    from appliance.doctor.gather import gather

    busy_for = 2.0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server:
        server.bind(("127.0.0.1", store.port))
        server.settimeout(30)

        def answer_late() -> None:
            try:
                _, client = server.recvfrom(2048)
            except OSError:
                return
            time.sleep(busy_for)        # the busy server's delay, not a wait for anything
            server.sendto(b"\0\5\0\1File not found\0", client)

        responder = threading.Thread(target=answer_late)
        responder.start()
        try:
            facts = gather(store.config, PI)
        finally:
            responder.join(busy_for + 35)
    [port] = [p for p in facts.ports if p.proto == "udp"]
    assert port.bound and port.reachable, port


def test_rule_an_invalid_current_generation_is_named_with_why() -> None:
    """After a nixos-rebuild whose generation is refused, the host boots an older one: the doctor
    says which and why, not only "serves generation 1"."""
    empty = "kernel: /nix/store/x-linux/Image is empty (a truncated copy?)"
    gens = (Generation(1, True), Generation(2, False, (empty,)))
    [w] = [f for f in diagnose(_facts(_pi(generations=gens, current=2, served=1, reason="newest",
                                          events=_events("start4.elf", "kernel8.img", "initrd"))))
           if f.status == "warning" and f.check == "host:pi"]
    assert "current generation 2 is not served" in w.message and "is empty" in w.message
    assert "nix-env -p /p/pi --rollback" in w.fix
    # A pin away from the current generation is the operator's choice: nothing to warn about.
    assert not [f for f in diagnose(_facts(_pi(generations=(Generation(1, True), Generation(2, True)), current=2,
                                               served=1, reason="pin",
                                               events=_events("start4.elf", "kernel8.img", "initrd"))))
                if f.status == "warning" and f.check == "host:pi"]


@pytest.mark.parametrize("content, words", [(b"\xff\xfeZq9-hidden-77\n", "not UTF-8"), (None, "not a regular file")])
def test_doctor_reports_a_secret_file_it_cannot_use_without_crashing_or_blocking(tmp_path, content, words) -> None:
    """A non-UTF-8 secret crashed `netboot doctor`; a FIFO named as the secret blocked it."""
    import os
    import sys

    from appliance.doctor.gather import gather

    sys.path.insert(0, str(Path(__file__).parents[1]))
    from test_config import write_valid_tree

    path, text = write_valid_tree(tmp_path)
    path.write_text(text)
    secret = tmp_path / "secrets" / "chap"
    secret.unlink()
    if content is None:
        os.mkfifo(secret)
    else:
        secret.write_bytes(content)
    result: list = []
    worker = threading.Thread(target=lambda: result.append(
        gather(path, "pi-desktop", proc=tmp_path / "proc", configfs=tmp_path / "configfs", probe=False)), daemon=True)
    worker.start()
    worker.join(15)
    if worker.is_alive():
        os.close(os.open(secret, os.O_WRONLY | os.O_NONBLOCK))   # release the blocked reader
        worker.join(10)
        pytest.fail("doctor blocked reading the secret file")
    assert result, "gather raised"
    [problem] = [p for key, p in result[0].hosts[0].secret_problems if key.endswith("chap.secret_file")]
    assert words in problem and "Zq9" not in problem and "0xff" not in problem, problem

"""Operator commands against a running daemon: pin, unpin, rollback, trial, confirm (README: Operator workflow)."""

from __future__ import annotations

import json
import os
import time

from helpers import netboot_argv

from .control_harness import (PI, PI_PREFIX, cli, cli_ok, eventually, get, history, run_parallel, status)
from appliance.demo.store import add_generation, make_toplevel


def _kernel_is(store, number: int):
    want = store.kernel_bytes(PI, number)
    return lambda: get(store.port, PI_PREFIX + "kernel8.img") == want


def _state_bytes(store) -> bytes | None:
    try:
        return store.state_file().read_bytes()
    except FileNotFoundError:
        return None


def test_pin_unpin_rollback_take_effect_without_restart(daemon, store):
    assert _kernel_is(store, 2)()
    cli_ok(store.config, "pin", PI, "1")
    eventually(_kernel_is(store, 1), what="pin 1 served")
    assert get(store.port, PI_PREFIX + "cmdline.txt").startswith(store.init_of(PI, 1).encode())
    cli_ok(store.config, "unpin", PI)
    eventually(_kernel_is(store, 2), what="unpin → follow 2")
    out = cli_ok(store.config, "rollback", PI)
    assert "generation 1" in out
    eventually(_kernel_is(store, 1), what="rollback → 1")
    s = status(store.config, PI)["hosts"][PI]
    assert (s["served"], s["reason"], s["pin"]) == (1, "pin", 1)
    assert daemon.starts == 1 and daemon.alive()


def test_a_missing_state_directory_is_made_and_watched(store, make_daemon):
    """A fresh install has no state directory yet: a pin from the CLI must still reach the daemon."""
    import shutil

    shutil.rmtree(store.state_file().parent)
    daemon = make_daemon(store.config).start()
    assert store.state_file().parent.is_dir()
    cli_ok(store.config, "pin", PI, "1")
    eventually(_kernel_is(store, 1), what="pin 1 served")
    assert daemon.alive()


def test_rollback_with_nothing_older_fails_and_changes_nothing(daemon, store):
    cli_ok(store.config, "pin", PI, "1")
    eventually(_kernel_is(store, 1), what="pin 1 served")
    before = _state_bytes(store)
    r = cli(store.config, "rollback", PI)
    assert r.returncode == 1
    assert "no valid generation older than 1" in r.stderr
    assert _state_bytes(store) == before
    assert _kernel_is(store, 1)()


def test_pin_to_a_missing_or_invalid_generation_is_refused_and_changes_nothing(daemon, store):
    # generation 3: registered but its kernel never arrived
    top = make_toplevel(store.layout.store, PI, "25.05.3")
    os.unlink(os.path.realpath(top / "kernel"))
    add_generation(store.profile(PI), top, make_current=False)
    before = _state_bytes(store)
    r = cli(store.config, "pin", PI, "7")
    assert r.returncode == 2                 # a number that names nothing: a usage error
    assert "no generation 7" in r.stderr and "1, 2, 3" in r.stderr
    r = cli(store.config, "pin", PI, "3")
    assert r.returncode == 1
    assert "generation 3 is invalid" in r.stderr and "kernel" in r.stderr
    r = cli(store.config, "trial", PI, "3")
    assert r.returncode == 1 and "invalid" in r.stderr
    assert _state_bytes(store) == before
    assert _kernel_is(store, 2)()
    assert status(store.config, PI)["hosts"][PI]["pin"] is None


def _start_trial(store, number: int = 1) -> None:
    cli_ok(store.config, "trial", PI, str(number))
    eventually(_kernel_is(store, number), what=f"trial {number} served")


def _reverted(store, host: str = PI):
    entries = [h for h in history(store.config, host) if h["event"] == "trial-reverted"]
    return entries[-1] if entries else None


def _recorded_revert(store, host: str = PI) -> dict:
    """The trial-reverted entry, once the daemon has written it: the request that reverts is
    served at once, the state file is written after it by the control loop."""
    entry, _ = eventually(lambda: _reverted(store, host), what=f"{host}'s trial revert recorded")
    return entry


def _pi_status_when(store, ready):
    """PI's status once ``ready(status)`` holds (the daemon writes TFTP-side decisions after serving)."""
    def current():
        st = status(store.config, PI)["hosts"][PI]
        return st if ready(st) else None

    s, _ = eventually(current, what="the daemon to record what it served")
    return s


def test_trial_serves_once_then_a_refetched_kernel_reverts(daemon, store):
    _start_trial(store)                         # the fetch in _start_trial is the complete kernel fetch
    s = _pi_status_when(store, lambda st: st["trial"] and st["trial"]["kernel_served_at"] is not None)
    assert s["trial"]["generation"] == 1
    assert s["reason"] == "trial"
    # the host boots again before anything confirmed: that very request gets the previous generation
    assert get(store.port, PI_PREFIX + "kernel8.img") == store.kernel_bytes(PI, 2)
    entry = _recorded_revert(store)
    assert entry["generation"] == 1
    assert "kernel8.img again" in entry["reason"] and "now serving 2" in entry["reason"]
    s = _pi_status_when(store, lambda st: st["trial"] is None)
    assert s["served"] == 2
    assert get(store.port, PI_PREFIX + "cmdline.txt").startswith(store.init_of(PI, 2).encode())


def test_trial_reverts_on_the_next_config_txt(daemon, store):
    _start_trial(store)
    assert get(store.port, PI_PREFIX + "config.txt")     # the EEPROM's first file of a new boot
    entry = _recorded_revert(store)
    assert "config.txt again" in entry["reason"]
    # already reverted when the kernel of that boot is asked for
    assert get(store.port, PI_PREFIX + "kernel8.img") == store.kernel_bytes(PI, 2)


def test_trial_files_before_the_kernel_do_not_revert(daemon, store):
    cli_ok(store.config, "trial", PI, "1")
    eventually(lambda: get(store.port, PI_PREFIX + "cmdline.txt").startswith(store.init_of(PI, 1).encode()),
               what="trial cmdline served")
    assert get(store.port, PI_PREFIX + "config.txt")     # start of the trial boot itself
    assert get(store.port, PI_PREFIX + "kernel8.img") == store.kernel_bytes(PI, 1)
    assert _reverted(store) is None


def test_trial_reverts_to_last_known_good(daemon, store):
    top = make_toplevel(store.layout.store, PI, "25.05.3")
    add_generation(store.profile(PI), top)
    eventually(_kernel_is(store, 3), what="generation 3 served")
    cli_ok(store.config, "pin", PI, "2")
    cli_ok(store.config, "confirm", PI)         # LKG = 2
    cli_ok(store.config, "unpin", PI)
    eventually(_kernel_is(store, 3), what="following 3 again")
    _start_trial(store, 1)
    assert get(store.port, PI_PREFIX + "kernel8.img") == store.kernel_bytes(PI, 2)
    assert "now serving 2" in _recorded_revert(store)["reason"]


def test_trial_confirm_moves_last_known_good(daemon, store):
    _start_trial(store)
    out = cli_ok(store.config, "confirm", PI)
    assert "generation 1" in out
    s = status(store.config, PI)["hosts"][PI]
    assert s["trial"] is None
    assert s["last_known_good"] == 1
    assert s["served"] == 1
    assert any(h["event"] == "trial-confirmed" for h in s["history"])
    # a later boot is no longer a trial: no revert
    assert get(store.port, PI_PREFIX + "config.txt")
    assert get(store.port, PI_PREFIX + "kernel8.img") == store.kernel_bytes(PI, 1)
    assert _reverted(store) is None


def test_trial_timeout_reverts(store, make_daemon):
    store.write_config(store.set_host_option(PI, "trial_timeout = 2"))
    make_daemon(store.config).start()
    _start_trial(store)
    started = time.monotonic()
    entry, _ = eventually(lambda: _reverted(store), what="trial timed out")
    assert time.monotonic() - started >= 1.0
    assert "no confirmation within trial_timeout" in entry["reason"]
    eventually(_kernel_is(store, 2), what="reverted to 2")


def test_trial_on_an_unknown_host_is_a_usage_error(daemon, store):
    r = cli(store.config, "trial", "no-such-host", "1")
    assert r.returncode == 2
    assert "unknown host 'no-such-host'" in r.stderr and PI in r.stderr


def test_parallel_writers_keep_the_state_valid(daemon, store):
    cli_ok(store.config, "pin", PI, "2")
    entries_before = len(json.loads(store.state_file().read_text())["history"])
    # pin and trial always record a transition (an unpin of an unpinned host records none)
    commands = [netboot_argv(*(["pin", PI, str(1 + i % 2)] if i % 3 else ["trial", PI, "1"]), config=store.config)
                for i in range(10)]
    results = run_parallel(commands)
    assert all(r.returncode == 0 for r in results), [r.stderr for r in results]
    doc = json.loads(store.state_file().read_text())
    assert doc["version"] == 1
    # every writer's change was recorded: none lost by a concurrent read-modify-write
    assert len(doc["history"]) == entries_before + 10
    final_pin = doc["hosts"][PI].get("pin")
    final_trial = (doc["hosts"][PI].get("trial") or {}).get("generation")
    assert final_pin in (1, 2) and final_trial in (1, None)
    last = doc["history"][-1]
    assert last["generation"] == (final_trial if last["event"] == "trial-start" else final_pin)
    assert not list(store.layout.state.glob("state.json.corrupt-*"))
    served = final_trial if final_trial is not None else final_pin
    eventually(_kernel_is(store, served), what="daemon adopted the final state")


ARM_MENU = "pxelinux.cfg/01-52-54-00-12-34-56"


def _if(value, predicate):
    return value if predicate(value) else None


def _default_entry(menu: bytes) -> str:
    for line in menu.decode().splitlines():
        if line.strip().lower().startswith("default"):
            return line.split(None, 1)[1].strip()
    raise AssertionError(f"no default in {menu!r}")


def test_uboot_trial_reverts_when_the_menu_is_fetched_again(daemon, store):
    """U-Boot's own ``pxe`` boot target fetches pxelinux.cfg directly, without boot.scr.uimg."""
    before = _default_entry(get(store.port, ARM_MENU))
    cli_ok(store.config, "trial", "arm-board", "1")
    menu, _ = eventually(lambda: _if(get(store.port, ARM_MENU), lambda m: _default_entry(m) != before),
                         what="trial menu served")
    assert "1" in _default_entry(menu)
    assert get(store.port, "52-54-00-12-34-56/generations/1/kernel")      # the trial boot's kernel
    menu = get(store.port, ARM_MENU)                                         # the next boot
    assert _default_entry(menu) == before
    assert "pxelinux.cfg" in _recorded_revert(store, "arm-board")["reason"]


def test_ipxe_trial_reverts_on_the_next_script(daemon, store):
    cli_ok(store.config, "trial", "pc", "1")
    eventually(lambda: b"--default nixos-1" in get(store.port, "boot.ipxe"), what="trial script served")
    assert get(store.port, "52-54-00-ab-cd-ef/generations/1/kernel")
    assert b"--default nixos-2" in get(store.port, "boot.ipxe")
    assert _recorded_revert(store, "pc")

"""Operator state and transitions (README: Operator workflow): pins, rollback, trials, the state file."""

from __future__ import annotations

import json
import multiprocessing
import os
from pathlib import Path

import pytest

from appliance.control import operations
from appliance.control.selection import select_generation
from appliance.control.state import HostState, State, StateStore, Trial
from appliance.demo.store import add_generation, make_toplevel
from appliance.errors import GenerationError, StateCorrupt, StateError, UnknownGeneration


def set_pin(state: State, host: str, number: int, reason: str) -> State:
    """A pinned state, without the profile checks of ``operations.pin`` (state-store tests only)."""
    return state.with_host(host, HostState(pin=number), "pin", number, reason)
from appliance.nix import StoreRoots, read_profile

T0 = 1_800_000_000.0


class Gens:
    """A profile with generations 1..N; ``broken`` ones lack their kernel."""

    def __init__(self, root: Path, count: int, broken: tuple[int, ...] = (), current: int | None = None) -> None:
        self.store = root / "store"
        self.store.mkdir(exist_ok=True)
        self.path = root / "profiles" / "h"
        self.roots = StoreRoots.of(self.store)
        for n in range(1, count + 1):
            top = make_toplevel(self.store, "h", str(n), kernel_size=64, initrd_size=64)
            if n in broken:
                os.unlink(os.path.realpath(top / "kernel"))
            add_generation(self.path, top)
        if current is not None:
            self.point_at(current)

    def point_at(self, n: int) -> None:
        self.path.unlink()
        os.symlink(f"h-{n}-link", self.path)

    @property
    def profile(self):
        return read_profile(self.path, self.roots)

    def served(self, state: State):
        return select_generation(self.profile, state.host("h"))


@pytest.fixture
def gens_factory(tmp_path):
    root = Path(os.path.realpath(tmp_path))
    made = []

    def make(count: int, broken: tuple[int, ...] = (), current: int | None = None) -> Gens:
        made.append(root / f"p{len(made)}")
        made[-1].mkdir()
        return Gens(made[-1], count, broken, current)

    return make


# -- selection ----------------------------------------------------------------------------


def test_selection_precedence(gens_factory):
    g = gens_factory(4, broken=(4,), current=3)
    p = g.profile
    assert select_generation(p, HostState()).number == 3
    assert select_generation(p, HostState()).reason == "follow"
    assert select_generation(p, HostState(pin=1)).reason == "pin"
    assert select_generation(p, HostState(pin=1)).number == 1
    assert select_generation(p, HostState(pin=1, trial=Trial(2, None, 0.0))).number == 2
    assert select_generation(p, HostState(pin=1, trial=Trial(2, None, 0.0))).reason == "trial"
    # An invalid pin is not honoured, and status can say why.
    sel = select_generation(p, HostState(pin=4))
    assert (sel.number, sel.reason) == (3, "follow")
    assert "pin generation 4" in sel.note


def test_invalid_current_falls_back_to_last_known_good_then_newest(gens_factory):
    g = gens_factory(4, broken=(4,), current=4)
    p = g.profile
    sel = select_generation(p, HostState(last_known_good=1))
    assert (sel.number, sel.reason) == (1, "last-known-good")
    assert "4" in sel.note
    sel = select_generation(p, HostState())
    assert (sel.number, sel.reason) == (3, "newest")


def test_nothing_valid_selects_nothing(gens_factory):
    g = gens_factory(2, broken=(1, 2))
    sel = select_generation(g.profile, HostState(pin=1, last_known_good=2))
    assert sel.generation is None and sel.reason == "none"


# -- operations ---------------------------------------------------------------------------


def test_pin_a_missing_or_invalid_generation_is_refused(gens_factory):
    g = gens_factory(3, broken=(2,))
    with pytest.raises(UnknownGeneration, match=r"h: no generation 7 \(generations: 1, 2, 3\)"):
        operations.pin(State(), "h", g.profile, 7, T0)
    with pytest.raises(GenerationError, match="generation 2 is invalid") as info:
        operations.pin(State(), "h", g.profile, 2, T0)
    assert "kernel" in str(info.value)


def test_pin_and_unpin(gens_factory):
    g = gens_factory(3)
    state = operations.pin(State(), "h", g.profile, 1, T0)
    assert state.host("h").pin == 1
    assert (g.served(state).number, g.served(state).reason) == (1, "pin")
    assert state.history[-1] == {"time": T0, "host": "h", "event": "pin", "generation": 1,
                                 "reason": "pinned by operator"}
    state = operations.unpin(state, "h", T0 + 1)
    assert state.host("h").pin is None
    assert (g.served(state).number, g.served(state).reason) == (3, "follow")
    assert state.history[-1]["event"] == "unpin"


def test_rollback_with_nothing_older_is_an_error(gens_factory):
    g = gens_factory(2, broken=(1,))
    state = State()
    with pytest.raises(GenerationError, match="no valid generation older than 2"):
        operations.rollback(state, "h", g.profile, g.served(state), T0)
    empty = gens_factory(0)
    with pytest.raises(GenerationError, match="nothing is served"):
        operations.rollback(state, "h", empty.profile, empty.served(state), T0)


def test_rollback_picks_the_newest_valid_older_generation(gens_factory):
    g = gens_factory(5, broken=(2, 4))
    state = State()
    assert g.served(state).number == 5
    state = operations.rollback(state, "h", g.profile, g.served(state), T0)
    assert state.host("h").pin == 3
    assert g.served(state).number == 3
    assert state.history[-1]["event"] == "rollback"
    assert "5" in state.history[-1]["reason"]
    state = operations.rollback(state, "h", g.profile, g.served(state), T0)
    assert state.host("h").pin == 1
    with pytest.raises(GenerationError):
        operations.rollback(state, "h", g.profile, g.served(state), T0)


def test_rollback_ends_a_running_trial(gens_factory):
    g = gens_factory(3, current=2)
    state = operations.start_trial(State(), "h", g.profile, 3, g.served(State()), T0)
    state = operations.rollback(state, "h", g.profile, g.served(state), T0)
    assert state.host("h").trial is None
    assert g.served(state).number == 2


def test_trial_then_confirm(gens_factory):
    g = gens_factory(3, current=2)
    state = operations.confirm(State(), "h", g.served(State()), g.profile.current, T0)
    assert state.host("h").last_known_good == 2
    state = operations.start_trial(state, "h", g.profile, 3, g.served(state), T0 + 10)
    trial = state.host("h").trial
    assert (trial.generation, trial.previous, trial.started) == (3, 2, T0 + 10)
    assert (g.served(state).number, g.served(state).reason) == (3, "trial")
    assert state.host("h").last_known_good == 2
    state = operations.confirm(state, "h", g.served(state), g.profile.current, T0 + 20)
    hs = state.host("h")
    assert hs.trial is None
    assert hs.last_known_good == 3
    # The confirmed generation stays served although the profile points at 2.
    assert g.served(state).number == 3
    assert state.history[-1]["event"] == "trial-confirmed"
    assert state.history[-1]["generation"] == 3


def test_confirming_a_trial_of_the_profiles_current_keeps_following(gens_factory):
    g = gens_factory(3, current=3)
    state = operations.pin(State(), "h", g.profile, 2, T0)
    state = operations.unpin(state, "h", T0)
    state = operations.start_trial(state, "h", g.profile, 3, g.served(state), T0)
    state = operations.confirm(state, "h", g.served(state), g.profile.current, T0)
    assert state.host("h").pin is None
    assert state.host("h").last_known_good == 3
    assert g.served(state).reason == "follow"


def test_trial_of_an_invalid_generation_is_refused(gens_factory):
    g = gens_factory(3, broken=(3,))
    with pytest.raises(GenerationError):
        operations.start_trial(State(), "h", g.profile, 3, g.served(State()), T0)
    with pytest.raises(GenerationError):
        operations.start_trial(State(), "h", g.profile, 9, g.served(State()), T0)


def test_revert_trial_pins_last_known_good_and_records_why(gens_factory):
    g = gens_factory(3, current=3)
    state = operations.pin(State(), "h", g.profile, 1, T0)
    state = operations.confirm(state, "h", g.served(state), g.profile.current, T0)
    state = operations.unpin(state, "h", T0)
    assert g.served(state).number == 3
    state = operations.start_trial(state, "h", g.profile, 2, g.served(state), T0)
    state = operations.revert_trial(state, "h", "kernel fetched again before confirmation", T0 + 5)
    hs = state.host("h")
    assert hs.trial is None
    assert hs.pin == 1 and hs.last_known_good == 1
    assert (g.served(state).number, g.served(state).reason) == (1, "pin")
    last = state.history[-1]
    assert last["event"] == "trial-reverted" and last["generation"] == 2
    assert "kernel fetched again before confirmation" in last["reason"]
    assert last["time"] == T0 + 5
    # Reverting with no trial running changes nothing.
    assert operations.revert_trial(state, "h", "again", T0 + 6) == state


def test_revert_trial_without_last_known_good_goes_back_to_what_was_served(gens_factory):
    g = gens_factory(3, current=2)
    state = operations.start_trial(State(), "h", g.profile, 3, g.served(State()), T0)
    state = operations.revert_trial(state, "h", "timeout", T0)
    assert state.host("h").pin == 2
    assert g.served(state).number == 2


def test_trial_due_after_timeout(gens_factory):
    g = gens_factory(2, current=1)
    assert operations.trial_due(State(), "h", 900, T0) is None
    state = operations.start_trial(State(), "h", g.profile, 2, g.served(State()), T0)
    assert operations.trial_due(state, "h", 900, T0 + 899.9) is None
    why = operations.trial_due(state, "h", 900, T0 + 900)
    assert why is not None and "900" in why
    assert operations.trial_due(state, "h", 900, T0 + 5000) is not None


def test_trial_kernel_served_is_recorded_once(gens_factory):
    g = gens_factory(2, current=1)
    state = operations.start_trial(State(), "h", g.profile, 2, g.served(State()), T0)
    state = operations.trial_kernel_served(state, "h", T0 + 1)
    state = operations.trial_kernel_served(state, "h", T0 + 2)
    assert state.host("h").trial.kernel_served_at == T0 + 1


# -- the state file -------------------------------------------------------------------------


def sample_state() -> State:
    state = set_pin(State(), "a", 4, "test")
    trial = Trial(generation=7, previous=6, started=T0, kernel_served_at=T0 + 3)
    state = state.with_host("b", state.host("b")._replace(trial=trial, last_known_good=6), "trial-start", 7, "t", T0)
    return state


def test_state_survives_a_reload(tmp_path):
    store = StateStore(tmp_path / "state")
    state = sample_state()
    store.save(state)
    again = StateStore(tmp_path / "state").load()
    assert again == state
    assert again.host("b").trial.kernel_served_at == T0 + 3
    assert again.host("a").pin == 4
    assert again.host("nobody").pin is None


def test_state_file_is_replaced_atomically(tmp_path):
    store = StateStore(tmp_path)
    store.save(sample_state())
    first = os.stat(store.path).st_ino
    store.update(lambda s: set_pin(s, "a", 5, "x"))
    # A new file renamed over the old one (never rewritten in place), no temp file left.
    assert os.stat(store.path).st_ino != first
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != ".lock") == ["state.json", "state.json.last-good"]
    assert store.last_good_path.read_bytes() == store.path.read_bytes()
    doc = json.loads(store.path.read_text())
    assert doc["version"] == 1 and doc["hosts"]["a"]["pin"] == 5


def test_missing_state_file_is_empty_state(tmp_path):
    store = StateStore(tmp_path / "nothing-yet")
    assert store.load() == State()
    assert store.corrupt_files() == []


@pytest.mark.parametrize("content", [
    b'{"version": 1, "hosts": {"a": {"pin": 3}',          # truncated
    b"\x00\xff\xfe garbage \x89PNG",                     # not text
    b"",                                                 # empty
    b'{"version": 2, "hosts": {}}',                     # unknown version
    b'{"version": 1, "hosts": {"a": {"pin": "three"}}}',  # wrong type
    b'[1, 2, 3]',
])
def test_corrupt_state_file_is_refused_and_kept(tmp_path, content):
    state_file = tmp_path / "state.json"
    state_file.write_bytes(content)
    store = StateStore(tmp_path)
    with pytest.raises(StateCorrupt) as info:
        store.load()
    assert state_file.read_bytes() == content        # left in place, not replaced by an empty state
    aside = store.corrupt_files()
    assert len(aside) == 1 and aside[0].name.startswith("state.json.corrupt-")
    assert info.value.copy == aside[0] and aside[0].read_bytes() == content
    # A write is refused too: nothing is written over what could not be read.
    with pytest.raises(StateCorrupt):
        store.update(lambda s: set_pin(s, "a", 1, "x"))
    assert state_file.read_bytes() == content
    assert len(store.corrupt_files()) == 1


def test_repair_then_writes_work_again(tmp_path):
    (tmp_path / "state.json").write_text("{{{")
    store = StateStore(tmp_path)
    assert store.repair() is not None
    new = store.update(lambda s: set_pin(s, "a", 2, "x"))
    assert new.host("a").pin == 2
    assert len(store.corrupt_files()) == 1


def _bump(state_dir: str, worker: int, rounds: int) -> None:
    store = StateStore(Path(state_dir))

    def change(state: State) -> State:
        hs = state.host("counter")
        return state.with_host("counter", hs._replace(pin=(hs.pin or 0) + 1), "bump", worker, str(worker))

    for _ in range(rounds):
        store.update(change)


def test_concurrent_writers_lose_no_update(tmp_path):
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_bump, args=(str(tmp_path), w, 50)) for w in (1, 2, 3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    state = StateStore(tmp_path).load()
    assert state.host("counter").pin == 150
    assert len(state.history) == 150
    assert sorted(h["generation"] for h in state.history) == [1] * 50 + [2] * 50 + [3] * 50
    assert StateStore(tmp_path).corrupt_files() == []


def test_boot_events(tmp_path):
    store = StateStore(tmp_path)
    for i in range(15):
        store.append_event({"host": "a" if i % 2 else "b", "n": i})
    assert [e["n"] for e in store.recent_events("a", limit=3)] == [9, 11, 13]
    assert [e["n"] for e in store.recent_events(limit=2)] == [13, 14]
    assert store.recent_events("nobody") == []


# -- the CLI reports a corrupt state file -----------------------------------------------------


def test_status_and_check_report_a_corrupt_state_file(demo_layout, netboot_cli):
    (demo_layout.state / "state.json").write_text('{"version": 1, "hosts": {"pi-desktop": {"pin": 1}')
    out = netboot_cli("-c", demo_layout.config, "status", "--json")
    assert out.returncode == 1
    assert "state.json is corrupt" in out.stderr and "state.json.corrupt-" in out.stderr
    # With --json a failure is also a JSON error document on stdout, for scripts.
    error = json.loads(out.stdout)
    assert error["kind"] == "StateCorrupt" and "state.json.corrupt-" in error["error"]
    out = netboot_cli("-c", demo_layout.config, "check")
    assert out.returncode == 2
    assert "damaged state file is kept" in out.stderr and "netboot state repair" in out.stderr


def test_check_reports_a_corrupt_state_file_before_anything_loaded_it(demo_layout, netboot_cli):
    (demo_layout.state / "state.json").write_text("garbage")
    out = netboot_cli("-c", demo_layout.config, "check")
    assert out.returncode == 2
    assert "state" in out.stderr and "corrupt" in out.stderr


def test_a_trial_replacing_a_running_trial_still_reverts_to_what_was_served_before_both(gens_factory):
    """``trial h 3`` then ``trial h 1``: the unconfirmed 3 never becomes the way back."""
    g = gens_factory(3, current=2)
    state = operations.start_trial(State(), "h", g.profile, 3, g.served(State()), T0)
    state = operations.start_trial(state, "h", g.profile, 1, g.served(state), T0 + 1)
    trial = state.host("h").trial
    assert (trial.generation, trial.previous, trial.started) == (1, 2, T0 + 1)
    assert "replaces the trial of 3" in state.history[-1]["reason"]
    state = operations.revert_trial(state, "h", "timeout", T0 + 2)
    assert state.host("h").pin == 2
    assert g.served(state).number == 2


def test_a_lock_held_by_a_hung_process_is_an_error_naming_it_not_a_silent_hang(tmp_path):
    """A netboot process stuck while holding the state lock: a writer gives up with a clear
    error (nothing changed) instead of waiting forever without a word."""
    import subprocess
    import sys

    store = StateStore(tmp_path / "state", lock_wait=0.5)
    store.update(lambda st: set_pin(st, "h", 1, "before"))
    hang = ("import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR); fcntl.flock(fd, fcntl.LOCK_EX); "
            "print('locked', flush=True); time.sleep(30)")
    holder = subprocess.Popen([sys.executable, "-c", hang, str(store.dir / ".lock")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(StateError) as exc:
            store.update(lambda st: set_pin(st, "h", 2, "after"))
        assert str(store.dir / ".lock") in str(exc.value) and "nothing was changed" in str(exc.value)
        assert f"held by pid {holder.pid} (" in str(exc.value)          # who, from /proc/locks
    finally:
        holder.kill()
        holder.wait()
    assert store.load().host("h").pin == 1
    store.update(lambda st: set_pin(st, "h", 2, "after"))      # released: writes work again
    assert store.load().host("h").pin == 2


def test_a_state_dir_that_is_a_file_is_named_as_such(tmp_path):
    (tmp_path / "state").write_text("not a directory")
    store = StateStore(tmp_path / "state")
    with pytest.raises(StateError, match="is not a directory"):
        store.update(lambda st: set_pin(st, "h", 1, "pin"))
    assert (tmp_path / "state").read_text() == "not a directory"


def test_unpin_without_a_pin_changes_and_records_nothing(gens_factory):
    g = gens_factory(2, current=2)
    state = operations.unpin(State(), "h", T0)
    assert state == State() and state.history == ()


def test_rollback_during_a_trial_ends_it_and_serves_what_was_served_before(gens_factory):
    """A trial of the wrong generation (``trial h 1`` meant 2) can be undone at once."""
    g = gens_factory(3, current=3)
    state = operations.start_trial(State(), "h", g.profile, 1, g.served(State()), T0)
    assert g.served(state).number == 1
    state = operations.rollback(state, "h", g.profile, g.served(state), T0 + 1)
    hs = state.host("h")
    assert hs.trial is None and hs.pin is None
    assert (g.served(state).number, g.served(state).reason) == (3, "follow")
    assert state.history[-1]["event"] == "trial-cancelled" and state.history[-1]["generation"] == 1


def test_pin_during_a_trial_ends_it(gens_factory):
    """The operator names the generation to serve: a running trial must not keep overriding it."""
    g = gens_factory(3, current=3)
    state = operations.start_trial(State(), "h", g.profile, 1, g.served(State()), T0)
    state = operations.pin(state, "h", g.profile, 2, T0 + 1)
    assert state.host("h").trial is None
    assert (g.served(state).number, g.served(state).reason) == (2, "pin")
    assert "ends the trial of 1" in state.history[-1]["reason"]


def test_damaged_boot_event_lines_are_skipped_by_status_and_doctor(demo_layout, netboot_cli):
    """events.jsonl is appended by the daemon; a line that is JSON but not an event (a list, a
    string time, deep nesting) is skipped, never a traceback."""
    events = demo_layout.state / "events.jsonl"
    good = {"host": "pc", "time": T0, "path": "52-54-00-ab-cd-ef/boot.ipxe", "outcome": "complete"}
    events.write_text("\n".join([json.dumps(good), "[1, 2]", '{"host": "pc", "time": "noon"}', '"text"',
                                 "[" * 100_000, '{"host": ["x"]}', "\x00\xff",
                                 '{"host": "pc", "time": 1e300}', '{"host": "pc", "time": NaN}']) + "\n")
    for args in (("status", "pc"), ("status", "--json"), ("doctor", "pc")):
        out = netboot_cli("-c", demo_layout.config, *args)
        assert "Traceback" not in out.stderr, (args, out.stderr)
        assert out.returncode in (0, 1), (args, out.returncode, out.stderr)
    doc = json.loads(netboot_cli("-c", demo_layout.config, "status", "--json").stdout)
    assert doc["hosts"]["pc"]["last_boot_events"] == [good]

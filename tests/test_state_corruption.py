"""A corrupt state.json never loses a pin silently (README: Operator workflow, state).

Every command refuses with one line naming the file, the preserved copy and
the way out; ``netboot state show`` / ``netboot state repair`` are the
explicit operator actions.  The pure decoding and salvage are tested on bytes.
"""

from __future__ import annotations

import json

import pytest

from appliance.control.state import State, StateStore
from appliance.control.state_codec import StateFormatError, decode_state, encode_state, salvage_state

PI = "pi-desktop"

NESTED = b'{"version": 1, "hosts": {"pc": {"pin": 1}}, "history": ' + b"[" * 100_000


def corruptions(good: bytes) -> dict[str, bytes]:
    return {
        "truncated": good[: len(good) * 2 // 3],
        "garbage": b"\x00\xff\xfe garbage \x89PNG\r\n",
        "nested": NESTED,
        "nested-objects": b'{"version": 1, "hosts": ' + b'{"a": ' * 50_000,
        "wrong-types": json.dumps({"version": 1, "hosts": {"pc": {"pin": "one"}, "arm-board": [1]}}).encode(),
        "not-utf8": good.replace(b'"version"', b'"versi\xf6n"'),
        "empty": b"",
        "not-an-object": b"[1, 2, 3]",
    }


def pinned_layout(nb) -> bytes:
    """pc and arm-board pinned to 1, a trial on pi-desktop: the state worth keeping."""
    nb.inproc("pin", "pc", "1")
    nb.inproc("pin", "arm-board", "1")
    nb.inproc("trial", PI, "1")
    return (nb.layout.state / "state.json").read_bytes()


def assert_refusal(result, state_file, code: int = 1) -> str:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    line = lines[0]
    assert str(state_file) in line
    assert "state.json.corrupt-" in line
    assert "netboot state repair" in line
    return line


# -- the finding: a changing command on a corrupt file dropped every other host's pin ---------------

@pytest.mark.parametrize("kind", ["truncated", "garbage", "nested", "nested-objects", "wrong-types",
                                  "not-utf8", "empty", "not-an-object"])
def test_a_changing_command_on_a_corrupt_state_refuses_and_writes_nothing(nb, kind):
    good = pinned_layout(nb)
    state_file = nb.layout.state / "state.json"
    bad = corruptions(good)[kind]
    state_file.write_bytes(bad)
    line = assert_refusal(nb("pin", PI, "2"), state_file)
    assert state_file.read_bytes() == bad                    # nothing written over it
    copies = sorted(nb.layout.state.glob("state.json.corrupt-*"))
    assert len(copies) == 1 and copies[0].read_bytes() == bad
    assert copies[0].name in line
    # A second refusal keeps the one copy (identical bytes are not copied again).
    assert_refusal(nb("unpin", "pc"), state_file)
    assert len(list(nb.layout.state.glob("state.json.corrupt-*"))) == 1


def test_every_command_reading_state_refuses(nb):
    pinned_layout(nb)
    state_file = nb.layout.state / "state.json"
    state_file.write_bytes(NESTED)
    for args in (("status",), ("status", "--json"), ("generations", PI), ("tree", PI), ("cat", PI, "cmdline.txt"),
                 ("pin", PI, "1"), ("unpin", PI), ("rollback", PI), ("trial", PI, "1"), ("confirm", PI)):
        assert_refusal(nb(*args), state_file)
    check = nb("check")
    assert check.returncode == 2 and "Traceback" not in check.stderr
    assert "state.json is corrupt" in check.stderr and "netboot state repair" in check.stderr


def test_state_show_and_repair_keep_what_can_be_read(nb):
    pinned_layout(nb)
    state_file = nb.layout.state / "state.json"
    doc = json.loads(state_file.read_text())
    doc["hosts"]["pc"]["pin"] = "one"              # one unreadable field; arm-board and the trial are fine
    state_file.write_text(json.dumps(doc))
    shown = nb("state", "show", "--json")
    assert shown.returncode == 0, shown.stderr
    report = json.loads(shown.stdout)
    assert report["ok"] is False and "hosts.pc.pin" in report["problem"]
    assert report["hosts"]["arm-board"]["pin"] == 1
    assert report["hosts"][PI]["trial"]["generation"] == 1
    # pc's pin is not readable from the file but the last state netboot wrote has it.
    assert report["hosts"]["pc"]["pin"] == 1 and report["hosts"]["pc"]["from"] == "last-good"

    repaired = nb("state", "repair")
    assert repaired.returncode == 0, repaired.stderr
    assert "state.json.corrupt-" in repaired.stdout and "hosts.pc.pin" in repaired.stdout
    assert "restored" in repaired.stdout
    status = json.loads(nb("status", "--json").stdout)["hosts"]
    assert status["pc"]["pin"] == 1 and status["arm-board"]["pin"] == 1
    assert status[PI]["trial"]["generation"] == 1
    copies = list(nb.layout.state.glob("state.json.corrupt-*"))
    assert len(copies) == 1 and b'"one"' in copies[0].read_bytes()
    again = nb("state", "repair")
    assert again.returncode == 0 and "nothing to repair" in again.stdout


def test_repair_of_garbage_without_a_last_good_copy_says_what_was_lost(nb):
    state_file = nb.layout.state / "state.json"
    nb.layout.state.mkdir(parents=True, exist_ok=True)
    state_file.write_bytes(b"\x89PNG garbage")
    out = nb("state", "repair")
    assert out.returncode == 0, out.stderr
    assert "nothing readable" in out.stdout
    assert json.loads(nb("status", "--json").stdout)["hosts"][PI]["pin"] is None


# -- pure decoding and salvage ----------------------------------------------------------------------

def _sample() -> bytes:
    state = State()
    for name, pin in (("a", 1), ("b", 2), ("c", 3)):
        state = state.with_host(name, State().host(name).__class__(pin=pin), "pin", pin, "t", now=1.0)
    return encode_state(state)


@pytest.mark.parametrize("kind", ["truncated", "garbage", "nested", "nested-objects", "wrong-types",
                                  "not-utf8", "empty", "not-an-object"])
def test_decode_rejects_with_a_reason(kind):
    with pytest.raises(StateFormatError) as info:
        decode_state(corruptions(_sample())[kind])
    assert str(info.value)


def test_decode_rejects_numbers_json_allows_but_state_never_holds():
    for raw in (b'{"version": 1, "hosts": {"a": {"pin": NaN}}}', b'{"version": 1, "hosts": {"a": {"pin": true}}}',
                b'{"version": 1, "hosts": {"a": {"pin": 1, "colour": "red"}}}'):
        with pytest.raises(StateFormatError):
            decode_state(raw)


def test_salvage_of_a_truncated_file_keeps_the_hosts_written_before_the_cut():
    data = _sample()
    cut = data.index(b'"c"') + 3
    salvage = salvage_state(data[:cut])
    assert {n: h.pin for n, h in salvage.state.hosts.items()} == {"a": 1, "b": 2}
    assert not salvage.complete


def test_salvage_of_deep_nesting_keeps_the_hosts():
    salvage = salvage_state(NESTED)
    assert salvage.state.host("pc").pin == 1
    assert salvage.state.history == ()


def test_store_refuses_and_keeps_the_last_good_copy(tmp_path):
    store = StateStore(tmp_path)
    store.update(lambda s: s.with_host("a", s.host("a").__class__(pin=4)))
    (tmp_path / "state.json").write_bytes(b"{")
    from appliance.errors import StateCorrupt

    with pytest.raises(StateCorrupt) as info:
        store.update(lambda s: s)
    assert info.value.copy is not None and info.value.copy.read_bytes() == b"{"
    assert (tmp_path / "state.json").read_bytes() == b"{"
    assert store.readable().state.host("a").pin == 4     # from the last-good copy


def test_a_host_entry_cut_short_is_completed_from_the_last_good_copy(tmp_path):
    from appliance.control.state import Trial

    store = StateStore(tmp_path)
    store.update(lambda s: s.with_host("a", s.host("a").__class__(pin=4)).with_host(
        "b", s.host("b").__class__(trial=Trial(generation=7, previous=6, started=1.0))))
    data = (tmp_path / "state.json").read_bytes()
    (tmp_path / "state.json").write_bytes(data[: data.index(b'"trial"') + 12])     # cut inside b's trial
    readable = store.readable()
    assert readable.state.host("a").pin == 4 and readable.sources["a"] == "file"
    assert readable.state.host("b").trial.generation == 7
    assert readable.sources["b"] == "last-good"
    assert "hosts.b: cut short" in readable.salvage.dropped

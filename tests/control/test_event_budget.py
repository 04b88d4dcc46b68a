"""The per-host boot-event budget (pure logic; the flood over real clients is in test_boot_event_flood)."""

from __future__ import annotations

from appliance.control.event_budget import BootEventBudget


def event(host: str = "pc", path: str = "pc/boot.ipxe", outcome: str = "complete", transport: str = "http") -> dict:
    return {"host": host, "path": path, "outcome": outcome, "transport": transport, "bytes": 10}


def test_repeats_within_the_window_are_counted_on_the_next_written_event():
    budget = BootEventBudget(repeat_window=10.0)
    assert budget.admit(event(), 0.0) == event()
    assert [budget.admit(event(), t) for t in (0.1, 5.0, 9.9)] == [None, None, None]
    assert budget.admit(event(), 10.0) == {**event(), "suppressed": 3}
    assert budget.admit(event(), 10.5) is None
    assert budget.admit(event(path="pc/kernel"), 11.0) == {**event(path="pc/kernel"), "suppressed": 1}
    assert budget.suppressed_total == 4


def test_a_different_outcome_or_transport_is_not_a_repeat():
    budget = BootEventBudget()
    assert budget.admit(event(), 0.0)
    assert budget.admit(event(outcome="error: client error 0: early terminate"), 0.0)
    assert budget.admit(event(transport="tftp"), 0.0)
    assert budget.suppressed_total == 0


def test_distinct_files_are_bounded_by_the_burst_then_the_rate():
    budget = BootEventBudget(burst=5, per_second=1.0)
    written = [budget.admit(event(path=f"pc/{i}"), 0.0) for i in range(8)]
    assert sum(e is not None for e in written) == 5
    assert budget.admit(event(path="pc/late"), 0.5) is None         # half a token back
    assert budget.admit(event(path="pc/later"), 1.0) == {**event(path="pc/later"), "suppressed": 4}


def test_hosts_have_their_own_budget():
    budget = BootEventBudget(burst=2)
    for i in range(10):
        budget.admit(event(path=f"pc/{i}"), 0.0)
    assert budget.admit(event(host="pi", path="pi/start4.elf"), 0.0) == event(host="pi", path="pi/start4.elf")

"""LogThrottle: one line per kind of event per interval, and a bounded table of kinds."""

from __future__ import annotations

import logging

from appliance.logthrottle import LogThrottle


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_one_line_per_key_per_interval_then_the_count_held_back(caplog):
    clock = Clock()
    throttle = LogThrottle(logging.getLogger("test.throttle"), interval=60, clock=clock)
    caplog.set_level(logging.INFO, logger="test.throttle")
    for _ in range(5):
        throttle("a", logging.INFO, "event %s", "a")
    throttle("b", logging.INFO, "event %s", "b")
    clock.now += 61
    throttle("a", logging.INFO, "event %s", "a")
    assert [r.getMessage() for r in caplog.records] == [
        "event a", "event b", "event a (4 more like it since the last such line)"]


def test_keys_past_the_table_size_share_one_line_per_interval(caplog):
    """A caller that keys on something a peer chooses must not get one line (and one table
    entry) per distinct value: past ``max_keys`` new keys share one overflow line."""
    clock = Clock()
    throttle = LogThrottle(logging.getLogger("test.throttle"), interval=60, clock=clock, max_keys=8)
    caplog.set_level(logging.INFO, logger="test.throttle")
    for n in range(1000):
        throttle(("peer", n), logging.INFO, "event %s", n)
    assert len(caplog.records) <= 9
    assert len(throttle._keys) <= 9
    clock.now += 61                  # old keys expire: the table makes room again
    caplog.clear()
    throttle(("peer", 5000), logging.INFO, "event %s", 5000)
    assert [r.getMessage() for r in caplog.records] == ["event 5000"]
    assert len(throttle._keys) <= 9

"""Which boot events are written to the state directory (pure: the caller passes the clock).

Every finished transfer, TFTP or HTTP, is a boot event, and the events file keeps only its
last few MiB (``status`` reads less still), so one host asking for its files over and over —
an HTTP client pipelining thousands of requests, firmware retrying in a loop — would push
every other host's history out.  Two bounds, per host:

- an event like one written for the host less than ``repeat_window`` seconds ago (same path,
  outcome and transport) is coalesced into it: not written, counted;
- at most ``burst`` events are written in a row, refilled at ``per_second`` (a boot is a few
  dozen transfers, a Raspberry Pi's duplicate requests included): the rest are counted.

The host's next written event carries ``"suppressed": n``, how many of its events were left
out since the one before, so the log says what it does not show.
"""

from __future__ import annotations

__all__ = ["BootEventBudget"]

_PRUNE_AT = 64          # remembered (path, outcome, transport) per host before expired ones are dropped


class _HostBudget:
    """One host's token bucket and the events it has seen recently."""

    __slots__ = ("tokens", "updated", "written", "suppressed")

    def __init__(self, tokens: float, updated: float) -> None:
        self.tokens = tokens
        self.updated = updated
        self.written: dict[tuple[object, object, object], float] = {}    # key → when written
        self.suppressed = 0


class BootEventBudget:
    """``admit(event, now)``: the event to write (maybe with ``suppressed``), or None."""

    def __init__(self, repeat_window: float = 5.0, burst: int = 300, per_second: float = 1.0) -> None:
        self.repeat_window = repeat_window
        self.burst = burst
        self.per_second = per_second
        self.suppressed_total = 0
        self._hosts: dict[object, _HostBudget] = {}

    def admit(self, event: dict, now: float) -> dict | None:
        host = self._hosts.get(event.get("host"))
        if host is None:
            host = self._hosts[event.get("host")] = _HostBudget(tokens=self.burst, updated=now)
        host.tokens = min(self.burst, host.tokens + (now - host.updated) * self.per_second)
        host.updated = now
        key = (event.get("path"), event.get("outcome"), event.get("transport"))
        written_at = host.written.get(key)
        if (written_at is not None and now - written_at < self.repeat_window) or host.tokens < 1:
            host.suppressed += 1
            self.suppressed_total += 1
            return None
        host.tokens -= 1
        if len(host.written) >= _PRUNE_AT:
            host.written = {k: t for k, t in host.written.items() if now - t < self.repeat_window}
        host.written[key] = now
        if host.suppressed:
            event = {**event, "suppressed": host.suppressed}
            host.suppressed = 0
        return event

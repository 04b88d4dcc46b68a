"""Operator state as values: pins, trials, last-known-good and the transition history."""

from __future__ import annotations

import time
from types import MappingProxyType
from typing import Mapping, NamedTuple

HISTORY_LIMIT = 200


# NamedTuples, not dataclasses: immutable values (changed with _replace), defined at every start.
class Trial(NamedTuple):
    """A generation on trial: it reverts unless confirmed in time."""

    generation: int
    previous: int | None          # what was served when the trial began
    started: float
    kernel_served_at: float | None = None


class HostState(NamedTuple):
    """A host's pin, trial and last known good generation."""

    pin: int | None = None
    trial: Trial | None = None
    last_known_good: int | None = None

    @property
    def trial_generation(self) -> int | None:
        return self.trial.generation if self.trial else None


class State(NamedTuple):
    """The persistent state: each host's state and the transition history."""

    hosts: Mapping[str, HostState] = MappingProxyType({})
    history: tuple[dict, ...] = ()          # transitions: {time, host, event, generation, reason}

    def host(self, name: str) -> HostState:
        return self.hosts.get(name, HostState())

    def with_host(self, name: str, hs: HostState, event: str | None = None, generation: int | None = None,
                  reason: str = "", now: float | None = None) -> "State":
        hosts = dict(self.hosts)
        hosts[name] = hs
        history = self.history
        if event:
            entry = {"time": now if now is not None else time.time(), "host": name, "event": event,
                     "generation": generation, "reason": reason}
            history = (*history, entry)[-HISTORY_LIMIT:]
        return State(hosts=hosts, history=history)

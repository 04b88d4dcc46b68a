"""The daemon's live ``HealthReport``: components report ``fail`` / ``ok`` from any thread.

A change is logged once (not on every repetition) and sets ``changed``, which
the control loop clears when it publishes (file, sd_notify).  Thread-safe: the
TFTP thread, the control loop and the metrics listener use it.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Mapping

from .model import DEGRADED, HealthReport

log = logging.getLogger("netboot")


class Health:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._report = HealthReport()
        self.changed = threading.Event()

    def fail(self, component: str, reason: str, state: str = DEGRADED, text: tuple[str, ...] = ()) -> None:
        with self._lock:
            old = self._report.problems.get(component)
            self._report = self._report.failed(component, reason, self._clock(), state, text)
            new = old is None or (old.state, old.reason, old.text) != (state, reason, tuple(text))
        if new:
            (log.error if state == DEGRADED else log.warning)("%s: %s: %s", state, component, reason)
            self.changed.set()

    def ok(self, component: str) -> None:
        if component not in self._report.problems:      # the common case, without the lock
            return
        with self._lock:
            was = self._report.problems.get(component)
            self._report = self._report.recovered(component)
        if was is not None:
            log.warning("recovered: %s", component)
            self.changed.set()

    def set_details(self, component: str, details: Mapping | None) -> None:
        with self._lock:
            before = self._report
            self._report = before.with_details(component, details)
        if self._report.details != before.details:
            self.changed.set()

    def report(self) -> HealthReport:
        with self._lock:
            return self._report

    def problems(self) -> dict[str, str]:
        """component → reason, for the degraded ones."""
        return self.report().degraded()

    def failures(self) -> dict[str, int]:
        return dict(self.report().failures)

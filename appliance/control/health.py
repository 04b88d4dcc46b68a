"""What does not work right now in a running daemon, for the log, ``status`` and metrics.

A component reports ``fail(component, reason)`` or ``ok(component)``; a
change is logged once (not on every repetition), failures are counted.
Thread-safe: the TFTP thread, the control loop and the metrics listener use it.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path

log = logging.getLogger("netboot")


class Health:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._problems: dict[str, str] = {}
        self._failures: dict[str, int] = {}
        self.changed = threading.Event()     # set on every change; the control loop publishes and clears it

    def fail(self, component: str, reason: str) -> None:
        with self._lock:
            self._failures[component] = self._failures.get(component, 0) + 1
            new = self._problems.get(component) != reason
            self._problems[component] = reason
        if new:
            log.error("degraded: %s: %s", component, reason)
            self.changed.set()

    def ok(self, component: str) -> None:
        if component not in self._problems:      # the common case, without the lock
            return
        with self._lock:
            was = self._problems.pop(component, None)
        if was is not None:
            log.warning("recovered: %s", component)
            self.changed.set()

    def problems(self) -> dict[str, str]:
        with self._lock:
            return dict(self._problems)

    def failures(self) -> dict[str, int]:
        with self._lock:
            return dict(self._failures)


HEALTH_FILE = "daemon-health.json"


def write_health_file(state_dir: Path, problems: dict[str, str]) -> None:
    """For ``status``: what the running daemon reports as degraded (atomic replace)."""
    path = state_dir / HEALTH_FILE
    tmp = path.with_name(f".{HEALTH_FILE}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps({"pid": os.getpid(), "time": time.time(), "degraded": problems}))
        os.replace(tmp, path)
    except OSError as exc:
        log.error("cannot write %s: %s", path, exc.strerror)


def remove_health_file(state_dir: Path) -> None:
    try:
        os.unlink(state_dir / HEALTH_FILE)
    except OSError:
        pass


def read_health_file(state_dir: Path) -> dict[str, str] | None:
    """What a running daemon reports as degraded, or None (no daemon, or it wrote nothing)."""
    try:
        doc = json.loads((state_dir / HEALTH_FILE).read_text())
        pid = int(doc["pid"])
        os.kill(pid, 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    degraded = doc.get("degraded")
    if not isinstance(degraded, dict):
        return None
    return {str(k): str(v) for k, v in degraded.items()}

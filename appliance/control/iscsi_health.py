"""How the daemon's iSCSI side is doing, for sd_notify, ``status`` and metrics.

``IscsiHealth`` is pure data with the retry schedule; the daemon publishes it
as ``iscsi-health.json`` in the state directory (atomically, with its PID) so
that ``netboot status`` in another process can show it.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path

__all__ = ["HEALTH_FILE", "IscsiHealth", "read_health", "remove_health", "write_health"]

HEALTH_FILE = "iscsi-health.json"
RETRY_FIRST = 2.0       # seconds before the first retry of a failed apply
RETRY_MAX = 300.0       # the backoff doubles up to this


@dataclass(frozen=True)
class IscsiHealth:
    """``state``: "ok" (LIO matches the configuration), "withheld" (destructive
    changes held back, running objects kept), "degraded" (LIO unusable or the
    apply failed: TFTP only, retrying)."""

    state: str = "ok"
    error: str = ""
    withheld: tuple[str, ...] = ()     # why, one refusal each
    failures: int = 0                  # failed attempts since the daemon started
    retry_in: float | None = None      # seconds from the failure to the next attempt

    def applied(self, withheld: tuple[str, ...]) -> "IscsiHealth":
        return replace(self, state="withheld" if withheld else "ok", error="", withheld=withheld, retry_in=None)

    def failed(self, error: str, consecutive: int) -> "IscsiHealth":
        """After ``consecutive`` failures in a row: wait twice as long as last time, up to RETRY_MAX."""
        delay = min(RETRY_MAX, RETRY_FIRST * 2 ** max(0, consecutive - 1))
        return replace(self, state="degraded", error=error, failures=self.failures + 1, retry_in=delay)

    def status_line(self) -> str:
        """sd_notify STATUS= text."""
        if self.state == "degraded":
            return f"degraded: iSCSI unavailable ({self.error}); TFTP only, retrying in {self.retry_in:.0f} s"
        if self.state == "withheld":
            return f"serving; iSCSI: {len(self.withheld)} destructive changes withheld (netboot iscsi plan)"
        return "serving"

    def as_json(self) -> dict:
        return {**asdict(self), "withheld": list(self.withheld)}


def write_health(state_dir: Path, health: IscsiHealth, pid: int) -> None:
    """Publish atomically; a reader never sees half a file."""
    path = state_dir / HEALTH_FILE
    tmp = path.with_name(f".{HEALTH_FILE}.{pid}.tmp")
    tmp.write_text(json.dumps({**health.as_json(), "pid": pid}))
    os.replace(tmp, path)


def remove_health(state_dir: Path) -> None:
    try:
        (state_dir / HEALTH_FILE).unlink()
    except FileNotFoundError:
        pass


def read_health(state_dir: Path) -> dict | None:
    """What a running daemon published, or None (no daemon, or it died without cleaning up)."""
    try:
        doc = json.loads((state_dir / HEALTH_FILE).read_text())
        pid = int(doc["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not Path(f"/proc/{pid}").exists():
        return None
    return doc

"""How the daemon's iSCSI side is doing, and when it retries: reported through ``health``.

``IscsiHealth`` is pure data with the retry schedule; the daemon turns it into
the ``iscsi`` component of its health report (``problem``) and shows the whole
value in ``netboot status --json`` (``as_json``).
"""

from __future__ import annotations

from typing import NamedTuple

from .health import DEGRADED, WITHHELD

__all__ = ["IscsiHealth"]

RETRY_FIRST = 2.0       # seconds before the first retry of a failed apply
RETRY_MAX = 300.0       # the backoff doubles up to this


class IscsiHealth(NamedTuple):     # not a dataclass: defined at every start
    """``state``: "ok" (LIO matches the configuration), "withheld" (destructive
    changes held back, running objects kept), "degraded" (LIO unusable or the
    apply failed: TFTP only, retrying)."""

    state: str = "ok"
    error: str = ""
    withheld: tuple[str, ...] = ()     # why, one refusal each
    failures: int = 0                  # failed attempts since the daemon started
    retry_in: float | None = None      # seconds from the failure to the next attempt

    def applied(self, withheld: tuple[str, ...]) -> "IscsiHealth":
        return self._replace(state="withheld" if withheld else "ok", error="", withheld=withheld, retry_in=None)

    def failed(self, error: str, consecutive: int) -> "IscsiHealth":
        """After ``consecutive`` failures in a row: wait twice as long as last time, up to RETRY_MAX."""
        delay = min(RETRY_MAX, RETRY_FIRST * 2 ** max(0, consecutive - 1))
        return self._replace(state="degraded", error=error, failures=self.failures + 1, retry_in=delay)

    def problem(self) -> tuple[str, str, tuple[str, ...]] | None:
        """(state, reason, status text lines) for the health report, or None when fine."""
        if self.state == "degraded":
            return (DEGRADED, f"iSCSI unavailable ({self.error}); TFTP only, retrying in {self.retry_in:.0f} s",
                    (f"warning: iSCSI degraded, serving TFTP only: {self.error} "
                     f"(the daemon retries every {self.retry_in:.0f} s or so)",))
        if self.state == "withheld":
            return (WITHHELD, f"iSCSI: {len(self.withheld)} destructive changes withheld (netboot iscsi plan)",
                    tuple(f"warning: iSCSI change withheld by the daemon: {why}" for why in self.withheld))
        return None

    def as_json(self) -> dict:
        return {**self._asdict(), "withheld": list(self.withheld)}

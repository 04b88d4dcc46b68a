"""What runs degraded in the daemon: one immutable value, and every view of it.

A component is fine (absent) or has a ``Problem``: ``degraded`` (it does not
work; the reason says what suffers) or ``withheld`` (serving, but a change was
held back).  The same value renders the sd_notify ``STATUS=`` line
(sd_notify(3)), the ``netboot status`` text and JSON, and the metrics samples.
No clocks here: the time of a change is passed in.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Mapping, NamedTuple

DEGRADED = "degraded"
WITHHELD = "withheld"
# Gauged in metrics even while fine, so a dashboard sees the 0 before the 1.
ALWAYS_GAUGED = ("iscsi", "state")
_NONE: Mapping = MappingProxyType({})     # the (immutable) default of each mapping below


# NamedTuples, not dataclasses: immutable values, defined at every start.
class Problem(NamedTuple):
    """``reason`` reads on its own (it is the STATUS= text); ``since``: when the
    component entered this state; ``text``: lines for ``netboot status`` in place
    of the default ``<state>: <component>: <reason>``."""

    state: str
    reason: str
    since: float
    text: tuple[str, ...] = ()


class HealthReport(NamedTuple):
    """The problems of each component, and how often each failed."""

    problems: Mapping[str, Problem] = _NONE
    failures: Mapping[str, int] = _NONE         # failures reported per component
    details: Mapping[str, Mapping] = _NONE      # extra facts for ``status --json``

    def failed(self, component: str, reason: str, now: float, state: str = DEGRADED,
               text: tuple[str, ...] = ()) -> "HealthReport":
        old = self.problems.get(component)
        since = old.since if old is not None and old.state == state else now
        failures = dict(self.failures)
        if state == DEGRADED:
            failures[component] = failures.get(component, 0) + 1
        return self._replace(problems={**self.problems, component: Problem(state, reason, since, tuple(text))},
                             failures=failures)

    def recovered(self, component: str) -> "HealthReport":
        if component not in self.problems:
            return self
        return self._replace(problems={c: p for c, p in self.problems.items() if c != component})

    def with_details(self, component: str, details: Mapping | None) -> "HealthReport":
        rest = {c: d for c, d in self.details.items() if c != component}
        return self._replace(details=rest if details is None else {**rest, component: dict(details)})

    def degraded(self) -> dict[str, str]:
        """component → reason, for the degraded ones."""
        return {c: p.reason for c, p in sorted(self.problems.items()) if p.state == DEGRADED}


def status_line(report: HealthReport) -> str:
    """The sd_notify STATUS= text: every degraded component, then what is withheld, else "serving"."""
    ordered = sorted(report.problems.items())
    degraded = [p.reason for _, p in ordered if p.state == DEGRADED]
    withheld = [p.reason for _, p in ordered if p.state != DEGRADED]
    if degraded:
        return "; ".join(["degraded: " + "; ".join(degraded), *withheld])
    return "; ".join(["serving", *withheld])


def text_lines(report: HealthReport) -> list[str]:
    """``netboot status`` lines, one component after the other."""
    lines = []
    for component, problem in sorted(report.problems.items()):
        lines.extend(problem.text or (f"{problem.state}: {component}: {problem.reason}",))
    return lines


def to_json(report: HealthReport) -> dict:
    return {
        "components": {c: {"state": p.state, "reason": p.reason, "since": p.since, "text": list(p.text)}
                       for c, p in sorted(report.problems.items())},
        "failures": dict(sorted(report.failures.items())),
        "details": {c: dict(d) for c, d in sorted(report.details.items())},
    }


def from_json(doc: object) -> HealthReport:
    """The inverse of ``to_json``; ``ValueError`` when ``doc`` is not one."""
    try:
        problems = {str(c): Problem(str(p["state"]), str(p["reason"]), float(p["since"]),
                                    tuple(str(t) for t in p.get("text", ())))
                    for c, p in doc["components"].items()}
        failures = {str(c): int(n) for c, n in doc.get("failures", {}).items()}
        details = {str(c): dict(d) for c, d in doc.get("details", {}).items()}
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise ValueError(f"not a health report: {exc!r}") from exc
    return HealthReport(problems, failures, details)


def metric_samples(report: HealthReport) -> tuple[dict[str, int], dict[str, int]]:
    """(component → 1 while degraded else 0, component → failures), over every component seen."""
    seen = set(ALWAYS_GAUGED) | set(report.problems) | set(report.failures)
    gauge = {c: int(c in report.problems and report.problems[c].state == DEGRADED) for c in sorted(seen)}
    return gauge, dict(sorted(report.failures.items()))

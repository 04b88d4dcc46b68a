"""Operator actions and trial-boot transitions: pure functions State → State.

Every transition is recorded in the state's history with its reason.
"""

from __future__ import annotations

from ..errors import GenerationError, UnknownGeneration
from ..nix import Profile
from .selection import Selection
from .state import HostState, State, Trial


def _require_valid(profile: Profile, host: str, number: int) -> None:
    gen = profile.get(number)
    if gen is None:
        raise UnknownGeneration(host, number, [g.number for g in profile.generations])
    if not gen.valid:
        raise GenerationError(f"{host}: generation {number} is invalid: {'; '.join(gen.problems)}")


def pin(state: State, host: str, profile: Profile, number: int, now: float) -> State:
    """Serve ``number`` until unpinned; a running trial ends (it would override the pin)."""
    _require_valid(profile, host, number)
    hs = state.host(host)
    ends = f"; ends the trial of {hs.trial.generation}" if hs.trial is not None else ""
    return state.with_host(host, hs._replace(pin=number, trial=None), "pin", number, "pinned by operator" + ends,
                           now)


def unpin(state: State, host: str, now: float) -> State:
    """Follow the profile again; without a pin nothing changes (and nothing is recorded)."""
    hs = state.host(host)
    if hs.pin is None:
        return state
    return state.with_host(host, hs._replace(pin=None), "unpin", hs.pin, "unpinned by operator", now)


def rollback(state: State, host: str, profile: Profile, served: Selection, now: float) -> State:
    """Pin the newest valid generation older than the one served; during a trial, end the trial
    instead: the host is served what it was served before (pin or follow, unchanged)."""
    hs = state.host(host)
    if hs.trial is not None:
        return state.with_host(host, hs._replace(trial=None), "trial-cancelled", hs.trial.generation,
                               f"rolled back by operator before the trial of {hs.trial.generation} was confirmed",
                               now)
    if served.number is None:
        raise GenerationError(f"{host}: nothing is served, so there is nothing to roll back from")
    older = [g for g in profile.valid if g.number < served.number]
    if not older:
        raise GenerationError(f"{host}: no valid generation older than {served.number} to roll back to")
    target = older[-1].number
    return state.with_host(host, hs._replace(pin=target), "rollback", target,
                           f"rolled back from {served.number}", now)


def start_trial(state: State, host: str, profile: Profile, number: int, served: Selection, now: float) -> State:
    """Serve ``number`` for the next boot.  A trial replacing a running one keeps its way back:
    what was served before the first trial, never the unconfirmed generation it replaces."""
    _require_valid(profile, host, number)
    hs = state.host(host)
    running = hs.trial
    previous = running.previous if running is not None else served.number
    trial = Trial(generation=number, previous=previous, started=now)
    why = f"trial for the next boot (was {served.number}" + (
        f"; replaces the trial of {running.generation}, reverting to {previous})" if running is not None else ")")
    return state.with_host(host, hs._replace(trial=trial), "trial-start", number, why, now)


def confirm(state: State, host: str, served: Selection, profile_current: int | None, now: float,
            how: str = "confirmed by operator") -> State:
    """The served generation came up: it becomes last-known-good.

    A confirmed trial stays served: it is pinned, unless the profile already
    points at it and nothing was pinned (then following gives the same).
    """
    hs = state.host(host)
    if hs.trial is not None:
        n = hs.trial.generation
        keep_following = hs.pin is None and profile_current == n
        new = hs._replace(trial=None, last_known_good=n, pin=None if keep_following else n)
        return state.with_host(host, new, "trial-confirmed", n, how, now)
    if served.number is None:
        raise GenerationError(f"{host}: nothing is served, nothing to confirm")
    return state.with_host(host, hs._replace(last_known_good=served.number), "confirmed", served.number, how, now)


def revert_trial(state: State, host: str, why: str, now: float) -> State:
    """The trial failed: serve the last confirmed generation (pinned) and record why."""
    hs = state.host(host)
    if hs.trial is None:
        return state
    back = hs.last_known_good if hs.last_known_good is not None else hs.trial.previous
    new = hs._replace(trial=None, pin=back if back is not None else hs.pin)
    return state.with_host(host, new, "trial-reverted", hs.trial.generation,
                           f"{why}; now serving {back}", now)


def trial_kernel_served(state: State, host: str, now: float) -> State:
    hs = state.host(host)
    if hs.trial is None or hs.trial.kernel_served_at is not None:
        return state
    return state.with_host(host, hs._replace(trial=hs.trial._replace(kernel_served_at=now)))


def trial_due(state: State, host: str, timeout: float, now: float) -> str | None:
    """Why a running trial must be reverted now (timeout), or None."""
    trial = state.host(host).trial
    if trial is not None and now - trial.started >= timeout:
        return f"no confirmation within trial_timeout ({timeout:g} s)"
    return None


def session_confirms(hstate: HostState, served: int | None, session_since: float, now: float,
                     confirm_after: float) -> str | None:
    """Why an iSCSI session up since ``session_since`` confirms the served boot, or None.

    A trial is confirmed only by a session that began after (about) its kernel
    was served — the old system's session does not count; otherwise a session
    that stays up makes the served generation last-known-good.
    """
    if now - session_since < confirm_after:
        return None
    if hstate.trial is not None:
        served_at = hstate.trial.kernel_served_at
        if served_at is not None and session_since >= served_at - 5:
            return f"iSCSI session up for {confirm_after:g} s"
        return None
    if served is not None and hstate.last_known_good != served:
        return "iSCSI session stayed up"
    return None

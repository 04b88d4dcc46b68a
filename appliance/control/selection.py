"""Which generation a host is served, and why (pure)."""

from __future__ import annotations

from typing import NamedTuple

from ..nix import Generation, Profile
from .state_model import HostState


class Selection(NamedTuple):
    """The generation a host is served, and why."""

    generation: Generation | None
    reason: str        # "trial" | "pin" | "follow" | "last-known-good" | "newest" | "none"
    note: str = ""     # why a choice could not be honoured, for status

    @property
    def number(self) -> int | None:
        return self.generation.number if self.generation else None


def select_generation(profile: Profile, choice: HostState) -> Selection:
    notes = []

    def valid(number: int | None) -> Generation | None:
        gen = profile.get(number) if number is not None else None
        return gen if gen is not None and gen.valid else None

    for number, reason in ((choice.trial_generation, "trial"), (choice.pin, "pin")):
        if number is None:
            continue
        gen = valid(number)
        if gen:
            return Selection(gen, reason, "; ".join(notes))
        notes.append(f"{reason} generation {number} is missing or invalid")
    current = valid(profile.current)
    if current:
        return Selection(current, "follow", "; ".join(notes))
    if profile.current is not None:
        notes.append(f"profile's current generation {profile.current} is invalid")
    lkg = valid(choice.last_known_good)
    if lkg:
        return Selection(lkg, "last-known-good", "; ".join(notes))
    newest = profile.valid[-1] if profile.valid else None
    if newest:
        return Selection(newest, "newest", "; ".join(notes))
    notes.append("no valid generation")
    return Selection(None, "none", "; ".join(notes))

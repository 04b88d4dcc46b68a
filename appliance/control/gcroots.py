"""GC roots for every generation the appliance serves, pins, trials or keeps as last-known-good.

Roots are symlinks ``<gcroots_dir>/<host>-served.netboot-root`` and
``<host>-<pinned|trial|last-known-good>-<N>.netboot-root`` → toplevel, made
atomically before a tree using them is offered, and removed once nothing
needs them.  The numbered roots also let a pinned / trial / last-known-good
generation outlive its profile link (``nix-collect-garbage -d`` deletes old
profile links): ``retained_generations`` reads them back.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Mapping

from ..nix import Generation, Profile, StoreRoots, read_generation
from ..nix.store import atomic_symlink
from .state_model import HostState

if TYPE_CHECKING:
    from .snapshot import HostSnapshot
    from .state import State


MARK = ".netboot-root"  # every root we own ends with this, so foreign links are left alone


def desired_roots(hosts: Mapping[str, HostSnapshot], state: State) -> dict[str, Path]:
    """Root link name → toplevel (pure)."""
    roots: dict[str, Path] = {}
    for name, hs in hosts.items():
        hstate = state.host(name)
        wanted = {"served": hs.selection.number, **kept_roles(hstate)}
        for role, number in wanted.items():
            gen = hs.profile.get(number) if number is not None else None
            if gen is not None and gen.toplevel is not None:
                roots[root_name(name, role, None if role == "served" else number)] = gen.toplevel
    return roots


def kept_roles(choice: HostState) -> dict[str, int | None]:
    """The generations the operator's choices keep, by role."""
    return {"pinned": choice.pin, "trial": choice.trial_generation, "last-known-good": choice.last_known_good}


def root_name(host: str, role: str, number: int | None) -> str:
    return f"{host}-{role}{'' if number is None else f'-{number}'}{MARK}"


def retained_generations(directory: Path | None, host: str, choice: HostState, profile: Profile,
                         roots: StoreRoots) -> Profile:
    """``profile`` plus the kept generations whose profile links are gone but whose roots remain.

    A pinned or trial generation whose number the profile now gives another system (Nix takes
    the highest remaining number + 1: roll back, ``nix-collect-garbage -d``, rebuild, and the
    new system is generation 4 again) stays the system the operator chose, which its root
    keeps; the profile's new one is set aside with a note.  A last-known-good number is only a
    fallback and yields to the profile's."""
    if directory is None:
        return profile
    extra: dict[int, Generation] = {}
    gone: list[int] = []
    reused: list[str] = []
    for role, number in kept_roles(choice).items():
        if number is None or number in extra:
            continue
        link = directory / root_name(host, role, number)
        if not link.is_symlink():
            continue
        listed = profile.get(number)
        if listed is not None and (role == "last-known-good" or _same_system(link, listed)):
            continue
        gen = read_generation(link, number, roots)
        if not gen.valid:
            continue
        extra[number] = gen
        if listed is None:
            gone.append(number)
        else:
            until = "it is unpinned" if role == "pinned" else "the trial ends"
            reused.append(f"generation {number}: the profile now names "
                          f"{listed.toplevel.name if listed.toplevel else 'another system'}, not the {role} one "
                          f"{gen.toplevel.name if gen.toplevel else ''} (Nix reused the number): the {role} one "
                          f"is served until {until}")
    if not extra:
        return profile
    notes = [f"generation{'s' if len(gone) > 1 else ''} {', '.join(map(str, sorted(gone)))} kept by the "
             f"appliance's GC roots: the profile link is gone (nix-collect-garbage -d?)"] if gone else []
    kept = tuple(sorted((*(g for g in profile.generations if g.number not in extra), *extra.values()),
                        key=lambda g: g.number))
    return replace(profile, generations=kept, problems=(*profile.problems, *notes, *reused))


def _same_system(link: Path, gen: Generation) -> bool:
    return gen.toplevel is not None and os.path.realpath(link) == str(gen.toplevel)


def sync_roots(directory: Path | None, roots: Mapping[str, Path], prune: bool = True) -> str | None:
    """Create/refresh the wanted links; with ``prune`` remove our links no longer wanted.
    Returns why that failed (the caller reports it), or None."""
    if directory is None:
        return None
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for name, target in roots.items():
            link = directory / name
            try:
                if os.readlink(link) == str(target):
                    continue
            except OSError:
                pass
            atomic_symlink(target, link)
        if prune:
            for entry in os.listdir(directory):
                if entry.endswith(MARK) and entry not in roots:
                    (directory / entry).unlink()
    except OSError as exc:
        return f"cannot make GC roots in {directory}: {exc.strerror or exc}"
    return None

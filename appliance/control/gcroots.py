"""GC roots for every generation the appliance serves, pins, trials or keeps as last-known-good.

Roots are symlinks ``<gcroots_dir>/<host>-<role>`` → toplevel, made atomically
before a tree using them is offered, and removed once nothing needs them.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Mapping

from ..nix.store import atomic_symlink
from .snapshot import HostSnapshot
from .state import State

log = logging.getLogger(__name__)

MARK = ".netboot-root"  # every root we own ends with this, so foreign links are left alone


def desired_roots(hosts: Mapping[str, HostSnapshot], state: State) -> dict[str, Path]:
    """Root link name → toplevel (pure)."""
    roots: dict[str, Path] = {}
    for name, hs in hosts.items():
        hstate = state.host(name)
        wanted = {"served": hs.selection.number, "pinned": hstate.pin,
                  "trial": hstate.trial.generation if hstate.trial else None,
                  "last-known-good": hstate.last_known_good}
        for role, number in wanted.items():
            gen = hs.profile.get(number) if number is not None else None
            if gen is not None and gen.toplevel is not None:
                roots[f"{name}-{role}{MARK}"] = gen.toplevel
    return roots


def sync_roots(directory: Path | None, roots: Mapping[str, Path], prune: bool = True) -> None:
    """Create/refresh the wanted links; with ``prune`` remove our links no longer wanted."""
    if directory is None:
        return
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
        log.warning("cannot update GC roots in %s: %s", directory, exc)

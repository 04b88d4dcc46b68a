"""An immutable view of what every host is served right now.

A ``Snapshot`` is built from the config, the profiles on disk and the
operator's choices; the TFTP side looks files up in one snapshot for a whole
transfer, so a change swaps in a new snapshot atomically and never alters a
transfer in progress.
"""

from __future__ import annotations

from dataclasses import replace
from types import MappingProxyType
from typing import Mapping, NamedTuple

from ..boot import BootTree, gather_inputs, render_tree
from ..boot.gather import store_roots
from ..config import Config, Host
from ..nix import Profile, StoreCache, StoreRoots, read_profile
from .gcroots import retained_generations
from .selection import Selection, select_generation
from .state_model import HostState


# NamedTuples, not dataclasses: immutable values (changed with _replace), defined at every start.
class HostSnapshot(NamedTuple):
    """One host as served: its config entry, profile, selected generation and boot tree."""

    host: Host
    profile: Profile
    selection: Selection
    tree: BootTree


class TrialGuard(NamedTuple):
    """A host serving a trial generation, and what it gets once the trial is reverted.

    Precomputed so the TFTP side can revert at the request that shows a new
    boot, without waiting for the state file or a rebuild.
    """

    generation: int
    kernel_served: bool           # armed: the next boot entry or kernel fetch is a new boot
    fallback: HostSnapshot


class Snapshot(NamedTuple):
    """Everything served at one moment (immutable; swapped in whole)."""

    config: Config
    hosts: Mapping[str, HostSnapshot] = MappingProxyType({})
    trials: Mapping[str, TrialGuard] = MappingProxyType({})

    def host(self, name: str) -> HostSnapshot:
        self.config.host(name)  # raises UnknownHost with the list of hosts
        return self.hosts[name]


def build_host_snapshot(config: Config, host: Host, choice: HostState, roots: StoreRoots | None = None,
                        generation: int | None = None, cache: StoreCache | None = None) -> HostSnapshot:
    """Read the host's profile, select a generation (or take ``generation``) and render its tree."""
    roots = roots or store_roots(config)
    profile = for_boot_style(host, retained_generations(config.server.gcroots_dir, host.name, choice,
                                                        read_profile(host.profile, roots, cache), roots))
    if generation is None:
        selection = select_generation(profile, choice)
    else:
        selection = select_generation(profile, HostState(pin=generation))
        if selection.reason != "pin":
            from ..errors import GenerationError, UnknownGeneration

            gen = profile.get(generation)
            if gen is None:
                raise UnknownGeneration(host.name, generation, [g.number for g in profile.generations])
            raise GenerationError(f"{host.name}: generation {generation} cannot be served: "
                                  f"{'; '.join(gen.problems)}")
    tree = render_tree(gather_inputs(config, host, selection.generation, profile.valid, roots, cache))
    return HostSnapshot(host=host, profile=profile, selection=selection, tree=tree)


def for_boot_style(host: Host, profile: Profile) -> Profile:
    """``profile`` with the valid generations the host's boot style cannot carry marked invalid
    (a kernel command line its boot loader would change): listed with why, never served."""
    generations = tuple(
        replace(g, problems=problems) if g.valid and (problems := host.boot.generation_problems(host, g)) else g
        for g in profile.generations)
    return profile if generations == profile.generations else replace(profile, generations=generations)


def build_snapshot(config: Config, choices: Mapping[str, HostState], cache: StoreCache | None = None) -> Snapshot:
    roots = store_roots(config)
    hosts = {name: build_host_snapshot(config, host, choices.get(name, HostState()), roots, cache=cache)
             for name, host in config.hosts.items()}
    return Snapshot(config=config, hosts=hosts)

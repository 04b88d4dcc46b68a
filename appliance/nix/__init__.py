"""Nix generations: a host's profile read into ``Generation`` records.

``bootspec.py`` is pure (JSON/text in, fields out); ``store.py`` holds the
path-containment rule; ``profile.py`` does the file-system reads.
"""

from .bootspec import BootSpec, parse_bootspec, parse_generation_number, parse_link_name
from .profile import Generation, Profile, read_generation, read_profile, register_generation
from .store import StoreCache, StoreRoots

__all__ = [
    "BootSpec",
    "Generation",
    "Profile",
    "StoreCache",
    "StoreRoots",
    "parse_bootspec",
    "parse_generation_number",
    "parse_link_name",
    "read_generation",
    "read_profile",
    "register_generation",
]

"""Boot styles: the one registry of the ways a host can boot.

Each style is one module implementing ``BootStyle`` (``base.py``); adding a
style means adding its module and one line to ``STYLES``.  ``python -m
appliance.boot.styles`` prints the registry as JSON (``nixos/boot-styles.json``,
read by the NixOS module's ``boot`` option).
"""

from __future__ import annotations

import json
from typing import Mapping

from . import ipxe, rpi, rpi5, uboot
from .base import BootInputs, BootStyle, DhcpAnswer, DhcpQuery

STYLES: Mapping[str, BootStyle] = {s.name: s for s in (rpi.STYLE, rpi5.STYLE, uboot.STYLE, ipxe.STYLE)}
# Host keys only some styles read (config_txt, menu_timeout, …): set on another style's host, a mistake.
STYLE_KEYS: frozenset[str] = frozenset().union(*(s.host_keys for s in STYLES.values()))


class UnknownStyle(ValueError):
    """A ``boot`` value that names no style."""


def style_named(name: object) -> BootStyle:
    if isinstance(name, str) and name in STYLES:
        return STYLES[name]
    raise UnknownStyle(f"{name!r} is not a boot style (expected {names_text()})")


def styles_reading(key: str) -> list[str]:
    return [s.name for s in STYLES.values() if key in s.host_keys]


def names_text() -> str:
    names = list(STYLES)
    return ", ".join(names[:-1]) + f" or {names[-1]}" if len(names) > 1 else names[0]


def registry_document() -> str:
    """The registry as the NixOS module reads it (``nixos/boot-styles.json``)."""
    doc = [{"name": s.name, "description": s.description, "firmware": s.default_firmware} for s in STYLES.values()]
    return json.dumps(doc, indent=2) + "\n"


__all__ = ["BootInputs", "BootStyle", "DhcpAnswer", "DhcpQuery", "STYLES", "STYLE_KEYS", "UnknownStyle",
           "names_text", "registry_document", "style_named", "styles_reading"]

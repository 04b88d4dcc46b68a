"""Pure parsing of bootspec documents and profile link names."""

from __future__ import annotations

import json
import re
from typing import NamedTuple

from ..errors import UsageError, shown

BOOTSPEC_KEY = "org.nixos.bootspec.v1"


class BootSpec(NamedTuple):
    """The fields of a generation the appliance needs, as absolute path strings."""

    kernel: str
    initrd: str
    init: str
    kernel_params: tuple[str, ...]
    label: str = ""
    system: str = ""
    toplevel: str = ""


class BootSpecProblem(ValueError):
    pass


def parse_bootspec(text: str | bytes) -> BootSpec:
    """Parse ``boot.json`` (bootspec v1)."""
    try:
        doc = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BootSpecProblem(f"boot.json is not valid JSON: {exc}") from exc
    spec = doc.get(BOOTSPEC_KEY) if isinstance(doc, dict) else None
    if not isinstance(spec, dict):
        raise BootSpecProblem(f"boot.json has no {BOOTSPEC_KEY!r} object")
    missing = [k for k in ("kernel", "init") if not isinstance(spec.get(k), str) or not spec[k]]
    if missing:
        raise BootSpecProblem(f"boot.json lacks {', '.join(missing)}")
    initrd = spec.get("initrd")
    if not isinstance(initrd, str) or not initrd:
        raise BootSpecProblem("boot.json lacks initrd (a netbooted host needs one)")
    unprintable = [k for k in ("kernel", "initrd", "init") if not spec[k].isprintable()]
    if unprintable:
        raise BootSpecProblem(f"boot.json {', '.join(unprintable)} has a control character")
    relative = [k for k in ("kernel", "initrd", "init") if not spec[k].startswith("/")]
    if relative:
        raise BootSpecProblem(f"boot.json {', '.join(relative)} must be an absolute path")
    params = spec.get("kernelParams", [])
    if not isinstance(params, list) or not all(isinstance(p, str) for p in params):
        raise BootSpecProblem("boot.json kernelParams is not a list of strings")
    return BootSpec(
        kernel=spec["kernel"],
        initrd=initrd,
        init=spec["init"],
        kernel_params=tuple(params),
        label=str(spec.get("label", "")),
        system=str(spec.get("system", "")),
        toplevel=str(spec.get("toplevel", "")),
    )


def parse_kernel_params(text: str) -> tuple[str, ...]:
    """The legacy ``kernel-params`` file: one line of whitespace-separated params."""
    return tuple(text.split())


_NUMBER = "[1-9][0-9]{0,8}"      # ASCII only: re's \d and int() also take other scripts' digits


def parse_link_name(profile_name: str, entry: str) -> int | None:
    """``pi-desktop-12-link`` → 12 for profile ``pi-desktop``; anything else → None."""
    match = re.fullmatch(re.escape(profile_name) + f"-({_NUMBER})-link", entry)
    return int(match.group(1)) if match else None


def parse_generation_number(text: str) -> int:
    """A generation number as an operator types it: the decimal digits of a link name (leading
    zeros allowed, and ``0``, which names no generation).  ``-1``, ``1e3``, ``1_0``, ``+2`` or
    ten digits are a ``UsageError``, where ``int()`` would read ``1_0`` as 10."""
    match = re.fullmatch(f"0*({_NUMBER}|0)", text)
    if match is None:
        raise UsageError(f"{shown(text, 24)} is not a generation number (one that 'netboot generations HOST' lists)")
    return int(match.group(1))


def link_name(profile_name: str, number: int) -> str:
    return f"{profile_name}-{number}-link"

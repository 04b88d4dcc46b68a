"""Every .nix file in the repository parses (README: NixOS)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from nix_helpers import REPO

_SKIP_DIRS = {".git", ".cache", ".venv", "node_modules", "build", "dist", "result"}


def _nix_files() -> list[Path]:
    found = []
    for root, dirs, files in os.walk(REPO):
        dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS and not d.startswith("result-"))
        found += [Path(root, f) for f in sorted(files) if f.endswith(".nix")]
    return found


NIX_FILES = _nix_files()


def test_the_nix_files_are_found() -> None:
    names = {str(p.relative_to(REPO)) for p in NIX_FILES}
    assert {"flake.nix", "nixos/appliance.nix", "nixos/client.nix", "nixos/lib.nix", "nixos/package.nix"} <= names


@pytest.mark.parametrize("path", NIX_FILES, ids=[str(p.relative_to(REPO)) for p in NIX_FILES])
def test_nix_file_parses(path: Path, nix_parse) -> None:
    assert nix_parse(path).strip()

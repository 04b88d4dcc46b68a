"""Helpers for the NixOS tests: run ``nix-instantiate`` (Debian's nix-bin).

Without nix-instantiate these tests skip on a developer machine but fail in CI
(``CI`` set), where scripts/install.sh installs nix-bin: a missing tool must
never turn the Nix checks into silent skips there.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any, Callable

import pytest

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_TOML = REPO / "examples" / "appliance.toml"
NIXOS_LIB = REPO / "nixos" / "lib.nix"

# Quiet and side-effect free: no nixbld group here, no store writes needed.
_NIX_FLAGS = ["--readonly-mode", "--option", "build-users-group", ""]


def nix_instantiate() -> str:
    path = shutil.which("nix-instantiate")
    if path is None:
        message = "nix-instantiate not found: install nix-bin (apt-get install --no-install-recommends nix-bin)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def _run(args: list[str]) -> str:
    proc = subprocess.run([nix_instantiate(), *_NIX_FLAGS, *args], capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise AssertionError(f"nix-instantiate {' '.join(args)} failed:\n{proc.stderr}")
    return proc.stdout


@pytest.fixture
def nix_parse() -> Callable[[Path], str]:
    """Parse one .nix file; returns the normalised expression."""
    return lambda path: _run(["--parse", str(path)])


@pytest.fixture
def nix_eval() -> Callable[[str], Any]:
    """Evaluate an expression strictly and return it as JSON data.

    ``lib`` is bound to nixos/lib.nix and ``example`` to the example TOML.
    """

    def evaluate(expr: str) -> Any:
        wrapped = (
            f"let lib = import {NIXOS_LIB}; "
            f"example = builtins.fromTOML (builtins.readFile {EXAMPLE_TOML}); "
            f"in {expr}"
        )
        return json.loads(_run(["--eval", "--strict", "--json", "-E", wrapped]))

    return evaluate

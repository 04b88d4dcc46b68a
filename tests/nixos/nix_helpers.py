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


# -- NixOS module evaluation ---------------------------------------------------------

EVAL_DIR = REPO / "tests" / "nixos" / "eval"


def nixpkgs_lib() -> Path:
    """lib/ of nixpkgs: $NETBOOT_NIXPKGS_LIB, else the checkout's sibling ../shared/nixpkgs-lib/lib."""
    override = os.environ.get("NETBOOT_NIXPKGS_LIB")
    path = Path(override) if override else REPO.parent / "shared" / "nixpkgs-lib" / "lib"
    if not (path / "default.nix").is_file():
        message = (f"nixpkgs lib not found at {path} (set NETBOOT_NIXPKGS_LIB to a nixpkgs lib/ directory)")
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def full_nixpkgs() -> Path | None:
    """A nixpkgs checkout with nixos/: $NETBOOT_NIXPKGS, else <nixpkgs> from NIX_PATH; None without one."""
    override = os.environ.get("NETBOOT_NIXPKGS")
    if override:
        return Path(override)
    proc = subprocess.run([nix_instantiate(), "--find-file", "nixpkgs"], capture_output=True, text=True, timeout=60)
    path = Path(proc.stdout.strip()) if proc.returncode == 0 else None
    return path if path is not None and (path / "nixos" / "lib" / "eval-config.nix").is_file() else None


def nix_string(value: str) -> str:
    """A Nix string literal (JSON string escapes are Nix's, but `${` must not interpolate, and
    Nix has no `\\u` escape: other characters are written as they are, in UTF-8)."""
    return json.dumps(value, ensure_ascii=False).replace("${", "\\${")


def eval_harness() -> str:
    """Nix expression binding `lib`, `h` (tests/nixos/eval) and `repo`, to prefix an expression with."""
    nixpkgs = full_nixpkgs()
    return (f"let lib = import {nixpkgs / 'lib' if nixpkgs else nixpkgs_lib()}; "
            f"h = import {EVAL_DIR} {{ inherit lib; nixpkgs = {nixpkgs if nixpkgs else 'null'}; }}; "
            f"repo = {REPO}; in ")


def nix_eval_json(expr: str) -> Any:
    """Evaluate a self-contained expression strictly, as JSON data."""
    return json.loads(_run(["--eval", "--strict", "--json", "-E", expr]))


def nix_eval_error(expr: str) -> str:
    """Evaluate an expression that must fail; returns nix's error output."""
    proc = subprocess.run([nix_instantiate(), *_NIX_FLAGS, "--eval", "--strict", "--json", "-E", expr],
                          capture_output=True, text=True, timeout=120)
    if proc.returncode == 0:
        raise AssertionError(f"evaluation succeeded but should have failed: {proc.stdout[:2000]}")
    return proc.stderr

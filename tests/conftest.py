"""Shared fixtures: a temporary Nix-store-like tree, a demo layout, and the CLI."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Callable

import pytest

from appliance.demo import build_demo
from helpers import netboot


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    """An empty store directory (resolved, so paths compare equal to what the code resolves)."""
    store = Path(os.path.realpath(tmp_path)) / "store"
    store.mkdir()
    return store


@pytest.fixture
def demo_layout(tmp_path: Path):
    """``build_demo``: three hosts (rpi, uboot, ipxe), two generations each, firmware, config."""
    return build_demo(Path(os.path.realpath(tmp_path)) / "demo", port=6969)


@pytest.fixture
def netboot_cli() -> Callable[..., subprocess.CompletedProcess]:
    """Run ``netboot ARGS...`` in a subprocess; ``env`` entries are added to the environment."""

    return netboot

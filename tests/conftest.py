"""Shared fixtures: a temporary Nix-store-like tree, a demo layout, and the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest

from appliance.demo import build_demo


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

    def run(*args: str, env: dict[str, str] | None = None, drop_env: tuple[str, ...] = ("NETBOOT_CONFIG",),
            timeout: float = 60, text: bool = True) -> subprocess.CompletedProcess:
        full_env = {k: v for k, v in os.environ.items() if k not in drop_env}
        full_env.update(env or {})
        return subprocess.run([sys.executable, "-m", "appliance.cli.main", *map(str, args)],
                              capture_output=True, text=text, env=full_env, timeout=timeout)

    return run

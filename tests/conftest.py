"""Shared fixtures: a temporary Nix-store-like tree, a demo layout, and the CLI."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Callable

import pytest
from hypothesis import HealthCheck, settings

from appliance.demo import build_demo
from helpers import netboot

# Property tests check behaviour, not speed: on a loaded machine one example can take longer than
# hypothesis' 200 ms deadline (then a faster replay makes it report "unreliable test timings"), and
# generating data can trip its too_slow health check.
settings.register_profile("loaded-machine", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("loaded-machine")


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


@pytest.fixture
def nb(demo_layout, netboot_cli, capsys):
    """``nb(*args)`` runs netboot against the demo config in a subprocess.

    ``nb.inproc(*args)`` runs the same command line in this process (``main(argv)``) and returns its
    stdout; used for set-up steps and for looking at the result of a command run as a subprocess,
    to keep the suite fast.
    """
    from appliance.cli.main import main

    def run(*args: str, **kw):
        return netboot_cli("-c", demo_layout.config, *args, **kw)

    def inproc(*args: str) -> str:
        capsys.readouterr()
        code = main(["-c", str(demo_layout.config), *args])
        out = capsys.readouterr()
        assert code == 0, out.err
        return out.out

    run.layout = demo_layout
    run.inproc = inproc
    run.query = lambda *args: json.loads(inproc(*args))
    return run

"""``netboot serve``: apart from the other commands, so that it does not load the application layer."""

from __future__ import annotations

import argparse

from ..config import config_path_from


def serve(args: argparse.Namespace) -> int:
    from ..control.daemon import run_daemon

    return run_daemon(config_path_from(args.config))

"""``python3 -m appliance.iscsi [-c FILE] plan|apply|status [--allow-destroy] [--json]``.

The same commands as ``netboot iscsi …``, usable without the full CLI (the VM lab).
"""

from __future__ import annotations

import argparse
import logging
import sys

from ..config import config_path_from, load_config
from ..errors import ApplianceError
from .commands import cmd_apply, cmd_plan, cmd_status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m appliance.iscsi")
    parser.add_argument("-c", "--config")
    parser.add_argument("command", choices=("plan", "apply", "status"))
    parser.add_argument("--allow-destroy", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        config = load_config(config_path_from(args.config))
    except ApplianceError as exc:
        print(f"netboot iscsi: {exc}", file=sys.stderr)
        return exc.exit_code
    return {"plan": cmd_plan, "apply": cmd_apply, "status": cmd_status}[args.command](config, args)


if __name__ == "__main__":
    sys.exit(main())

"""``netboot`` entry point: argument parsing, dispatch, errors → one line + exit code."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Callable

from .. import __version__
from ..errors import ApplianceError, OutputError, UsageError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="netboot",
        description="Boot server: TFTP straight from the Nix store, root disks over iSCSI (LIO).",
    )
    parser.add_argument("--version", action="version", version=f"netboot-appliance {__version__}")
    # -c / -v work before or after the command (``netboot -c F check`` and ``netboot check -c F``).
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-c", "--config", default=argparse.SUPPRESS,
                        help="configuration file (default: $NETBOOT_CONFIG or /etc/netboot/appliance.toml)")
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="debug logging")
    parser.add_argument("-c", "--config", help="configuration file (default: $NETBOOT_CONFIG or /etc/netboot/appliance.toml)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    def cmd(name: str, help: str, json_flag: bool = False) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help, parents=[common])
        p.set_defaults(func=name)     # see command_function
        if json_flag:
            p.add_argument("--json", action="store_true", help="machine-readable output")
        return p

    p = cmd("check", "validate the configuration and state; list every problem", json_flag=True)
    p.add_argument("--no-files", action="store_true", help="only validate the file itself, not paths on this machine")
    p = cmd("generations", "list a host's generations", json_flag=True)
    p.add_argument("host")
    p = cmd("tree", "show a host's boot tree (TFTP path → source)", json_flag=True)
    p.add_argument("host")
    p.add_argument("--generation", "-g", type=_generation, help="render this generation instead of the served one")
    p = cmd("cat", "print one file of a host's boot tree")
    p.add_argument("host")
    p.add_argument("path")
    p.add_argument("--generation", "-g", type=_generation, help="from this generation instead of the served one")
    p = cmd("status", "per host: served generation and why, boot events, iSCSI", json_flag=True)
    p.add_argument("host", nargs="?")
    p = cmd("pin", "serve generation N until unpinned", json_flag=True)
    p.add_argument("host")
    p.add_argument("generation", type=_generation)
    p = cmd("unpin", "follow the profile again", json_flag=True)
    p.add_argument("host")
    p = cmd("rollback", "pin the newest valid generation older than the served one (during a trial: end it)",
            json_flag=True)
    p.add_argument("host")
    p = cmd("trial", "serve generation N for the next boot only, reverting unless confirmed", json_flag=True)
    p.add_argument("host")
    p.add_argument("generation", type=_generation)
    p = cmd("confirm", "the host came up: make the served generation last-known-good", json_flag=True)
    p.add_argument("host")
    p = cmd("register", "add a NixOS toplevel as the host's next generation", json_flag=True)
    p.add_argument("host")
    p.add_argument("storepath")
    p = cmd("doctor", "what keeps a host from booting, and how to fix it", json_flag=True)
    p.add_argument("host", nargs="?", help="only this host (default: every host)")
    p = cmd("serve", "run the appliance: TFTP, control loop, iSCSI reconcile")
    p = cmd("demo", "serve a throw-away demo store on a loopback port (no root, Nix or LIO needed)")
    p.add_argument("--port", type=_port, default=6969, help="TFTP port on 127.0.0.1 (default 6969)")
    p.add_argument("--dir", help="where to build the demo store (default: a new temporary directory)")
    p.add_argument("--print-only", action="store_true", help="print the trees instead of serving")
    p = cmd("shell", "interactive admin shell (targetcli style)")
    p.add_argument("script", nargs="*", help="commands to run instead of an interactive session")

    state = sub.add_parser("state", help="show or repair the state file (pins, trials, history)",
                           description="show or repair the state file (pins, trials, history)", parents=[common])
    ssub = state.add_subparsers(dest="state_command", metavar="ACTION")
    ssub.required = True
    sp = ssub.add_parser("show", help="what the state file holds, also when it is damaged",
                         description="what the state file holds, also when it is damaged", parents=[common])
    sp.set_defaults(func="state_show")
    sp.add_argument("--json", action="store_true", help="machine-readable output")
    sp = ssub.add_parser("repair", parents=[common],
                         help="replace a damaged state file by what can be read (the damaged one is kept)",
                         description="replace a damaged state file by what can be read from it, completed "
                                     "from the last good copy; the damaged file is kept aside")
    sp.set_defaults(func="state_repair")
    sp.add_argument("--json", action="store_true", help="machine-readable output")

    iscsi = sub.add_parser("iscsi", help="iSCSI root LUNs on kernel LIO", description="iSCSI root LUNs on kernel LIO",
                           parents=[common])
    isub = iscsi.add_subparsers(dest="iscsi_command", metavar="ACTION")
    isub.required = True
    for name, help in (("plan", "show what apply would change"), ("apply", "converge LIO to the configuration"),
                       ("status", "targets, LUNs, ACLs and sessions")):
        ip = isub.add_parser(name, help=help, description=help, parents=[common])
        ip.set_defaults(func="iscsi", iscsi_action=name)
        ip.add_argument("--json", action="store_true", help="machine-readable output")
        if name != "status":
            ip.add_argument("--allow-destroy", action="store_true",
                            help="allow removing LIO objects of LUNs (never the backing data)")
    return parser


def command_function(name: str) -> Callable[[argparse.Namespace], int]:
    """A command's function, imported when it runs: ``serve`` loads the daemon's stack and not
    the application layer (the first TFTP answer waits for every import; seconds on a slow
    machine), the other commands the application layer and not the daemon."""
    if name == "serve":
        from .serve import serve

        return serve
    from . import commands

    return getattr(commands, name)


def _port(text: str) -> int:
    """A fixed port: the demo prints curl commands naming it.  ASCII digits only (int() reads
    "6_969" and other scripts' digits, which the curl commands would not show)."""
    port = int(text) if text.isascii() and text.isdigit() and len(text) <= 5 else 0
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port in 1–65535")
    return port


def _generation(text: str) -> int:
    from ..nix.bootspec import parse_generation_number

    try:
        return parse_generation_number(text)
    except UsageError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return int(command_function(args.func)(args) or 0)
    except OutputError as exc:
        _discard_stdout()
        print(f"netboot: {exc}", file=sys.stderr)
        return exc.exit_code
    except ApplianceError as exc:
        print(f"netboot: {exc}", file=sys.stderr)
        if getattr(args, "json", False):     # a script reading stdout gets a document either way
            print(json.dumps({"error": str(exc), "kind": type(exc).__name__}, indent=2))
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        _discard_stdout()
        return 0


def _discard_stdout() -> None:
    """What is still buffered for a stdout that failed goes nowhere: flushing it again at exit
    would print Python's "Exception ignored" lines."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


if __name__ == "__main__":
    sys.exit(main())

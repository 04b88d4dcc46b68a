"""``netboot shell``: an admin shell on configshell-fb, in the style of targetcli.

    /hosts/<host>/generations/<N>   ls shows every generation, served one marked
    /hosts/<host>  pin N | unpin | rollback | trial N | confirm | status | tree
    /iscsi         plan | status

Each command calls the same ``appliance.app`` operation as the matching
``netboot`` command and prints its report with the same renderer.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from configshell import ConfigNode, ConfigShell
from configshell.node import ExecutionError
from pyparsing import ParseBaseException

from ..app import App, Report, render_text
from ..errors import ApplianceError, UsageError
from ..nix import parse_generation_number

__all__ = ["run_shell"]


class _Shell(ConfigShell):
    """configshell's shell where a mistake is one error line, never the end of the session.

    ``exit_code`` is the first failure's (2 for a mistyped path, command or argument, as
    ``netboot`` exits on a usage error; else the operation's), for scripts.
    """

    exit_code = 0

    def failed(self, message: str | None, exit_code: int) -> None:
        if message:
            print(f"error: {message}")
        self.exit_code = self.exit_code or exit_code

    def run_cmdline(self, cmdline: str) -> None:
        try:
            super().run_cmdline(cmdline)
        except (ExecutionError, ParseBaseException) as exc:   # unknown path or command, missing argument
            self.failed(str(exc), UsageError.exit_code)
        except ApplianceError as exc:         # from a listing (ls reads the state and the profiles)
            self.failed(str(exc), exc.exit_code)
        except UnicodeError:      # bytes that are not UTF-8 (configshell logs every line as text)
            self.failed(f"{cmdline.encode(errors='backslashreplace').decode()!r} is not UTF-8 text",
                        UsageError.exit_code)


def _show(node: ConfigNode, operation: Callable[[], Report]) -> None:
    try:
        report = operation()
    except ApplianceError as exc:
        node.shell.failed(str(exc), exc.exit_code)
        return
    text = render_text(report)
    if text:
        print(text)
    for line in report.warnings:
        print(line)
    if report.exit_code:
        node.shell.failed(None, report.exit_code)


class _Generations(ConfigNode):
    def __init__(self, parent: ConfigNode, app: App, host: str) -> None:
        super().__init__("generations", parent)
        self.app, self.host = app, host

    @property
    def children(self) -> tuple:
        """Re-read the profile on every listing: generations come and go."""
        for child in list(self._children):
            self.remove_child(child)
        snap = self.app.host_snapshot(self.host)
        for gen in snap.profile.generations:
            _Generation(self, gen, served=gen.number == snap.selection.number, current=gen.number == snap.profile.current)
        return tuple(sorted(self._children, key=lambda c: -int(c.name)))

    def summary(self) -> tuple[str, bool | None]:
        return "NixOS generations of the host's profile", None


class _Generation(ConfigNode):
    def __init__(self, parent: ConfigNode, gen, served: bool, current: bool) -> None:
        super().__init__(str(gen.number), parent)
        marks = [m for m, on in (("served", served), ("current", current)) if on]
        self._summary = (f"{gen.label or gen.toplevel} {' '.join(marks)}".strip() if gen.valid
                         else "invalid: " + "; ".join(gen.problems), gen.valid)

    def summary(self) -> tuple[str, bool | None]:
        return self._summary


class _Host(ConfigNode):
    def __init__(self, parent: ConfigNode, app: App, name: str) -> None:
        super().__init__(name, parent)
        self.app = app
        _Generations(self, app, name)

    def summary(self) -> tuple[str, bool | None]:
        snap = self.app.host_snapshot(self.name)
        return f"{snap.host.boot.name}, serving {snap.selection.number} ({snap.selection.reason})", \
            snap.selection.number is not None

    def ui_command_pin(self, generation: str) -> None:
        """Serve generation N until unpinned."""
        _show(self, lambda: self.app.pin(self.name, parse_generation_number(generation)))

    def ui_command_unpin(self) -> None:
        """Follow the profile again."""
        _show(self, lambda: self.app.unpin(self.name))

    def ui_command_rollback(self) -> None:
        """Pin the newest valid generation older than the served one (during a trial: end it)."""
        _show(self, lambda: self.app.rollback(self.name))

    def ui_command_trial(self, generation: str) -> None:
        """Serve generation N for the next boot only."""
        _show(self, lambda: self.app.trial(self.name, parse_generation_number(generation)))

    def ui_command_confirm(self) -> None:
        """The host came up: the served generation becomes last-known-good."""
        _show(self, lambda: self.app.confirm(self.name))

    def ui_command_status(self) -> None:
        """Served generation, why, last boot events."""
        _show(self, lambda: self.app.status(self.name))

    def ui_command_tree(self) -> None:
        """The host's boot tree."""
        _show(self, lambda: self.app.tree(self.name))


class _Iscsi(ConfigNode):
    def __init__(self, parent: ConfigNode, app: App) -> None:
        super().__init__("iscsi", parent)
        self.app = app

    def summary(self) -> tuple[str, bool | None]:
        enabled = self.app.config.iscsi.enable
        return ("enabled" if enabled else "disabled"), enabled

    def ui_command_plan(self) -> None:
        """What iscsi apply would change."""
        _show(self, self.app.iscsi_plan)

    def ui_command_status(self) -> None:
        """Targets, LUNs, ACLs and sessions."""
        _show(self, self.app.iscsi_status)


class _Root(ConfigNode):
    def __init__(self, shell: ConfigShell, app: App) -> None:
        super().__init__("/", shell=shell)
        hosts = ConfigNode("hosts", self)
        for name in app.config.hosts:
            _Host(hosts, app, name)
        _Iscsi(self, app)


def run_shell(app: App, script: list[str]) -> int:
    prefs = Path(os.environ.get("XDG_CONFIG_HOME", Path.home() / ".config")) / "netboot" / "shell"
    prefs.mkdir(parents=True, exist_ok=True)
    shell = _Shell(str(prefs))
    _Root(shell, app)
    if not script:
        shell.run_interactive()
        return 0
    for line in script:
        shell.run_cmdline(line)
        if shell.exit_code:     # what follows may depend on the failed line: stop, as sh -e does
            break
    return shell.exit_code

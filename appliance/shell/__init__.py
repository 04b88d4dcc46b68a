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

from ..app import App, Report, render_text
from ..errors import ApplianceError

__all__ = ["run_shell"]


def _show(operation: Callable[[], Report]) -> None:
    try:
        report = operation()
    except ApplianceError as exc:
        print(f"error: {exc}")
        return
    text = render_text(report)
    if text:
        print(text)
    for line in report.warnings:
        print(line)


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
        _show(lambda: self.app.pin(self.name, int(generation)))

    def ui_command_unpin(self) -> None:
        """Follow the profile again."""
        _show(lambda: self.app.unpin(self.name))

    def ui_command_rollback(self) -> None:
        """Pin the newest valid generation older than the served one."""
        _show(lambda: self.app.rollback(self.name))

    def ui_command_trial(self, generation: str) -> None:
        """Serve generation N for the next boot only."""
        _show(lambda: self.app.trial(self.name, int(generation)))

    def ui_command_confirm(self) -> None:
        """The host came up: the served generation becomes last-known-good."""
        _show(lambda: self.app.confirm(self.name))

    def ui_command_status(self) -> None:
        """Served generation, why, last boot events."""
        _show(lambda: self.app.status(self.name))

    def ui_command_tree(self) -> None:
        """The host's boot tree."""
        _show(lambda: self.app.tree(self.name))


class _Iscsi(ConfigNode):
    def __init__(self, parent: ConfigNode, app: App) -> None:
        super().__init__("iscsi", parent)
        self.app = app

    def summary(self) -> tuple[str, bool | None]:
        enabled = self.app.config.iscsi.enable
        return ("enabled" if enabled else "disabled"), enabled

    def ui_command_plan(self) -> None:
        """What iscsi apply would change."""
        _show(self.app.iscsi_plan)

    def ui_command_status(self) -> None:
        """Targets, LUNs, ACLs and sessions."""
        _show(self.app.iscsi_status)


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
    shell = ConfigShell(str(prefs))
    _Root(shell, app)
    if script:
        for line in script:
            shell.run_cmdline(line)
    else:
        shell.run_interactive()
    return 0

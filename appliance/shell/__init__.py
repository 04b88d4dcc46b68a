"""``netboot shell``: an admin shell on configshell-fb, in the style of targetcli.

    /hosts/<host>/generations/<N>   ls shows every generation, served one marked
    /hosts/<host>  pin N | unpin | rollback | trial N | confirm | status | tree
    /iscsi         plan | status

Each command runs the same code as the matching ``netboot`` command, so the
shell is only another front end.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from configshell import ConfigNode, ConfigShell

from ..config import Config
from ..errors import ApplianceError

__all__ = ["run_shell"]


def _run(config: Config, func, **kwargs: object) -> None:
    args = argparse.Namespace(config=str(config.source) if config.source else None, json=False, **kwargs)
    try:
        func(args)
    except ApplianceError as exc:
        print(f"error: {exc}")


class _Generations(ConfigNode):
    def __init__(self, parent: ConfigNode, config: Config, host: str) -> None:
        super().__init__("generations", parent)
        self.config, self.host = config, host

    @property
    def children(self) -> tuple:
        """Re-read the profile on every listing: generations come and go."""
        from ..cli.commands import _host_snapshot

        for child in list(self._children):
            self.remove_child(child)
        snap = _host_snapshot(self.config, self.host)
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
    def __init__(self, parent: ConfigNode, config: Config, name: str) -> None:
        super().__init__(name, parent)
        self.config = config
        _Generations(self, config, name)

    def summary(self) -> tuple[str, bool | None]:
        from ..cli.commands import _host_snapshot

        snap = _host_snapshot(self.config, self.name)
        return f"{snap.host.boot.name}, serving {snap.selection.number} ({snap.selection.reason})", \
            snap.selection.number is not None

    def ui_command_pin(self, generation: str) -> None:
        """Serve generation N until unpinned."""
        from ..cli import commands

        _run(self.config, commands.pin, host=self.name, generation=int(generation))

    def ui_command_unpin(self) -> None:
        """Follow the profile again."""
        from ..cli import commands

        _run(self.config, commands.unpin, host=self.name)

    def ui_command_rollback(self) -> None:
        """Pin the newest valid generation older than the served one."""
        from ..cli import commands

        _run(self.config, commands.rollback, host=self.name)

    def ui_command_trial(self, generation: str) -> None:
        """Serve generation N for the next boot only."""
        from ..cli import commands

        _run(self.config, commands.trial, host=self.name, generation=int(generation))

    def ui_command_confirm(self) -> None:
        """The host came up: the served generation becomes last-known-good."""
        from ..cli import commands

        _run(self.config, commands.confirm, host=self.name)

    def ui_command_status(self) -> None:
        """Served generation, why, last boot events."""
        from ..cli import commands

        _run(self.config, commands.status, host=self.name)

    def ui_command_tree(self) -> None:
        """The host's boot tree."""
        from ..cli import commands

        _run(self.config, commands.tree, host=self.name, generation=None)


class _Iscsi(ConfigNode):
    def __init__(self, parent: ConfigNode, config: Config) -> None:
        super().__init__("iscsi", parent)
        self.config = config

    def summary(self) -> tuple[str, bool | None]:
        return ("enabled" if self.config.iscsi.enable else "disabled"), self.config.iscsi.enable

    def ui_command_plan(self) -> None:
        """What iscsi apply would change."""
        from ..cli import commands

        _run(self.config, commands.iscsi, iscsi_action="plan", allow_destroy=False)

    def ui_command_status(self) -> None:
        """Targets, LUNs, ACLs and sessions."""
        from ..cli import commands

        _run(self.config, commands.iscsi, iscsi_action="status")


class _Root(ConfigNode):
    def __init__(self, shell: ConfigShell, config: Config) -> None:
        super().__init__("/", shell=shell)
        hosts = ConfigNode("hosts", self)
        for name in config.hosts:
            _Host(hosts, config, name)
        _Iscsi(self, config)


def run_shell(config: Config, script: list[str]) -> int:
    prefs = Path(os.environ.get("XDG_CONFIG_HOME", Path.home() / ".config")) / "netboot" / "shell"
    prefs.mkdir(parents=True, exist_ok=True)
    shell = ConfigShell(str(prefs))
    _Root(shell, config)
    if script:
        for line in script:
            shell.run_cmdline(line)
    else:
        shell.run_interactive()
    return 0

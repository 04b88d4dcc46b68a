"""The appliance's exception tree.

Every error an operator can see is an ``ApplianceError`` whose message says
what is wrong and where; the CLI prints it on one line and exits with
``exit_code``.  Lower-library errors (OSError, tomllib, rtslib) are
translated into these in exactly one place each, with ``raise ... from exc``.

    ApplianceError                  exit 1
    ├── ConfigError                 exit 2  (carries every Problem found)
    ├── UsageError                  exit 2
    ├── UnknownHost                 exit 2  (a host name that names no host)
    ├── GenerationError             exit 1  (an invalid generation, nothing to roll back to)
    │   ├── UnknownGeneration       exit 2  (a number that names no generation)
    │   └── PathEscapesStore        exit 1  (a symlink leaving store_dir)
    ├── StateError                  exit 1  (state file unreadable, locked)
    │   └── StateCorrupt            exit 1  (state file does not decode; a copy is kept)
    ├── TftpError                   exit 1  (server could not start)
    ├── HttpError                   exit 1  (server could not start)
    ├── OutputError                 exit 1  (stdout cannot be written: a full disk, a closed file)
    └── IscsiError                  exit 1
        ├── LioUnavailable          exit 1  (no configfs / modules)
        └── DestructiveChange       exit 1  (needs --allow-destroy)

A name or number the operator typed that names nothing (a host, a generation,
a file of a boot tree) is a usage error, exit 2, whatever command it reaches;
an operation the named thing does not allow is a failure, exit 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "ApplianceError",
    "ConfigError",
    "DestructiveChange",
    "GenerationError",
    "HttpError",
    "IscsiError",
    "LioUnavailable",
    "OutputError",
    "PathEscapesStore",
    "Problem",
    "StateCorrupt",
    "StateError",
    "TftpError",
    "UnknownGeneration",
    "UnknownHost",
    "UsageError",
    "shown",
]


def shown(text: str, limit: int = 60) -> str:
    """``text`` as an error line quotes it (``repr``), a pasted blob cut to its first characters."""
    return repr(text if len(text) <= limit else text[:limit] + "…")


class ApplianceError(Exception):
    """Base of every error the appliance reports to an operator."""

    exit_code = 1


@dataclass(frozen=True)
class Problem:
    """One configuration problem, located by its key path (``hosts.pi.mac``)."""

    path: str
    message: str

    MAX_MESSAGE = 400   # a value echoed back (a huge or deeply nested one) must not flood the line

    def __str__(self) -> str:
        message = self.message if len(self.message) <= self.MAX_MESSAGE else self.message[:self.MAX_MESSAGE] + "…"
        return f"{self.path}: {message}" if self.path else message


class ConfigError(ApplianceError):
    exit_code = 2

    def __init__(self, problems: list[Problem], source: str = "") -> None:
        self.problems = list(problems)
        self.source = source
        where = f"{source}: " if source else ""
        if len(self.problems) == 1:
            text = f"{where}{self.problems[0]}"
        else:
            text = f"{where}{len(self.problems)} problems: " + "; ".join(map(str, self.problems))
        super().__init__(text)


class UsageError(ApplianceError):
    exit_code = 2


class UnknownHost(ApplianceError):
    exit_code = 2

    def __init__(self, host: str, known: list[str] | None = None, suggestion: str = "") -> None:
        hint = f" (configured: {', '.join(sorted(known))})" if known else ""
        super().__init__(f"unknown host {shown(host)}{suggestion}{hint}")
        self.host = host


class GenerationError(ApplianceError):
    pass


class UnknownGeneration(GenerationError):
    """``pin HOST 9`` when the host's profile has no generation 9."""

    exit_code = 2

    def __init__(self, host: str, number: int, known: list[int]) -> None:
        have = ", ".join(map(str, sorted(known))) or "none"
        super().__init__(f"{host}: no generation {number} (generations: {have})")
        self.host = host
        self.number = number


class PathEscapesStore(GenerationError):
    pass


class StateError(ApplianceError):
    pass


class StateCorrupt(StateError):
    """The state file does not decode: nothing may be written over it until it is repaired."""

    def __init__(self, path: Path, reason: str, copy: Path | None, copy_error: str | None = None) -> None:
        self.path = path
        self.reason = reason
        self.copy = copy
        kept = f"a copy is kept as {copy}" if copy is not None else f"no copy could be kept ({copy_error})"
        super().__init__(f"{path} is corrupt ({reason}); {kept}; nothing was changed: "
                         "'netboot state show' lists what is readable, 'netboot state repair' keeps it "
                         "and restores the rest from the last good copy")


class TftpError(ApplianceError):
    pass


class HttpError(ApplianceError):
    pass


class OutputError(ApplianceError):
    """Writing a command's output failed (``netboot tree > file`` on a full disk)."""

    def __init__(self, exc: OSError) -> None:
        super().__init__(f"cannot write the output: {exc.strerror or exc}")


class IscsiError(ApplianceError):
    pass


class LioUnavailable(IscsiError):
    pass


class DestructiveChange(IscsiError):
    pass

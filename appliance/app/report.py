"""What every operation returns, and the one renderer of it (text or JSON)."""

from __future__ import annotations

import json
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping, Sequence, TextIO, Union

from ..errors import OutputError


@dataclass(frozen=True)
class Table:
    header: tuple[str, ...]
    rows: tuple[tuple[object, ...], ...]


Block = Union[str, Table]


@dataclass(frozen=True)
class Report:
    """An operation's result: ``data`` is the JSON document; ``text`` the same
    for people (lines and tables, in order); ``warnings`` go to stderr."""

    data: Mapping[str, Any] = field(default_factory=dict)
    text: tuple[Block, ...] = ()
    warnings: tuple[str, ...] = ()
    exit_code: int = 0


def table(rows: Sequence[Sequence[object]], header: Sequence[str]) -> str:
    cells = [list(map(str, header))] + [[("" if c is None else str(c)) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells)


def when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "-"


def render_text(report: Report) -> str:
    return "\n".join(table(b.rows, b.header) if isinstance(b, Table) else b for b in report.text)


def render_json(report: Report) -> str:
    return json.dumps(report.data, indent=2, sort_keys=True, default=str)


def emit(report: Report, as_json: bool = False, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Print ``report`` (JSON on ``--json``; the warnings go to stderr in text mode) → its exit code."""
    out = out or sys.stdout
    err = err or sys.stderr
    with writing():
        if as_json:
            out.write(render_json(report) + "\n")
        else:
            text = render_text(report)
            if text:
                out.write(text + "\n")
            for line in report.warnings:
                err.write(line + "\n")
        out.flush()
    return report.exit_code


@contextmanager
def writing() -> Iterator[None]:
    """Output errors as ``OutputError`` (a closed pipe stays ``BrokenPipeError``: the reader left)."""
    try:
        yield
    except BrokenPipeError:
        raise
    except OSError as exc:
        raise OutputError(exc) from exc

"""Helpers every test suite shares: a free loopback port, the ``netboot`` CLI, a bounded poll.

Imported as ``helpers`` by the tests under ``tests/`` (pytest puts ``tests/`` on the path) and as
``tests.helpers`` by ``qemu-tests/`` and ``bench/``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, TypeVar

T = TypeVar("T")


def free_port(kind: int = socket.SOCK_DGRAM, host: str = "127.0.0.1") -> int:
    """A port the kernel just handed out on ``host`` (UDP by default, ``SOCK_STREAM`` for TCP)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, kind) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def netboot_argv(*args: object, config: Path | str | None = None) -> list[str]:
    """The command line of ``netboot [-c CONFIG] ARGS...`` (for ``Popen``)."""
    return [sys.executable, "-m", "appliance.cli.main", *(["-c", str(config)] if config is not None else []),
            *map(str, args)]


def netboot(*args: object, config: Path | str | None = None, env: dict[str, str] | None = None,
            drop_env: tuple[str, ...] = ("NETBOOT_CONFIG",), timeout: float = 60, text: bool = True,
            input: str | bytes | None = None) -> subprocess.CompletedProcess:
    """Run ``netboot [-c CONFIG] ARGS...`` in a subprocess; ``env`` entries are added to the
    environment, ``drop_env`` ones removed (a developer's NETBOOT_CONFIG must not leak in)."""
    full_env = {k: v for k, v in os.environ.items() if k not in drop_env}
    full_env.update(env or {})
    return subprocess.run(netboot_argv(*args, config=config), capture_output=True, text=text, env=full_env, timeout=timeout, input=input)


def poll(check: Callable[[], T], deadline: float = 5.0, interval: float = 0.01) -> tuple[T, float]:
    """Call ``check`` until it returns something truthy or ``deadline`` seconds have passed;
    return (its last value, seconds taken).  A bounded wait, never a sleep standing in for
    synchronisation."""
    start = time.monotonic()
    while True:
        last = check()
        elapsed = time.monotonic() - start
        if last or elapsed > deadline:
            return last, elapsed
        time.sleep(interval)


def eventually(check: Callable[[], T], deadline: float = 5.0, what: str = "",
               interval: float = 0.01) -> tuple[T, float]:
    """``poll`` that fails, showing the last value, when ``check`` is still falsy at the deadline."""
    last, elapsed = poll(check, deadline, interval)
    if not last:
        raise AssertionError(f"not within {deadline} s: {what} (last: {last!r:.300})")
    return last, elapsed

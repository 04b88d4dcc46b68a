"""Helpers every test suite shares: a free loopback port, the ``netboot`` CLI, a bounded poll.

Imported as ``helpers`` by the tests under ``tests/`` (pytest puts ``tests/`` on the path) and as
``tests.helpers`` by ``qemu-tests/`` and ``bench/``.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, TypeVar

T = TypeVar("T")


FIXED_PORTS_FROM = 10000     # above the ports services are assigned by default


def free_port(kind: int = socket.SOCK_DGRAM, host: str = "127.0.0.1") -> int:
    """A port free on ``host`` now (UDP by default, ``SOCK_STREAM`` for TCP), for a server that
    binds it later.

    Picked below the kernel's ephemeral range: a port from ``bind(0)`` could be handed to any
    socket bound to port 0 meanwhile — a client's or a transfer's, in this or any other process
    on the machine — before the server binds it.  Ports below that range are only taken by
    number, so a collision needs another test picking the same one at the same moment."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    below = _ephemeral_ports_start()
    for _ in range(1000):
        port = FIXED_PORTS_FROM + secrets.randbelow(below - FIXED_PORTS_FROM)
        with socket.socket(family, kind) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port from {FIXED_PORTS_FROM} to {below} on {host}")


def _ephemeral_ports_start() -> int:
    """The lowest port ``bind(0)`` and ``connect`` may pick (Linux's default if unreadable)."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    return max(low, FIXED_PORTS_FROM + 1000)


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


WAIT_DEADLINE = 30.0    # bounds a wait for something that happens in well under a second when all is well


def eventually(check: Callable[[], T], deadline: float = WAIT_DEADLINE, what: str = "",
               interval: float = 0.01) -> tuple[T, float]:
    """``poll`` that fails, showing the last value, when ``check`` is still falsy at the deadline.

    The deadline only says when to give up: a loaded machine (CI, a TCG VM) can take many
    times longer than an idle one, so it is generous; how fast things happen is measured in
    ``bench/``, not here."""
    last, elapsed = poll(check, deadline, interval)
    if not last:
        raise AssertionError(f"not within {deadline} s: {what} (last: {last!r:.300})")
    return last, elapsed


def ip_command(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """``ip ARGS...`` (iproute2), for the tests that build network namespaces."""
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=30)


def free_subnet(prefix: str) -> int:
    """x such that no address or route here is in ``{prefix}.x.0/24`` (``prefix`` like "10.253");
    skips the test if none is found."""
    import pytest

    used = ip_command("-4", "-o", "addr").stdout + ip_command("-4", "route").stdout
    for _ in range(200):
        x = secrets.randbelow(250) + 3
        if f"{prefix}.{x}." not in used:
            return x
    pytest.skip(f"no free {prefix}.x.0/24 for the test")

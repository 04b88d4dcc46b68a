"""Real TFTP clients through the fault-injecting proxy: the matrix the fault
tests assert on and ``bench/loss.py`` reports.

Client settings are chosen so the *server* is what is under test: each client
retransmits its last ACK every 1–3 s and allows more than the longest outage
before giving up on its own (a client that gives up after 5 s cannot survive
an 8 s outage whatever the server does):

- curl: ``--max-time 120`` (curl derives its per-packet timeout and retry
  count from it);
- tftp-hpa: ``rexmt 1``, ``timeout 60`` (its total retransmission budget);
- atftp: ``--tftp-timeout 3`` (it gives up after 5 timeouts in a row: 15 s);
- tftpy: ``timeout=2``, ``retries=30``.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import tftpy

from .lossy_proxy import Impairment

HOST = "127.0.0.1"
CLIENT_DEADLINE = 120.0

SCENARIOS: dict[str, Impairment] = {
    "outage 1 s": Impairment(drop=0, duplicate=0, reorder=0, outage=1.0),
    "outage 3 s": Impairment(drop=0, duplicate=0, reorder=0, outage=3.0),
    "outage 8 s": Impairment(drop=0, duplicate=0, reorder=0, outage=8.0),
    "first ACK of a block lost": Impairment(drop=0, duplicate=0, reorder=0, ack_losses=1),
    "first 2 ACKs of a block lost": Impairment(drop=0, duplicate=0, reorder=0, ack_losses=2),
    "first 3 ACKs of a block lost": Impairment(drop=0, duplicate=0, reorder=0, ack_losses=3),
    "10% drop, dup, reorder": Impairment(drop=0.10, duplicate=0.10, reorder=0.10),
}


def _curl(port: int, remote: str, out: Path) -> list[str] | None:
    return ["curl", "-sS", "--max-time", str(int(CLIENT_DEADLINE)), "--tftp-blksize", "1468", "-o", str(out),
            f"tftp://{HOST}:{port}/{remote}"]


def _atftp(window: int | None) -> Callable[[int, str, Path], list[str]]:
    def cmd(port: int, remote: str, out: Path) -> list[str]:
        options = ["--option", "blksize 1468"]
        if window:
            options += ["--option", f"windowsize {window}"]
        return ["atftp", "--tftp-timeout", "3", *options, "-g", "-r", remote, "-l", str(out), HOST, str(port)]
    return cmd


def _tftp_hpa(port: int, remote: str, out: Path) -> list[str]:
    return ["tftp", HOST, str(port)]


CLIENTS: dict[str, tuple[str, Callable[[int, str, Path], list[str]], str | None]] = {
    # name → (binary, command, stdin)
    "curl": ("curl", _curl, None),
    "tftp-hpa": ("tftp", _tftp_hpa, "mode octet\nrexmt 1\ntimeout 60\nget {remote} {out}\nquit\n"),
    "atftp lock-step": ("atftp", _atftp(None), None),
    "atftp windowsize 16": ("atftp", _atftp(16), None),
    "tftpy": ("", lambda *_: [], None),
}


@dataclass
class Outcome:
    ok: bool            # the client finished and the file is byte-identical
    seconds: float
    detail: str = ""


def missing_binary(client: str) -> str | None:
    binary = CLIENTS[client][0]
    return binary if binary and shutil.which(binary) is None else None


def download(client: str, port: int, remote: str, out: Path, expected: bytes) -> Outcome:
    """Fetch ``remote`` through 127.0.0.1:``port`` with ``client``; compare with ``expected``."""
    binary, command, stdin = CLIENTS[client]
    started = time.monotonic()
    detail = ""
    if not binary:
        try:
            tftpy.TftpClient(HOST, port, options={"blksize": 1468}).download(remote, str(out), timeout=2,
                                                                             retries=30)
        except Exception as exc:  # tftpy raises several types; any is a failed transfer
            detail = f"tftpy: {exc!r}"
    else:
        text = stdin.format(remote=remote, out=out) if stdin else None
        try:
            result = subprocess.run(command(port, remote, out), input=text, capture_output=True, text=True,
                                    timeout=CLIENT_DEADLINE + 10, cwd=out.parent)
            detail = (result.stderr + result.stdout).strip()[-300:] if result.returncode else ""
        except subprocess.TimeoutExpired:
            detail = f"{client} still running after {CLIENT_DEADLINE + 10:.0f} s"
    seconds = time.monotonic() - started
    got = out.read_bytes() if out.exists() else b""
    ok = got == expected
    if not ok and not detail:
        detail = f"{len(got)} of {len(expected)} bytes, {'corrupt' if got and expected.startswith(got) is False else 'short'}"
    return Outcome(ok, seconds, detail)

"""Helpers for the control-loop tests: a real ``netboot serve`` subprocess, curl, the CLI.

The daemon runs as a child process on a loopback port with a demo store built
by ``build_demo``; readiness is taken from the systemd notify protocol (an
abstract AF_UNIX datagram socket passed in ``NOTIFY_SOCKET``), never from
sleeps.  Files are fetched with curl (a real TFTP client); the slow transfer
tests use a small raw-socket client that can pause between ACKs.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import signal
import socket
import struct
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from appliance.demo import build_demo
from appliance.demo.store import DemoLayout
from helpers import WAIT_DEADLINE, eventually, free_port, netboot, netboot_argv  # noqa: F401  (eventually: for the control tests)

PI = "pi-desktop"
PI_PREFIX = "dc-a6-32-01-02-03/"
PC = "pc"
PC_PREFIX = "52-54-00-ab-cd-ef/"
ARM = "arm-board"

CURL_NOT_FOUND = 68     # TFTP error 1
CURL_ACCESS = 69        # TFTP error 2



# -- the store ---------------------------------------------------------------------------

@dataclass
class Store:
    layout: DemoLayout
    port: int

    @property
    def config(self) -> Path:
        return self.layout.config

    def profile(self, host: str) -> Path:
        return self.layout.profiles / host

    def link(self, host: str, number: int) -> Path:
        return self.layout.profiles / f"{host}-{number}-link"

    def toplevel(self, host: str, number: int) -> Path:
        return Path(os.path.realpath(self.link(host, number)))

    def kernel_bytes(self, host: str, number: int) -> bytes:
        return (self.toplevel(host, number) / "kernel").read_bytes()

    def init_of(self, host: str, number: int) -> str:
        return f"init={self.toplevel(host, number)}/init"

    def state_file(self) -> Path:
        return self.layout.state / "state.json"

    def read_config(self) -> str:
        return self.config.read_text()

    def write_config(self, text: str, path: Path | None = None) -> None:
        """Replace the config atomically, as an editor or NixOS activation does."""
        target = path or self.config
        tmp = target.with_name(f".{target.name}.tmp-{secrets.token_hex(4)}")
        tmp.write_text(text)
        os.replace(tmp, target)

    def set_host_option(self, host: str, line: str, text: str | None = None) -> str:
        """Config text with ``line`` added to ``[hosts.<host>]``."""
        text = text if text is not None else self.read_config()
        header = f"[hosts.{host}]\n"
        assert header in text
        return text.replace(header, header + line + "\n", 1)


def build_store(root: Path, port: int | None = None) -> Store:
    port = port or free_port()
    layout = build_demo(root, port=port)
    return Store(layout, port)


def repoint_profile(profile: Path, number: int) -> None:
    """``nix-env --rollback`` / ``--switch-generation``: atomically point the profile at ``<P>-<N>-link``."""
    tmp = profile.with_name(f".{profile.name}.tmp-{secrets.token_hex(4)}")
    os.symlink(f"{profile.name}-{number}-link", tmp)
    os.replace(tmp, profile)


# -- the daemon --------------------------------------------------------------------------

class Daemon:
    """``netboot serve`` as a child process; always stopped by PID."""

    def __init__(self, config: Path, log_dir: Path, env: dict[str, str] | None = None) -> None:
        self.config = config
        self.log_dir = log_dir
        self.extra_env = env or {}
        self.proc: subprocess.Popen | None = None
        self.notify: socket.socket | None = None
        self.messages: list[str] = []
        self.starts = 0
        self.log_path = log_dir / "daemon-0.log"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = WAIT_DEADLINE * 2) -> "Daemon":
        assert self.proc is None or self.proc.poll() is not None
        self.close_notify()
        name = f"\0netboot-test-{os.getpid()}-{secrets.token_hex(6)}"
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self.notify.bind(name)
        self.messages = []
        self.log_path = self.log_dir / f"daemon-{self.starts}.log"
        self.starts += 1
        env = dict(os.environ, NOTIFY_SOCKET="@" + name[1:], PYTHONUNBUFFERED="1", **self.extra_env)
        env.pop("NETBOOT_CONFIG", None)
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                netboot_argv("serve", config=self.config),
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        self.wait_notify("READY=1", timeout)
        return self

    def wait_notify(self, wanted: str, timeout: float = WAIT_DEADLINE, after: int = 0) -> int:
        """Wait for a notify message containing the line ``wanted`` (index > ``after``); return its index."""
        assert self.notify is not None
        deadline = time.monotonic() + timeout
        while True:
            for i, msg in enumerate(self.messages):
                if i >= after and wanted in msg.splitlines():
                    return i
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {wanted!r} from the daemon within {timeout} s "
                                     f"(got {self.messages}); log:\n{self.log()}")
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"daemon exited with {self.proc.returncode} before {wanted!r}; "
                                     f"log:\n{self.log()}")
            self.notify.settimeout(min(left, 0.2))
            try:
                data = self.notify.recv(4096)
            except socket.timeout:
                continue
            self.messages.append(data.decode(errors="replace"))

    def drain_notify(self) -> None:
        if self.notify is None:
            return
        self.notify.setblocking(False)
        try:
            while True:
                self.messages.append(self.notify.recv(4096).decode(errors="replace"))
        except (BlockingIOError, socket.timeout):
            pass

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signum)

    def kill9(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGTERM)
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
            except ProcessLookupError:
                pass
        return self.proc.returncode

    def close_notify(self) -> None:
        if self.notify is not None:
            self.notify.close()
            self.notify = None

    def close(self) -> None:
        try:
            self.stop()
        finally:
            self.close_notify()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


# -- clients -----------------------------------------------------------------------------

@dataclass
class Fetch:
    rc: int
    data: bytes
    err: str

    @property
    def ok(self) -> bool:
        return self.rc == 0


def curl(port: int, path: str, host: str = "127.0.0.1", blksize: int = 8192, netns: str | None = None,
         timeout: float = 10.0) -> Fetch:
    """Fetch ``tftp://host:port/path`` with curl: (exit code, bytes)."""
    cmd = ["curl", "-sS", "--max-time", str(timeout), "--tftp-blksize", str(blksize),
           f"tftp://{host}:{port}/{path}"]
    if netns:
        cmd = ["ip", "netns", "exec", netns, *cmd]
    result = subprocess.run(cmd, capture_output=True, timeout=timeout + 5)
    return Fetch(result.returncode, result.stdout, result.stderr.decode(errors="replace"))


def get(port: int, path: str, **kw) -> bytes:
    f = curl(port, path, **kw)
    assert f.ok, f"fetching {path}: curl exit {f.rc}: {f.err}"
    return f.data


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


class RawTransfer:
    """A TFTP read driven step by step (octet, with options), to pause mid-transfer."""

    def __init__(self, port: int, path: str, host: str = "127.0.0.1", blksize: int = 1468,
                 timeout_opt: int = 10) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.settimeout(15.0)     # answers a loaded machine may delay
        self.server = (host, port)
        self.peer: tuple[str, int] | None = None
        self.blksize = blksize
        self.data = bytearray()
        self.block = 0
        self.done = False
        self.tsize: int | None = None
        opts = [b"blksize", str(blksize).encode(), b"tsize", b"0", b"timeout", str(timeout_opt).encode()]
        rrq = struct.pack("!H", 1) + path.encode() + b"\0octet\0" + b"".join(o + b"\0" for o in opts)
        self.sock.sendto(rrq, self.server)
        pkt, self.peer = self.sock.recvfrom(70000)
        op = struct.unpack("!H", pkt[:2])[0]
        if op == 5:
            raise AssertionError(f"TFTP error {struct.unpack('!H', pkt[2:4])[0]}: {pkt[4:-1]!r}")
        assert op == 6, f"expected OACK, got opcode {op}"
        fields = pkt[2:].split(b"\0")
        negotiated = dict(zip(fields[0::2], fields[1::2]))
        self.blksize = int(negotiated.get(b"blksize", 512))
        if b"tsize" in negotiated:
            self.tsize = int(negotiated[b"tsize"])
        self._ack(0)

    def _ack(self, block: int) -> None:
        self.sock.sendto(struct.pack("!HH", 4, block & 0xFFFF), self.peer)

    def step(self, blocks: int) -> None:
        """Receive and acknowledge up to ``blocks`` DATA packets."""
        got = 0
        while got < blocks and not self.done:
            pkt, addr = self.sock.recvfrom(70000)
            if addr != self.peer:
                continue
            op, num = struct.unpack("!HH", pkt[:4])
            if op == 5:
                raise AssertionError(f"TFTP error {num}: {pkt[4:-1]!r}")
            if op != 3:
                continue
            if num != (self.block + 1) & 0xFFFF:
                self._ack(self.block)    # a retransmission of what we have: re-ACK
                continue
            self.block += 1
            payload = pkt[4:]
            self.data += payload
            self._ack(num)
            got += 1
            if len(payload) < self.blksize:
                self.done = True

    def finish(self) -> bytes:
        while not self.done:
            self.step(1 << 30)
        self.close()
        return bytes(self.data)

    def close(self) -> None:
        self.sock.close()


# -- the CLI -----------------------------------------------------------------------------

def cli(config: Path, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess:
    return netboot(*args, config=config, timeout=timeout)


def cli_ok(config: Path, *args: str) -> str:
    r = cli(config, *args)
    assert r.returncode == 0, f"netboot {' '.join(args)} → {r.returncode}: {r.stderr}{r.stdout}"
    return r.stdout


def status(config: Path, host: str | None = None) -> dict:
    out = cli_ok(config, "status", "--json", *([host] if host else []))
    return json.loads(out)


def history(config: Path, host: str) -> list[dict]:
    return status(config, host)["hosts"][host]["history"]


def run_parallel(commands: Iterable[list[str]], timeout: float = 60.0) -> list[subprocess.CompletedProcess]:
    env = dict(os.environ)
    env.pop("NETBOOT_CONFIG", None)
    procs = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for c in commands]
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=timeout)
        out.append(subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr))
    return out

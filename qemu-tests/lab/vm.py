"""``ServerVM``: one QEMU (TCG) guest running the lab image, driven over virtio-serial.

    image = build_server_image()
    with ServerVM(image, shares=[Share(repo, "/lab/repo", readonly=True)],
                  hostfwd=[(free_port(socket.SOCK_STREAM), 3260)]) as vm:
        r = vm.run("python3 -m appliance.cli.main -c /tmp/x.toml iscsi status")
        r.check()

The VM is killed on exit — by its own PID only — also when start-up fails.
``extra_args`` adds QEMU arguments (bridges/taps, second NICs, disks) for
end-to-end suites.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

from .image import ServerImage

__all__ = ["CommandFailed", "Result", "ServerVM", "Share", "VMError"]


class VMError(RuntimeError):
    pass


@dataclass(frozen=True)
class Result:
    argv: str
    rc: int
    stdout: str
    stderr: str
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.rc == 0

    def check(self) -> "Result":
        if self.rc != 0:
            raise CommandFailed(self)
        return self


class CommandFailed(VMError):
    def __init__(self, result: Result) -> None:
        super().__init__(f"in VM: {result.argv!r} exited {result.rc}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}")
        self.result = result


@dataclass(frozen=True)
class Share:
    """A host directory shared into the guest with 9p."""

    host_path: Path
    guest_path: str
    readonly: bool = False
    # The host leaves it unchanged while the VM runs: the guest may cache lookups and pages
    # (9p cache=loose); without it every stat and read crosses virtio, seconds per import under TCG.
    cached: bool = False


@dataclass
class ServerVM:
    image: ServerImage
    shares: Sequence[Share] = ()
    hostfwd: Sequence[tuple[int, int]] = ()      # (host port on 127.0.0.1, guest port), TCP
    memory_mb: int = 1024
    smp: int = 2
    user_net: bool = True                        # slirp NIC as eth0 at 10.0.2.15
    extra_args: Sequence[str] = ()
    append: str = ""
    env: Mapping[str, str] = field(default_factory=dict)   # default environment of commands
    boot_timeout: float = 300.0                  # a give-up bound: TCG on a loaded machine is slow
    workdir: Path | None = None

    _proc: subprocess.Popen | None = field(default=None, init=False, repr=False)
    _sock: socket.socket | None = field(default=None, init=False, repr=False)
    _buf: bytes = field(default=b"", init=False, repr=False)
    _next_id: int = field(default=0, init=False, repr=False)
    _tmp: tempfile.TemporaryDirectory | None = field(default=None, init=False, repr=False)
    boot_seconds: float = field(default=0.0, init=False)

    # -- lifecycle -------------------------------------------------------------------

    def __enter__(self) -> "ServerVM":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def console_log(self) -> Path:
        return self._dir / "console.log"

    @property
    def _dir(self) -> Path:
        if self.workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="lab-vm-")
            self.workdir = Path(self._tmp.name)
        return self.workdir

    def qemu_argv(self) -> list[str]:
        d = self._dir
        append = ["console=ttyS0", "panic=-1", "quiet", "loglevel=4"]
        argv = ["qemu-system-x86_64", "-accel", "tcg", "-cpu", "max", "-smp", str(self.smp),
                "-m", str(self.memory_mb), "-nodefaults", "-display", "none", "-no-reboot",
                "-kernel", str(self.image.kernel), "-initrd", str(self.image.initrd),
                "-chardev", f"file,id=console,path={d / 'console.log'}", "-serial", "chardev:console",
                "-device", "virtio-serial-pci",
                "-chardev", f"socket,id=agent,path={d / 'agent.sock'},server=on,wait=off",
                "-device", "virtserialport,chardev=agent,name=lab.agent"]
        for i, share in enumerate(self.shares):
            tag = f"share{i}"
            ro = ",readonly=on" if share.readonly else ""
            argv += ["-virtfs", f"local,path={share.host_path},mount_tag={tag},security_model=none,id=fs{i}{ro}"]
            append.append(f"lab.share={tag}:{share.guest_path}{':ro' if share.readonly else ''}"
                          f"{':cache' if share.cached else ''}")
        if self.user_net:
            fwd = "".join(f",hostfwd=tcp:127.0.0.1:{h}-:{g}" for h, g in self.hostfwd)
            argv += ["-netdev", f"user,id=slirp,net=10.0.2.0/24{fwd}",
                     "-device", "virtio-net-pci,netdev=slirp,mac=52:54:00:12:34:56"]
        argv += list(self.extra_args)
        argv += ["-append", " ".join(append + ([self.append] if self.append else []))]
        return argv

    def start(self) -> None:
        started = time.monotonic()
        d = self._dir
        self._proc = subprocess.Popen(self.qemu_argv(), stdin=subprocess.DEVNULL, stdout=open(d / "qemu.log", "wb"),
                                      stderr=subprocess.STDOUT, start_new_session=True)
        try:
            self._connect(started)
            if self.user_net:
                self.run("ip link set eth0 up && ip addr add 10.0.2.15/24 dev eth0 && "
                         "ip route add default via 10.0.2.2", timeout=30).check()
        except BaseException:
            self.stop()
            raise
        self.boot_seconds = time.monotonic() - started

    def _connect(self, started: float) -> None:
        path = str(self._dir / "agent.sock")
        deadline = started + self.boot_timeout
        while True:
            self._check_alive()
            if os.path.exists(path):
                try:
                    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                    s.connect(path)
                    self._sock = s
                    break
                except OSError:
                    s.close()
            if time.monotonic() > deadline:
                raise VMError(f"QEMU did not open {path}: {self._tail()}")
            time.sleep(0.05)
        # The guest may not be listening yet: ping until it answers.
        while True:
            rid = self._send({"ping": True})
            reply = self._receive(rid, timeout=1.0, tolerate_timeout=True)
            if reply is not None:
                return
            self._check_alive()
            if time.monotonic() > deadline:
                raise VMError(f"the VM's agent did not answer within {self.boot_timeout:.0f} s: {self._tail()}")

    def stop(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)   # our own QEMU, by PID
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        if self._tmp is not None and not os.environ.get("LAB_KEEP"):
            self._tmp.cleanup()
            self._tmp = None

    def _check_alive(self) -> None:
        if self._proc is None or self._proc.poll() is not None:
            raise VMError(f"QEMU exited ({self._proc.returncode if self._proc else '?'}): {self._tail()}")

    def _tail(self) -> str:
        out = []
        for name in ("qemu.log", "console.log"):
            p = self._dir / name
            if p.exists():
                out.append(f"--- {name}:\n" + p.read_text(errors="replace")[-3000:])
        return "\n".join(out)

    # -- commands --------------------------------------------------------------------

    def _send(self, req: dict) -> int:
        assert self._sock is not None
        self._next_id += 1
        req = {**req, "id": self._next_id}
        self._sock.sendall((json.dumps(req) + "\n").encode())
        return self._next_id

    def _receive(self, rid: int, timeout: float, tolerate_timeout: bool = False) -> dict | None:
        assert self._sock is not None
        deadline = time.monotonic() + timeout
        while True:
            while b"\n" in self._buf:
                line, self._buf = self._buf.split(b"\n", 1)
                reply = json.loads(line)
                if reply.get("id") == rid:
                    return reply
            left = deadline - time.monotonic()
            if left <= 0:
                if tolerate_timeout:
                    return None
                raise VMError(f"no reply from the VM agent within {timeout:.0f} s")
            self._sock.settimeout(min(left, 1.0))
            try:
                chunk = self._sock.recv(1 << 16)
            except socket.timeout:
                self._check_alive()
                continue
            if not chunk:
                raise VMError(f"the VM agent closed the connection: {self._tail()}")
            self._buf += chunk

    def run(self, cmd: str | Sequence[str], timeout: float = 300, input: str | None = None,
            env: Mapping[str, str] | None = None, cwd: str | None = None) -> Result:
        """Run a command in the guest (a string goes through /bin/sh)."""
        if self._sock is None:
            raise VMError("the VM is not running")
        req: dict = {"timeout": timeout, "env": {**self.env, **(env or {})}}
        if isinstance(cmd, str):
            req["sh"] = cmd
            shown = cmd
        else:
            req["argv"] = list(cmd)
            shown = shlex.join(cmd)
        if input is not None:
            req["input"] = input
        if cwd is not None:
            req["cwd"] = cwd
        rid = self._send(req)
        reply = self._receive(rid, timeout + 30)
        assert reply is not None
        return Result(shown, int(reply["rc"]), reply.get("stdout", ""), reply.get("stderr", ""),
                      float(reply.get("seconds", 0.0)))

    def write_file(self, guest_path: str, text: str, mode: int = 0o644) -> None:
        self.run(["/bin/sh", "-c", f'cat > "$1" && chmod {mode:o} "$1"', "sh", guest_path], input=text).check()

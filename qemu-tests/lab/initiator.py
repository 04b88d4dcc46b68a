"""A userspace iSCSI initiator on the host (libiscsi tools, qemu-io), for checks
from outside the VM.  Talks only to 127.0.0.1 (a QEMU hostfwd port).

CHAP credentials go through libiscsi's environment variables or a qemu
``secret`` object read from a file — never on a command line.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Chap", "Initiator", "ToolResult"]


@dataclass(frozen=True)
class Chap:
    user: str
    password: str
    target_user: str = ""       # mutual CHAP: what the target must answer with
    target_password: str = ""

    def __repr__(self) -> str:
        return f"Chap(user={self.user!r}, mutual={bool(self.target_user)})"


@dataclass(frozen=True)
class ToolResult:
    argv: list[str]
    rc: int
    output: str     # stdout + stderr

    @property
    def ok(self) -> bool:
        return self.rc == 0


@dataclass(frozen=True)
class Initiator:
    port: int
    host: str = "127.0.0.1"
    timeout: float = 60.0

    def url(self, target: str, lun: int = 0) -> str:
        return f"iscsi://{self.host}:{self.port}/{target}/{lun}"

    def _env(self, chap: Chap | None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LIBISCSI_")}
        if chap is not None:
            env["LIBISCSI_CHAP_USERNAME"] = chap.user
            env["LIBISCSI_CHAP_PASSWORD"] = chap.password
            if chap.target_user:
                env["LIBISCSI_CHAP_TARGET_USERNAME"] = chap.target_user
                env["LIBISCSI_CHAP_TARGET_PASSWORD"] = chap.target_password
        return env

    def _tool(self, argv: list[str], chap: Chap | None) -> ToolResult:
        try:
            p = subprocess.run(argv, capture_output=True, text=True, env=self._env(chap), timeout=self.timeout)
            return ToolResult(argv, p.returncode, p.stdout + p.stderr)
        except subprocess.TimeoutExpired as exc:
            return ToolResult(argv, 124, f"timed out: {exc}")

    def inq(self, target: str, initiator: str, chap: Chap | None = None) -> ToolResult:
        return self._tool(["iscsi-inq", "-i", initiator, self.url(target)], chap)

    def readcapacity(self, target: str, initiator: str, chap: Chap | None = None) -> ToolResult:
        return self._tool(["iscsi-readcapacity16", "-s", "-i", initiator, self.url(target)], chap)

    def qemu_io(self, target: str, initiator: str, commands: list[str], chap: Chap | None = None) -> ToolResult:
        """Run qemu-io commands (``write -P 0xa5 0 1M``, ``read -P 0xa5 0 1M``) on LUN 0."""
        opts = [f"driver=iscsi,transport=tcp,portal={self.host}:{self.port},target={target},lun=0,"
                f"initiator-name={initiator}"]
        objects: list[str] = []
        with tempfile.TemporaryDirectory(prefix="lab-chap-") as tmp:
            if chap is not None:
                secret = Path(tmp, "password")
                secret.write_text(chap.password)
                secret.chmod(0o600)
                objects = ["--object", f"secret,id=chap0,file={secret}"]
                opts[0] += f",user={chap.user},password-secret=chap0"
            argv = ["qemu-io", *objects, "--image-opts", opts[0]]
            for c in commands:
                argv += ["-c", c]
            return self._tool(argv, None)

"""Desired LIO state, built purely from a ``Config``.

Secrets: CHAP passwords are read through an injected ``secrets`` callable and
kept only inside :class:`Secret`, whose ``repr``/``str`` never show the value
and which refuses JSON encoding.  Plan actions carry the secret *file path*,
never the value; ``apply`` reads the file again when it writes to LIO.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..config.model import Config, Host
from ..errors import ConfigError, Problem
from ..smallfile import FileTooLarge, NotRegularFile, read_small_file

__all__ = [
    "BACKSTORE_PREFIX",
    "BackstoreDesired",
    "ChapDesired",
    "LioDesired",
    "Portal",
    "Secret",
    "SecretReader",
    "TargetDesired",
    "backstore_name",
    "desired_state",
    "read_secret_file",
    "tpg_attributes",
]

BACKSTORE_PREFIX = "netboot-"
TPG_TAG = 1
LUN_INDEX = 0

SecretReader = Callable[[Path], str]


class Secret:
    """A secret value that never shows itself (repr, str, format, JSON)."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret(<hidden>)"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __bool__(self) -> bool:
        return bool(self._value)

    def __reduce__(self):  # no pickling a secret into a cache or a log by accident
        raise TypeError("a Secret cannot be pickled")


@dataclass(frozen=True, order=True)
class Portal:
    """An iSCSI network portal; ``ip`` without brackets (IPv6 too)."""

    ip: str
    port: int

    def __str__(self) -> str:
        return f"[{self.ip}]:{self.port}" if ":" in self.ip else f"{self.ip}:{self.port}"

    @property
    def rtslib_ip(self) -> str:
        # rtslib names portal directories "<ip>:<port>", IPv6 inside brackets.
        return f"[{self.ip}]" if ":" in self.ip else self.ip


@dataclass(frozen=True)
class BackstoreDesired:
    name: str            # "netboot-<host>"
    plugin: str          # "fileio" | "block" (rtslib plugin names)
    path: Path
    size: int | None     # bytes for fileio; None for block (the device decides)


@dataclass(frozen=True)
class ChapDesired:
    userid: str
    password_file: Path
    password: Secret = field(repr=False, compare=True)
    mutual_userid: str = ""
    mutual_password_file: Path | None = None
    mutual_password: Secret | None = field(default=None, repr=False)


@dataclass(frozen=True)
class TargetDesired:
    host: str
    iqn: str
    initiator: str
    backstore: BackstoreDesired
    portals: tuple[Portal, ...]
    attributes: tuple[tuple[str, str], ...]   # TPG attrib name → value, sorted
    chap: ChapDesired | None = None

    @property
    def attribute_map(self) -> dict[str, str]:
        return dict(self.attributes)


@dataclass(frozen=True)
class LioDesired:
    target_prefix: str
    targets: tuple[TargetDesired, ...]

    def owns_target(self, iqn: str) -> bool:
        return owns_target(self.target_prefix, iqn)

    def target(self, iqn: str) -> TargetDesired | None:
        return next((t for t in self.targets if t.iqn == iqn), None)


def owns_target(target_prefix: str, iqn: str) -> bool:
    return iqn.lower().startswith(f"{target_prefix.lower()}:")


def owns_backstore(name: str) -> bool:
    return name.startswith(BACKSTORE_PREFIX)


def backstore_name(host: str) -> str:
    return f"{BACKSTORE_PREFIX}{host}"


def host_of(name: str) -> str:
    """The host an owned object belongs to: ``<prefix>:<host>`` (a target) or
    ``netboot-<host>`` (a backstore); anything else is its own group."""
    if name.startswith(BACKSTORE_PREFIX):
        return name[len(BACKSTORE_PREFIX):]
    return name.rsplit(":", 1)[-1]


def tpg_attributes(chap: bool) -> tuple[tuple[str, str], ...]:
    """TPG 1 attributes: explicit ACLs only, writable LUNs for them, CHAP iff configured."""
    return tuple(sorted({
        "generate_node_acls": "0",
        "demo_mode_write_protect": "1",
        "authentication": "1" if chap else "0",
    }.items()))


SECRET_FILE_MAX = 4096   # bytes; LIO keeps 255: anything larger is another file named by mistake


class UnusableSecretFile(ValueError):
    """A secret file that is no file of a secret (a FIFO, a disk image); says what, never the content."""


def read_secret_file(path: Path) -> str:
    """Read a secret file; strip exactly one trailing newline (``echo secret > f``).

    Reads at most ``SECRET_FILE_MAX`` bytes of a regular file: a disk image named by
    mistake is not read into memory, a FIFO does not block."""
    try:
        data = read_small_file(path, SECRET_FILE_MAX)
    except NotRegularFile:
        raise UnusableSecretFile(f"{path} is not a regular file") from None
    except FileTooLarge:
        raise UnusableSecretFile(f"{path} is larger than {SECRET_FILE_MAX} bytes: not a secret file") from None
    text = data.decode("utf-8")
    if text.endswith("\n"):
        text = text[:-1]
        if text.endswith("\r"):
            text = text[:-1]
    return text


def desired_state(config: Config, secrets: SecretReader = read_secret_file) -> LioDesired:
    """The LIO objects the configuration asks for.  Raises ``ConfigError``
    (every problem listed) when a secret file cannot be read or is unusable."""
    problems: list[Problem] = []
    portals = tuple(sorted({Portal(a.host, a.port) for a in config.iscsi.portals}))
    targets = []
    for name in sorted(config.hosts):
        host = config.hosts[name]
        if host.iscsi is None:
            continue
        targets.append(_target(config, host, portals, secrets, problems))
    if problems:
        raise ConfigError(problems, str(config.source or ""))
    return LioDesired(target_prefix=config.iscsi.target_prefix, targets=tuple(targets))


def _target(config: Config, host: Host, portals: tuple[Portal, ...], secrets: SecretReader,
            problems: list[Problem]) -> TargetDesired:
    spec = host.iscsi
    assert spec is not None
    at = f"hosts.{host.name}.iscsi"
    lun = spec.lun
    backstore = BackstoreDesired(
        name=backstore_name(host.name),
        plugin="fileio" if lun.kind == "file" else "block",
        path=lun.path,
        size=lun.size if lun.kind == "file" else None,
    )
    chap = None
    if spec.chap is not None:
        c = spec.chap
        password = _secret(secrets, c.secret_file, f"{at}.chap.secret_file", problems)
        mutual = None
        if c.mutual_secret_file is not None:
            mutual = _secret(secrets, c.mutual_secret_file, f"{at}.chap.mutual_secret_file", problems)
            if mutual and mutual == password:
                # RFC 7143 §12.1.3: a secret that authenticates the initiator MUST NOT also
                # authenticate the target (a reflected challenge would answer itself).
                problems.append(Problem(f"{at}.chap.mutual_secret_file",
                                        f"{c.mutual_secret_file} holds the same secret as {c.secret_file}; "
                                        "mutual CHAP needs a different one"))
        chap = ChapDesired(
            userid=c.user,
            password_file=c.secret_file,
            password=password,
            mutual_userid=c.mutual_user or "",
            mutual_password_file=c.mutual_secret_file,
            mutual_password=mutual,
        )
    return TargetDesired(
        host=host.name,
        iqn=config.iscsi.target_iqn(host.name),
        initiator=spec.initiator.lower(),
        backstore=backstore,
        portals=portals,
        attributes=tpg_attributes(chap is not None),
        chap=chap,
    )


def _secret(secrets: SecretReader, path: Path, at: str, problems: list[Problem]) -> Secret:
    try:
        value = secrets(path)
    except OSError as exc:
        problems.append(Problem(at, f"cannot read {path}: {exc.strerror or exc}"))
        return Secret("")
    except UnicodeDecodeError:   # its message would quote the secret's bytes
        problems.append(Problem(at, f"{path} is not UTF-8 text"))
        return Secret("")
    except UnusableSecretFile as exc:
        problems.append(Problem(at, str(exc)))
        return Secret("")
    # Never put the value into a message: only what is wrong with it.
    if not value:
        problems.append(Problem(at, f"{path} is empty"))
    elif value != value.strip():
        problems.append(Problem(at, f"{path}: the secret starts or ends with whitespace (LIO would strip it)"))
    elif len(value) > 255:
        problems.append(Problem(at, f"{path}: the secret is longer than 255 characters (LIO's limit)"))
    elif "\n" in value or "NULL" == value:
        problems.append(Problem(at, f"{path}: the secret must be one line and not the word NULL"))
    elif any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        # The kernel stores it with "%s": a NUL would silently cut it short.
        problems.append(Problem(at, f"{path}: the secret contains a control character"))
    return Secret(value)

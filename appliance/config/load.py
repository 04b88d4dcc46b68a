"""Read the configuration file and check what needs the file system."""

from __future__ import annotations

import os
import stat
import tomllib
from pathlib import Path

from ..errors import ConfigError, Problem, UsageError
from .identity import backing_identity
from .model import Config, ServerConfig
from .parse import parse_document, problem_at

DEFAULT_CONFIG_PATH = Path("/etc/netboot/appliance.toml")
MAX_CONFIG_BYTES = 1 << 20      # hundreds of hosts fit in a few hundred KiB
NET_CLASS = Path("/sys/class/net")     # one entry per network interface


def config_path_from(option: str | None) -> Path:
    """``-c`` wins, then ``NETBOOT_CONFIG`` (unless empty), then the default path.  An empty
    ``-c`` (``-c "$CONFIG"`` with CONFIG unset) is a mistake, not a request for the default."""
    if option == "":
        raise UsageError("-c names no file (an empty path): give the configuration file, or leave -c out")
    if option is not None:
        return Path(option)
    env = os.environ.get("NETBOOT_CONFIG")
    return Path(env) if env else DEFAULT_CONFIG_PATH


def load_config(path: Path, check_files: bool = True) -> Config:
    config, problems, missing = config_problems(path, check_files)
    if problems or missing:
        raise ConfigError(problems + missing, str(path))
    return config


def config_problems(path: Path, check_files: bool = True) -> tuple[Config, list[Problem], list[Problem]]:
    """The ``Config`` of what parsed (``parse_document``), the file's own problems and, with
    ``check_files``, those only the file system shows, for every value that parsed.
    ``ConfigError`` when the file cannot be read as TOML at all."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError([Problem("", "file not found (use -c FILE or NETBOOT_CONFIG)")], str(path)) from None
    except OSError as exc:
        raise ConfigError([Problem("", f"cannot read: {exc.strerror}")], str(path)) from exc
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError([Problem("", f"larger than {MAX_CONFIG_BYTES} bytes: not a configuration file")], str(path))
    try:
        doc = tomllib.loads(data.decode("utf-8"))
        config, problems = parse_document(doc, source=path)
    except UnicodeDecodeError as exc:
        raise ConfigError([Problem("", f"not UTF-8 text ({exc.reason} at byte {exc.start})")], str(path)) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([Problem("", f"not valid TOML: {exc}")], str(path)) from None
    except RecursionError:
        # tomllib parses nested arrays and inline tables recursively.
        raise ConfigError([Problem("", "not valid TOML: arrays or inline tables nested too deeply")], str(path)) from None
    missing = [p for p in file_problems(config) if not problem_at(p.path, problems)] if check_files else []
    return config, problems, missing


def declared_state_dir(path: Path) -> Path:
    """``server.state_dir`` as a file that may not validate names it (the default if it names none):
    where a running daemon publishes its health, for ``check`` on a broken file."""
    default = ServerConfig().state_dir
    try:
        with open(path, "rb") as f:
            doc = tomllib.loads(f.read(MAX_CONFIG_BYTES).decode("utf-8"))
        raw = doc["server"]["state_dir"]
    except (OSError, ValueError, KeyError, TypeError, RecursionError):   # TOML and UTF-8 errors are ValueErrors
        return default
    return Path(raw) if isinstance(raw, str) and raw.startswith("/") and "\0" not in raw else default


def require_hosts(config: Config) -> None:
    """``serve`` with nothing to serve is a mistake (an empty or wrong file), not a server."""
    if not config.hosts:
        raise ConfigError([Problem("hosts", "no hosts configured: nothing to serve (add a [hosts.NAME] table)")],
                          str(config.source or ""))


def config_warnings(config: Config, check_files: bool = True) -> list[Problem]:
    """What is allowed but probably not meant: nothing to serve, a proxyDHCP interface this machine
    lacks (yet), secret files missing while iSCSI is off."""
    warnings = []
    if not config.hosts:
        warnings.append(Problem("hosts", "no hosts configured: 'netboot serve' refuses to start"))
    if check_files and config.dhcp.enable and config.dhcp.interface \
            and not (NET_CLASS / config.dhcp.interface).exists():
        warnings.append(Problem("dhcp.interface", f"this machine has no network interface {config.dhcp.interface!r} "
                                                  "(ip link); the proxyDHCP cannot start without it"))
    if check_files and not config.iscsi.enable:
        for name, host in config.hosts.items():
            chap = host.iscsi.chap if host.iscsi else None
            if chap is None:
                continue
            for key, secret in (("secret_file", chap.secret_file), ("mutual_secret_file", chap.mutual_secret_file)):
                if secret is not None and not secret.is_file():
                    warnings.append(Problem(f"hosts.{name}.iscsi.chap.{key}",
                                            f"{secret} does not exist (fine while iSCSI is disabled; "
                                            "needed once [iscsi] enable = true)"))
    if check_files:
        warnings += _readable_secret_files(config)
    return warnings


def _readable_secret_files(config: Config) -> list[Problem]:
    """CHAP secret files that other users (or the file's group) can read: whoever reads
    one can log in as that host and read or overwrite its root disk."""
    found = []
    for name, host in config.hosts.items():
        chap = host.iscsi.chap if host.iscsi else None
        if chap is None:
            continue
        for key, secret in (("secret_file", chap.secret_file), ("mutual_secret_file", chap.mutual_secret_file)):
            try:
                mode = os.stat(secret).st_mode if secret is not None else 0
            except OSError:
                continue   # missing: said elsewhere
            if stat.S_ISREG(mode) and mode & 0o077:
                found.append(Problem(f"hosts.{name}.iscsi.chap.{key}",
                                     f"{secret} is readable by other users (mode {stat.S_IMODE(mode):04o}); "
                                     f"chmod 600 {secret}"))
    return found


def file_problems(config: Config) -> list[Problem]:
    """Problems only the file system can show: missing directories and secret
    files, two hosts on one backing file or device under different names."""
    problems = shared_luns(config)
    if not config.server.store_dir.is_dir():
        problems.append(Problem("server.store_dir", f"{config.server.store_dir} is not a directory"))
    for name, fw in config.firmware.items():
        if not fw.path.is_dir():
            problems.append(Problem(f"firmware.{name}.path", f"{fw.path} is not a directory"))
    for name, host in config.hosts.items():
        if not host.profile.parent.is_dir():
            problems.append(Problem(f"hosts.{name}.profile", f"directory {host.profile.parent} does not exist"))
        elif os.path.lexists(host.profile) and not host.profile.is_symlink():
            # A profile is a symlink to its current <profile>-<N>-link (or not there yet).
            kind = "a directory" if host.profile.is_dir() else "a file"
            problems.append(Problem(f"hosts.{name}.profile",
                                    f"{host.profile} is {kind}, not a Nix profile (a symlink to "
                                    f"{host.profile.name}-<N>-link); name the profile itself, e.g. "
                                    f"{host.profile}/{name}"))
        if config.iscsi.enable and host.iscsi and host.iscsi.chap:
            chap = host.iscsi.chap
            for key, secret in (("secret_file", chap.secret_file), ("mutual_secret_file", chap.mutual_secret_file)):
                if secret is not None and not secret.is_file():
                    problems.append(Problem(f"hosts.{name}.iscsi.chap.{key}", f"{secret} does not exist"))
    return problems


def shared_luns(config: Config) -> list[Problem]:
    """Hosts whose LUNs are one file or device by identity (the parser already
    refuses the same path written twice)."""
    problems = []
    first: dict[str, tuple[str, Path]] = {}
    for name, host in config.hosts.items():
        if host.iscsi is None:
            continue
        path = host.iscsi.lun.path
        key = backing_identity(path)
        if key not in first:
            first[key] = (name, path)
            continue
        other, other_path = first[key]
        problems.append(Problem(f"hosts.{name}.iscsi.lun",
                                f"{path} is the same disk as host {other!r}'s LUN {other_path} ({key}); "
                                "two hosts writing one disk would corrupt it"))
    return problems

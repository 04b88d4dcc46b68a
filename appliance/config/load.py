"""Read the configuration file and check what needs the file system."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

from ..errors import ConfigError, Problem
from .identity import backing_identity
from .model import Config
from .parse import parse_config

DEFAULT_CONFIG_PATH = Path("/etc/netboot/appliance.toml")


def config_path_from(option: str | None) -> Path:
    """``-c`` wins, then ``NETBOOT_CONFIG``, then the default path."""
    if option:
        return Path(option)
    env = os.environ.get("NETBOOT_CONFIG")
    return Path(env) if env else DEFAULT_CONFIG_PATH


def load_config(path: Path, check_files: bool = True) -> Config:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError([Problem("", "file not found (use -c FILE or NETBOOT_CONFIG)")], str(path)) from None
    except OSError as exc:
        raise ConfigError([Problem("", f"cannot read: {exc.strerror}")], str(path)) from exc
    try:
        doc = tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError([Problem("", f"not UTF-8 text ({exc.reason} at byte {exc.start})")], str(path)) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([Problem("", f"not valid TOML: {exc}")], str(path)) from exc
    config = parse_config(doc, source=path)
    if check_files:
        problems = file_problems(config)
        if problems:
            raise ConfigError(problems, str(path))
    return config


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

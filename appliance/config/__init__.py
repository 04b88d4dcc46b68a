"""Configuration: the TOML file turned into a typed, validated model.

``parse_config`` is pure (a dict in, a ``Config`` or a ``ConfigError`` listing
every problem out); ``load_config`` adds the file reads and the checks that
need the file system (firmware and profile directories).
"""

from .load import DEFAULT_CONFIG_PATH, config_path_from, load_config
from .model import (
    ChapSpec,
    Config,
    Firmware,
    Host,
    HostIscsi,
    IscsiConfig,
    ListenAddress,
    LunSpec,
    ServerConfig,
)
from .parse import parse_config
from .values import mac_dashes, normalize_mac, parse_size

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "ChapSpec",
    "Config",
    "Firmware",
    "Host",
    "HostIscsi",
    "IscsiConfig",
    "ListenAddress",
    "LunSpec",
    "ServerConfig",
    "config_path_from",
    "load_config",
    "mac_dashes",
    "normalize_mac",
    "parse_config",
    "parse_size",
]

"""The [dhcp] table: defaults and validation with key paths."""

from __future__ import annotations

import pytest

from appliance.config.model import DhcpConfig
from appliance.config.parse import parse_config
from appliance.errors import ConfigError


def _problems(table) -> dict[str, str]:
    with pytest.raises(ConfigError) as info:
        parse_config({"dhcp": table})
    return {pr.path: pr.message for pr in info.value.problems}


def test_off_by_default():
    assert parse_config({}).dhcp == DhcpConfig()
    assert parse_config({}).dhcp.enable is False
    assert parse_config({"dhcp": {"enable": False}}).dhcp.enable is False


def test_enabled_needs_interface_and_server_address():
    problems = _problems({"enable": True})
    assert "missing" in problems["dhcp.interface"] and "missing" in problems["dhcp.server_address"]


def test_a_full_table():
    cfg = parse_config({"dhcp": {"enable": True, "interface": "enp3s0", "server_address": "10.0.4.3",
                                 "bios_bootfile": "undionly.kpxe", "efi_bootfile": "ipxe.efi"}}).dhcp
    assert cfg == DhcpConfig(True, "enp3s0", "10.0.4.3", "undionly.kpxe", "ipxe.efi")


@pytest.mark.parametrize("key, value, words", [
    ("enable", "yes", "true or false"),
    ("interface", "eth 0", "interface name"),
    ("interface", "a-very-long-interface", "interface name"),
    ("interface", 3, "interface name"),
    ("server_address", "10.0.4", "not an IPv4 address"),
    ("server_address", "fe80::1", "not an IPv4 address"),
    ("server_address", "0.0.0.0", "unicast"),
    ("server_address", "255.255.255.255", "unicast"),
    ("server_address", "239.1.1.1", "unicast"),
    ("bios_bootfile", "", "not a file name"),
    ("efi_bootfile", "é.efi", "ASCII"),
    ("efi_bootfile", "x" * 128, "127"),
])
def test_bad_values_are_located(key, value, words):
    problems = _problems({"enable": True, "interface": "eth0", "server_address": "10.0.0.1", key: value})
    assert words in problems[f"dhcp.{key}"]


def test_unknown_keys_and_non_tables():
    assert "unknown key" in _problems({"listen": "0.0.0.0:67"})["dhcp.listen"]
    assert "must be a table" in _problems("on")["dhcp"]

"""The boot-style registry: one module per style, read by config, DHCP, CLI and the NixOS module."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest

from appliance.boot.styles import STYLES, BootStyle, registry_document, style_named
from appliance.config import parse_config
from appliance.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def test_every_registered_style_implements_the_protocol_in_its_own_module():
    assert list(STYLES) == ["rpi", "rpi5", "uboot", "ipxe"]
    for name, style in STYLES.items():
        assert isinstance(style, BootStyle), name
        assert style.name == name and style.description
        module = importlib.import_module(f"appliance.boot.styles.{name}")
        assert module.STYLE is style


def test_the_nixos_module_reads_the_registry():
    """nixos/boot-styles.json is generated: python -m appliance.boot.styles > nixos/boot-styles.json"""
    shipped = (REPO / "nixos" / "boot-styles.json").read_text()
    assert shipped == registry_document(), "regenerate nixos/boot-styles.json from the registry"
    assert [s["name"] for s in json.loads(shipped)] == list(STYLES)
    assert "netbootLib.bootStyles" in (REPO / "nixos" / "appliance.nix").read_text()


def test_config_accepts_exactly_the_registered_styles():
    for name in STYLES:
        table = {"boot": name, "mac": "2c:cf:67:01:02:03", "profile": "/p"}
        config = parse_config({"firmware": {"rpi": {"path": "/fw"}}, "hosts": {"h": table}})
        assert config.host("h").boot is style_named(name)
    with pytest.raises(ConfigError) as exc:
        parse_config({"hosts": {"h": {"boot": "grub", "mac": "2c:cf:67:01:02:03", "profile": "/p"}}})
    assert "rpi, rpi5, uboot or ipxe" in str(exc.value)

"""nixos/lib.nix: the pure half of the NixOS modules, evaluated with nix-instantiate.

The appliance module renders ``toSettings cfg.settings`` with
``pkgs.formats.toml``; these tests check that transformation (and the other
helpers the modules use) against what the Python appliance reads.
"""

from __future__ import annotations

import copy
import json
import tomllib

import pytest

from appliance.config import IscsiConfig, parse_config
from nix_helpers import EXAMPLE_TOML


def _example() -> dict:
    with EXAMPLE_TOML.open("rb") as f:
        return tomllib.load(f)


def _as_module_values(doc: dict) -> dict:
    """The example as the module's options hold it: every unset option is null."""
    values = copy.deepcopy(doc)
    values["server"].setdefault("metrics_listen", None)
    for host in values["hosts"].values():
        for key in ("serial", "firmware", "menu_timeout", "trial_confirm_after", "trial_timeout"):
            host.setdefault(key, None)
        iscsi = host.get("iscsi")
        if iscsi:
            iscsi["lun"].setdefault("block", None)
            iscsi.setdefault("chap", None)
            if iscsi["chap"]:
                iscsi["chap"].setdefault("mutual_user", None)
                iscsi["chap"].setdefault("mutual_secret_file", None)
    return values


def test_rendering_the_example_is_the_identity(nix_eval) -> None:
    assert nix_eval("lib.toSettings example") == _example()


def test_rendering_drops_unset_options_and_yields_the_same_document(nix_eval) -> None:
    values = _as_module_values(_example())
    assert values != _example()
    rendered = nix_eval(f"lib.toSettings (builtins.fromJSON {json.dumps(json.dumps(values))})")
    assert rendered == _example()
    parse_config(rendered)


def test_rendering_drops_nulls_inside_lists_of_tables(nix_eval) -> None:
    assert nix_eval('lib.toSettings { a = [ null { b = null; c = 1; } ]; d = null; }') == {"a": [{"c": 1}]}


def test_inline_chap_secrets_are_found_by_key_path(nix_eval) -> None:
    found = nix_eval(
        'lib.inlineSecretKeys (example // { hosts = example.hosts // {'
        ' a.iscsi.chap = { user = "a"; secret = "x"; mutual_secret = "y"; };'
        ' b.iscsi.chap = { user = "b"; password = "z"; secret_file = "/run/secrets/b"; };'
        ' c.iscsi.chap = { user = "c"; secret = null; secret_file = "/run/secrets/c"; };'
        ' d.iscsi = null; }; })'
    )
    assert sorted(found) == ["hosts.a.iscsi.chap.mutual_secret", "hosts.a.iscsi.chap.secret", "hosts.b.iscsi.chap.password"]
    assert nix_eval("lib.inlineSecretKeys example") == []


def test_secret_files_in_the_nix_store_are_found(nix_eval) -> None:
    found = nix_eval(
        'lib.storeSecretFiles { hosts = {'
        ' a.iscsi.chap = { user = "a"; secret_file = "/nix/store/0000-secret"; mutual_secret_file = "/run/m"; };'
        ' b.iscsi.chap = { user = "b"; secret_file = "/run/secrets/b"; }; c = { boot = "rpi"; }; }; }'
    )
    assert found == ["hosts.a.iscsi.chap.secret_file"]
    assert nix_eval("lib.storeSecretFiles example") == []


@pytest.mark.parametrize(
    ("address", "port"),
    [("0.0.0.0:69", 69), ("10.0.4.3:6969", 6969), ("10.0.4.3", 69), ("[::]:1069", 1069), ("[::]", 69), ("::", 69)],
)
def test_listen_port(nix_eval, address: str, port: int) -> None:
    assert nix_eval(f'lib.listenPort 69 "{address}"') == port


def test_firewall_ports_of_the_example(nix_eval) -> None:
    assert nix_eval("lib.tftpPorts example") == [69]
    assert nix_eval("lib.iscsiPorts example") == [3260]
    assert nix_eval('lib.tftpPorts { server.tftp_listen = [ "10.0.4.3:69" "[::]:69" "127.0.0.1:6969" ]; }') == [69, 6969]
    assert nix_eval("lib.tftpPorts { }") == [69]
    assert nix_eval('lib.iscsiPorts { iscsi = { enable = false; portals = [ "10.0.4.3:3260" ]; }; }') == []
    assert nix_eval("lib.httpPorts { }") == []
    assert nix_eval('lib.httpPorts { server.http_listen = [ "10.0.4.3:8080" "[::]" ]; }') == [8080, 80]


def test_target_iqn_and_default_prefix_match_the_appliance(nix_eval) -> None:
    config = parse_config(_example())
    assert nix_eval('lib.targetIqn example.iscsi.target_prefix "pi-desktop"') == config.iscsi.target_iqn("pi-desktop")
    assert nix_eval("lib.defaultTargetPrefix") == IscsiConfig().target_prefix


def test_rpi_hosts_and_profile_directories(nix_eval) -> None:
    assert nix_eval("lib.rpiHosts example") == sorted(["pi-desktop", *(f"pi-node-{i}" for i in range(1, 8))])
    assert nix_eval("lib.profileDirs example") == ["/nix/var/nix/profiles/netboot"]


def test_boot_styles_and_their_firmware_come_from_the_appliance_registry(nix_eval) -> None:
    from appliance.boot.styles import STYLES

    assert [s["name"] for s in nix_eval("lib.bootStyles")] == list(STYLES)
    settings = '{ hosts = { a = { boot = "rpi5"; }; b = { boot = "rpi"; }; c = { boot = "ipxe"; }; }; }'
    assert nix_eval(f"lib.rpiHosts {settings}") == ["a", "b"]


def test_paths_the_unit_would_misread_are_found_by_option_path(nix_eval) -> None:
    found = nix_eval(
        'lib.unitUnsafePaths { server = { state_dir = "/a\\\\b"; gcroots_dir = "/x\\"y"; };'
        ' hosts.h = { profile = "/p\'q/r"; iscsi.lun.file = "/luns/h %i.img"; }; hosts.g.profile = "/ok/p-\u00e9"; }'
    )
    assert found == ['server.state_dir: "/a\\\\b"', 'server.gcroots_dir: "/x\\"y"', "hosts.h.profile: \"/p'q/r\"",
                     'hosts.h.iscsi.lun.file: "/luns/h %i.img"']
    assert nix_eval("lib.unitUnsafePaths example") == []


_ISCSI_NAMES = [
    "iqn.2026-04.net.ereslibre:pi-desktop", "iqn.2026-11.lan.netboot", "iqn.2026-04.net.x:a.b:c-d_e",
    "eui.0123456789ABCDEF", "iqn.2026-04.net.x:Pi-Desktop", "IQN.2026-04.net.x:a", "iqn.2026-13.net.x:a",
    "iqn.2026-04.net.x:", "iqn.2026-04.net.x:a b", "iqn.2026-04.-net.x", "iqn.2026-04.net..x", "iqn.2026-04.net-.x",
    "pi-desktop", "iqn.2026-04.net.x:a\n", "iqn.2026-04.net.x:a/b", "iqn.2026-04.net.x:a#b", "iqn.2026-04.net.x:\u00e9", "eui.0123", "iqn.2026-04.net.x:" + "a" * 205, "iqn.2026-04.net.x:" + "a" * 206,
]


@pytest.mark.parametrize("name", _ISCSI_NAMES)
def test_iscsi_names_the_modules_accept_are_those_the_appliance_accepts(nix_eval, name: str) -> None:
    from appliance.config.values import ValueProblem, check_iqn

    try:
        check_iqn(name)
        accepted = True
    except ValueProblem:
        accepted = False
    assert nix_eval(f"lib.isIscsiName {json.dumps(name, ensure_ascii=False)}") is accepted
    prefix_ok = accepted and ":" not in name
    assert nix_eval(f"lib.isTargetPrefix {json.dumps(name, ensure_ascii=False)}") is prefix_ok


def test_boot_styles_json_is_what_the_registry_generates(nix_eval) -> None:
    """A style added to (or changed in) the registry without regenerating the file fails here."""
    import subprocess
    import sys

    generated = subprocess.run([sys.executable, "-m", "appliance.boot.styles"], capture_output=True, text=True,
                               check=True, timeout=60).stdout
    assert nix_eval("lib.bootStyles") == json.loads(generated)


_LISTEN = ["0.0.0.0:69", "10.0.4.3", "10.0.4.3:", "10.0.4.3:0069", "[::]:1069", "[::]", "[::]:", "::", "::1",
           " [::]:1069 ", " 10.0.4.3:6969", "[fd00::3]:3260", "10.0.4.3:tftp", "10.0.4.3:99999", "[::1]:x",
           "[::1]x", "localhost:69", "10.0.4.3:69:1", "", "10.0.4.3 :69", "10.0.4.3:65535", "10.0.4.3:65536",
           "999.0.0.1:69", "cafe"]
# Made of an IP literal's characters but no IP address: left to `netboot check` at build time.
_BAD_IP_LITERALS = {"10.0.4.3:69:1", "999.0.0.1:69", "cafe"}


@pytest.mark.parametrize("address", _LISTEN)
def test_listen_addresses_the_modules_accept_have_the_appliances_port(nix_eval, address: str) -> None:
    """What the firewall opens is the port the appliance binds; what the module types refuse, the
    appliance refuses too (the module may let a bad IP literal through to `netboot check`)."""
    from appliance.listen import parse_listen

    try:
        port, refusal = parse_listen(address, 69)[1], ""
    except ValueError as exc:
        port, refusal = None, str(exc)
    accepted = nix_eval(f"lib.isListenAddress {json.dumps(address)}")
    if port is not None:
        assert accepted and nix_eval(f"lib.listenPort 69 {json.dumps(address)}") == port
    elif address not in _BAD_IP_LITERALS:
        assert not accepted, refusal


_MACS = ["dc:a6:32:01:02:03", "DC:A6:32:01:02:03", "dc-a6-32-01-02-03", "Dc-A6-32-01-02-03", "dc:a6-32:01:02:03",
         "dc:a6:32:01:02", "dc:a6:32:01:02:03:04", "01:00:5e:00:00:01", "ff:ff:ff:ff:ff:ff", "00:00:00:00:00:00",
         "dc:a6:32:01:02:0g", "dca632010203", " dc:a6:32:01:02:03 ", "02:00:00:00:00:00", "", "dc:a6:32:1:2:3"]


@pytest.mark.parametrize("mac", _MACS)
def test_mac_addresses_are_normalised_as_the_appliance_does(nix_eval, mac: str) -> None:
    from appliance.config.values import ValueProblem, normalize_mac

    try:
        expected = normalize_mac(mac)
    except ValueProblem:
        expected = None
    assert nix_eval(f"lib.normalizeMac {json.dumps(mac)}") == expected


@pytest.mark.parametrize("name", ["pi-desktop", "pi4", "a", "a" * 63, "a" * 64, "Pi", "pi_desktop", "-pi", "pi-",
                                  "pi\n", "p\u00ef", ""])
def test_host_names_are_checked_as_the_appliance_does(nix_eval, name: str) -> None:
    from appliance.config.values import HOST_NAME

    assert nix_eval(f"lib.isHostName {json.dumps(name, ensure_ascii=False)}") is bool(HOST_NAME.match(name))

"""examples/appliance.toml: valid for the appliance, and read alike by Nix and Python."""

from __future__ import annotations

import json
import tomllib

from appliance.config import parse_config
from helpers import netboot
from nix_helpers import EXAMPLE_TOML


def _example() -> dict:
    with EXAMPLE_TOML.open("rb") as f:
        return tomllib.load(f)


def test_example_passes_the_pure_validation() -> None:
    config = parse_config(_example(), source=EXAMPLE_TOML)
    desktop = config.host("pi-desktop")
    assert desktop.boot.name == "rpi"
    assert desktop.mac == "dc:a6:32:01:02:03"
    assert desktop.tftp_prefix == "pi-desktop/"
    assert str(desktop.profile) == "/nix/var/nix/profiles/netboot/pi-desktop"
    assert desktop.iscsi.initiator == "iqn.2026-04.net.ereslibre:pi-desktop"
    assert (desktop.iscsi.lun.kind, str(desktop.iscsi.lun.path), desktop.iscsi.lun.size) == (
        "file", "/mnt/nas/luns/pi-desktop.img", 128 << 30)
    assert desktop.iscsi.chap.user == "pi-desktop"
    assert desktop.iscsi.chap.secret_file.is_absolute()


def test_example_fleet_has_seven_nodes_with_their_own_directory_lun_and_initiator() -> None:
    config = parse_config(_example())
    nodes = [config.host(f"pi-node-{i}") for i in range(1, 8)]
    assert sorted(config.hosts) == sorted(["pi-desktop", *(n.name for n in nodes)])
    for node in nodes:
        assert node.prefix_kind == "mac"
        assert node.tftp_prefix == node.mac.replace(":", "-") + "/"
        assert node.iscsi.lun.path.name == f"{node.name}.img"
        assert node.iscsi.initiator.endswith(f":{node.name}")
    assert len({n.iscsi.lun.path for n in nodes}) == 7
    assert len({n.iscsi.initiator for n in nodes}) == 7


def test_netboot_check_accepts_the_example_without_touching_files() -> None:
    proc = netboot("check", "--no-files", "--json", config=EXAMPLE_TOML)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert json.loads(proc.stdout)["ok"] is True


def test_nix_from_toml_reads_the_example_as_python_does(nix_eval) -> None:
    assert nix_eval("example") == _example()

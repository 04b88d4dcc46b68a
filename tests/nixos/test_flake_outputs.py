"""flake.nix outputs, evaluated with stub inputs (no nixpkgs here).

``nixosSystem`` is stubbed to return its arguments, so this checks the
outputs' shape and that the example clients take their iSCSI names from
examples/appliance.toml, not that the systems build.
"""

from __future__ import annotations

import tomllib

from nix_helpers import EXAMPLE_TOML, REPO

_STUB = f"""
let
  flake = import {REPO / "flake.nix"};
  lib = {{
    genAttrs = names: f: builtins.listToAttrs (map (n: {{ name = n; value = f n; }}) names);
    hasPrefix = p: s: builtins.substring 0 (builtins.stringLength p) s == p;
    nixosSystem = args: args;
  }};
  pkgsFor = system: {{
    callPackage = fn: args: {{ package = builtins.baseNameOf fn; }};
    stdenv.hostPlatform.system = system;
  }};
  nixpkgs = {{
    inherit lib;
    legacyPackages = lib.genAttrs [ "x86_64-linux" "aarch64-linux" ] pkgsFor;
  }};
  self = flake.outputs {{
    inherit self nixpkgs;
    nixos-hardware.nixosModules.raspberry-pi-4 = "raspberry-pi-4";
  }};
  clientOf = name: builtins.elemAt self.nixosConfigurations.${{name}}.modules 2;
in
{{
  inputs = builtins.attrNames flake.inputs;
  packages = builtins.mapAttrs (_: builtins.mapAttrs (_: p: p.package)) self.packages;
  modules = builtins.mapAttrs (_: m: builtins.baseNameOf m) self.nixosModules;
  configurations = builtins.mapAttrs (_: c: c.system) self.nixosConfigurations;
  clients = lib.genAttrs (builtins.filter (n: n != "netboot-server") (builtins.attrNames self.nixosConfigurations)) (
    name: {{
      hardware = builtins.elemAt self.nixosConfigurations.${{name}}.modules 0;
      hostName = (clientOf name).networking.hostName;
      initiator = (clientOf name).netboot.client.iscsi.initiatorName;
      targetPrefix = (clientOf name).netboot.client.appliance.targetPrefix;
    }}
  );
}}
"""


def test_flake_outputs(nix_eval) -> None:
    out = nix_eval(_STUB)
    assert out["inputs"] == ["nixos-hardware", "nixpkgs"]
    for system in ("x86_64-linux", "aarch64-linux"):
        assert out["packages"][system] == {"default": "package.nix", "netboot-appliance": "package.nix"}
    assert out["modules"] == {"appliance": "appliance.nix", "client": "client.nix", "default": "appliance.nix"}
    assert out["configurations"]["netboot-server"] == "x86_64-linux"
    nodes = [f"pi-node-{i}" for i in range(1, 8)]
    assert sorted(out["clients"]) == sorted(["pi-desktop", *nodes])


def test_example_clients_take_their_iscsi_names_from_the_toml(nix_eval) -> None:
    with EXAMPLE_TOML.open("rb") as f:
        doc = tomllib.load(f)
    out = nix_eval(_STUB)
    for name, client in out["clients"].items():
        assert out["configurations"][name] == "aarch64-linux"
        assert client == {
            "hardware": "raspberry-pi-4",
            "hostName": name,
            "initiator": doc["hosts"][name]["iscsi"]["initiator"],
            "targetPrefix": doc["iscsi"]["target_prefix"],
        }

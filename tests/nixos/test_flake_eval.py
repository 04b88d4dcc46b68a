"""flake.nix evaluated as a flake, with stub inputs, by Nix's own flake machinery.

``nix flake show --override-input`` (Debian's Nix 2.8, flakes as an
experimental feature, offline: every input is overridden by a local path)
replaces ``nixpkgs`` with a stub flake whose ``lib`` is the nixpkgs lib plus a
``nixosSystem`` that evaluates with tests/nixos/eval (the module system and
the NixOS option declarations; real ``<nixpkgs/nixos>`` where one is found)
and whose ``legacyPackages`` are tests/nixos/eval/pkgs.nix; ``nixos-hardware``
by an empty Raspberry Pi module (the only thing the example takes from it).
So every example configuration is evaluated through the real modules, and
what it would build is checked as the build would check it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from nix_helpers import EVAL_DIR, REPO, full_nixpkgs, nix_instantiate, nixpkgs_lib
from test_module_eval import check_script, netboot_check

_STUB_NIXPKGS = """{
  outputs = { self }:
    let
      lib = import ./lib;
      h = import ./eval { inherit lib; nixpkgs = NIXPKGS; };
      systems = [ "x86_64-linux" "aarch64-linux" ];
    in {
      lib = lib // { nixosSystem = args: h.evalSystem { inherit (args) system modules; }; };
      legacyPackages = lib.genAttrs systems (system: import ./eval/pkgs.nix {
        inherit lib system;
        evalNixos = h.evalSystem;
      });
    };
}
"""

_STUB_HARDWARE = """{
  outputs = { self }: { nixosModules.raspberry-pi-4 = { }; };
}
"""


@pytest.fixture(scope="module")
def flake_inputs(tmp_path_factory) -> list[str]:
    """[the flake (a copy of its files), --override-input …] for nix flake show / nix eval."""
    nix_instantiate()
    if shutil.which("nix") is None:
        pytest.fail("nix not found (nix-bin)") if os.environ.get("CI") else pytest.skip("nix not found")
    root = tmp_path_factory.mktemp("flake-inputs")
    nixpkgs, hardware = root / "nixpkgs", root / "nixos-hardware"
    nixpkgs.mkdir()
    hardware.mkdir()
    shutil.copytree(nixpkgs_lib(), nixpkgs / "lib")
    shutil.copytree(EVAL_DIR, nixpkgs / "eval")
    full = full_nixpkgs()
    (nixpkgs / "flake.nix").write_text(_STUB_NIXPKGS.replace("NIXPKGS", f"{full}" if full else "null"))
    (hardware / "flake.nix").write_text(_STUB_HARDWARE)
    # The flake's own files only (a path: flake is copied whole into the store; not .venv).
    flake = root / "flake"
    flake.mkdir()
    for name in ("flake.nix", "pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, flake / name)
    for name in ("nixos", "examples", "appliance"):
        shutil.copytree(REPO / name, flake / name, ignore=shutil.ignore_patterns("__pycache__"))
    return [f"path:{flake}", "--override-input", "nixpkgs", f"path:{nixpkgs}",
            "--override-input", "nixos-hardware", f"path:{hardware}"]


def _nix(*args: str) -> str:
    proc = subprocess.run(
        ["nix", "--extra-experimental-features", "nix-command flakes", "--option", "build-users-group", "",
         *args], capture_output=True, text=True, timeout=300, cwd=REPO)
    if proc.returncode != 0:
        raise AssertionError(f"nix {' '.join(args)} failed:\n{proc.stderr}")
    return proc.stdout


def _flake_eval(flake_inputs: list[str], attr: str, apply: str):
    """``nix eval`` of one output, through the harness's summaries (``h``)."""
    harness = f"h = import {EVAL_DIR} {{ lib = import {nixpkgs_lib()}; }};"
    flake, *overrides = flake_inputs
    return json.loads(_nix("eval", "--impure", "--json", "--no-write-lock-file", *overrides,
                           f"{flake}#{attr}", "--apply", f"x: let {harness} in {apply}"))


def test_flake_show_lists_every_output(flake_inputs) -> None:
    flake, *overrides = flake_inputs
    shown = json.loads(_nix("flake", "show", "--json", "--no-write-lock-file", *overrides, flake))
    nodes = [f"pi-node-{i}" for i in range(1, 8)]
    assert sorted(shown["nixosConfigurations"]) == sorted(["netboot-server", "pi-desktop", *nodes])
    assert sorted(shown["nixosModules"]) == ["appliance", "client", "default"]
    assert sorted(shown["overlays"]) == ["default"]
    for system in ("x86_64-linux", "aarch64-linux"):
        assert shown["packages"][system]["default"]["name"].startswith("netboot-appliance-")
    checks = shown["checks"]["x86_64-linux"]
    assert checks["example-appliance-config"]["name"] == "netboot-appliance.toml"
    assert checks["netboot-iscsi-root"]["name"] == "vm-test-run-netboot-iscsi-root"


def test_example_server_builds_a_valid_config_and_admits_every_client(flake_inputs, tmp_path) -> None:
    server = _flake_eval(flake_inputs, "nixosConfigurations.netboot-server.config",
                         "h.summarize h.applianceSummary x")
    assert "failedAssertions" not in server, server
    netboot_check(server["settings"], tmp_path)
    assert server["package"].startswith("netboot-appliance-")       # from the flake's overlay
    assert server["settings"]["firmware"]["rpi"]["path"].endswith("/share/raspberrypi/boot")
    keys = server["rootKeys"]
    for name in ["pi-desktop", *(f"pi-node-{i}" for i in range(1, 8))]:
        assert sum(f'/bin/netboot-client-gate {name}" ssh-ed25519 ' in k and k.endswith(f"root@{name}")
                   for k in keys) == 1, name
    check_script(server["clientGate"], tmp_path)


def test_example_clients_evaluate_and_publish(flake_inputs, tmp_path) -> None:
    server = _flake_eval(flake_inputs, "nixosConfigurations.netboot-server.config",
                         "h.summarize h.applianceSummary x")
    clients = _flake_eval(flake_inputs, "nixosConfigurations",
                          'builtins.mapAttrs (_: c: h.summarize h.clientSummary c.config) '
                          '(builtins.removeAttrs x [ "netboot-server" ])')
    appliance_key = _flake_eval(flake_inputs, "nixosConfigurations.netboot-server.config",
                                "x.services.netboot-appliance.clientKeys")
    for name, out in clients.items():
        assert "failedAssertions" not in out, (name, out)
        host = server["settings"]["hosts"][name]
        assert out["iscsi"]["name"] == host["iscsi"]["initiator"]
        assert out["iscsi"]["target"] == f'{server["settings"]["iscsi"]["target_prefix"]}:{name}'
        assert out["iscsi"]["discoverPortal"] in server["settings"]["iscsi"]["portals"]
        assert out["knownHosts"]["netboot-appliance"]["publicKey"].endswith("root@netboot")
        assert appliance_key[name][0].endswith(f"root@{name}")
        # CHAP on both sides, or on neither.
        assert ("chap" in host["iscsi"]) == (out["iscsi"]["extraConfigFile"] is not None), name
        check_script(out["publish"], tmp_path)
    assert clients["pi-desktop"]["initrdFiles"]["/etc/iscsi/netboot-chap.conf"]["name"] == "netboot-iscsi-chap.conf"
    chap_conf = (REPO / "examples" / "pi-desktop-iscsi-chap.conf").read_text()
    assert f'node.session.auth.username = {server["settings"]["hosts"]["pi-desktop"]["iscsi"]["chap"]["user"]}' \
        in chap_conf


def test_vm_test_nodes_evaluate(flake_inputs) -> None:
    out = _flake_eval(
        flake_inputs, "checks.x86_64-linux.netboot-iscsi-root",
        "{ script = x.testScript; appliance = h.summarize h.applianceSummary x.nodes.appliance; "
        "client = h.summarize h.clientSummary x.nodes.client; "
        "clientToplevel = x.nodes.client.system.build.toplevel.outPath; "
        "extraPaths = map toString x.nodes.appliance.virtualisation.additionalPaths; }")
    assert "failedAssertions" not in out["appliance"], out["appliance"]
    assert "failedAssertions" not in out["client"], out["client"]
    host = out["appliance"]["settings"]["hosts"]["client"]
    assert host["boot"] == "ipxe" and host["mac"] == "52:54:00:12:01:02"
    assert out["client"]["iscsi"]["target"] == f'{out["appliance"]["settings"]["iscsi"]["target_prefix"]}:client'
    assert out["clientToplevel"] in out["extraPaths"]
    assert f"netboot register client {out['clientToplevel']}" in out["script"]
    assert "client.wait_for_unit(\"multi-user.target\")" in out["script"]

"""nixos/appliance.nix and nixos/client.nix evaluated with the NixOS module system.

Against a real nixpkgs (``NETBOOT_NIXPKGS`` or ``<nixpkgs>`` on NIX_PATH) when
there is one; otherwise ``lib.evalModules`` from the nixpkgs lib with the NixOS
options the modules use declared with their nixpkgs types
(tests/nixos/eval/nixos-options.nix). Each scenario is a configuration a user
would write; what it would build is checked as the build would: scripts with
``bash -n`` and ``shellcheck`` as writeShellApplication runs them, every
appliance.toml with ``netboot check --no-files``, and bad configurations must
stop at the module's own assertion.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import tomli_w

from helpers import netboot
from nix_helpers import eval_harness, nix_eval_error, nix_eval_json, nix_string

SERVER_BASE = """
  imports = [ (repo + "/nixos/appliance.nix") ];
  nixpkgs.overlays = [ (import (repo + "/nixos/overlay.nix")) ];
  services.openssh.enable = true;
"""

# Pi 400 with CHAP, its LUN file on an NFS share, a key allowed to publish.
PI_NFS_CHAP = SERVER_BASE + """
  fileSystems."/mnt/nas/luns" = { device = "nas.lan:/volume1/luns"; fsType = "nfs"; options = [ "hard" "_netdev" ]; };
  services.netboot-appliance = {
    enable = true;
    openFirewall = true;
    settings = {
      iscsi = { enable = true; portals = [ "10.0.4.3:3260" ]; target_prefix = "iqn.2026-04.net.ereslibre.netboot"; };
      hosts.pi-desktop = {
        boot = "rpi";
        mac = "dc:a6:32:01:02:03";
        tftp_prefix = "pi-desktop/";
        iscsi = {
          initiator = "iqn.2026-04.net.ereslibre:pi-desktop";
          lun = { file = "/mnt/nas/luns/pi-desktop.img"; size = "128G"; };
          chap = { user = "pi-desktop"; secret_file = "/run/secrets/netboot/pi-desktop-chap"; };
        };
      };
    };
    clientKeys.pi-desktop = [ "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDcJc0VsGqzqUFk9mpmGdRkVwD8nDbJ0H7s5SMh5L0vz root@pi-desktop" ];
  };
"""

# x86 iPXE host on a block device, proxyDHCP for a router that cannot do PXE.
IPXE_BLOCK_DHCP = SERVER_BASE + """
  services.netboot-appliance = {
    enable = true;
    openFirewall = true;
    settings = {
      server.tftp_listen = [ "10.0.4.3:69" ];
      iscsi = { enable = true; portals = [ "10.0.4.3:3260" "10.0.5.3:3261" ]; };
      dhcp = { enable = true; interface = "eth0"; server_address = "10.0.4.3"; };
      hosts.rack-1 = {
        boot = "ipxe";
        mac = "52:54:00:12:34:56";
        iscsi = {
          initiator = "iqn.2026-04.net.example:rack-1";
          lun.block = "/dev/zvol/tank/rack-1";
        };
      };
    };
  };
"""

ISCSI_OFF = SERVER_BASE + """
  services.netboot-appliance = {
    enable = true;
    settings.hosts.lab = { boot = "uboot"; mac = "52:54:00:aa:bb:cc"; };
  };
"""

CLIENT_BASE = """
  imports = [ (repo + "/nixos/client.nix") ];
  networking.hostName = "pi-desktop";
  services.openssh.enable = true;
  netboot.client = {
    enable = true;
    appliance.address = "10.0.4.3";
    appliance.targetPrefix = "iqn.2026-04.net.ereslibre.netboot";
    appliance.identityFile = "/etc/ssh/ssh_host_ed25519_key";
    appliance.hostKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFx0xjqIsVZ0hj7tBvOZr0hdJrOrxOSqMRsb9dBCnFmJ root@netboot";
    iscsi.initiatorName = "iqn.2026-04.net.ereslibre:pi-desktop";
    initrdNetworkModules = [ "bcmgenet" ];
  };
"""

CLIENT_CHAP = CLIENT_BASE + """
  netboot.client.iscsi.chapConfigFile = repo + "/examples/pi-desktop-iscsi-chap.conf";
"""


def _evaluate(module_body: str, summary: str, system: str = "x86_64-linux"):
    expr = (eval_harness()
            + f'h.summarize h.{summary} (h.evalSystem {{ system = "{system}"; modules = [ ({{ pkgs, lib, ... }}: {{'
            + module_body + "}) ]; }).config")
    return nix_eval_json(expr)


def appliance(module_body: str) -> dict:
    out = _evaluate(module_body, "applianceSummary")
    assert "failedAssertions" not in out, out["failedAssertions"]
    return out


def client(module_body: str) -> dict:
    out = _evaluate(module_body, "clientSummary", system="aarch64-linux")
    assert "failedAssertions" not in out, out["failedAssertions"]
    return out


def failed_assertions(module_body: str, summary: str = "applianceSummary") -> list[str]:
    return _evaluate(module_body, summary).get("failedAssertions", [])


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        message = f"{name} not found (scripts/install.sh installs it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def check_script(script: dict, tmp_path: Path) -> None:
    """What writeShellApplication's build runs: `bash -n -O extglob`, then its shellcheck test."""
    path = tmp_path / script["name"]
    path.write_text(script["text"])
    dry = subprocess.run(["bash", "-n", "-O", "extglob", str(path)], capture_output=True, text=True)
    assert dry.returncode == 0, dry.stderr
    lint = subprocess.run([_tool("shellcheck"), *script["shellcheckFlags"], str(path)], capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr


def netboot_check(settings: dict, tmp_path: Path) -> None:
    """The build's `netboot -c $out check --no-files` on the document pkgs.formats.toml writes."""
    path = tmp_path / "appliance.toml"
    path.write_bytes(tomli_w.dumps(settings).encode())
    proc = netboot("check", "--no-files", config=path)
    assert proc.returncode == 0, proc.stderr + proc.stdout


# -- the appliance -------------------------------------------------------------------

def test_pi_with_chap_on_nfs_and_publish_keys(tmp_path) -> None:
    out = appliance(PI_NFS_CHAP)
    netboot_check(out["settings"], tmp_path)
    assert "/bin/netboot -c $out check --no-files" in out["buildCommand"]
    host = out["settings"]["hosts"]["pi-desktop"]
    # The initrd holds the CHAP secret: never served to a client whose MAC is unknown.
    assert host["tftp_access"] == "strict"
    assert host["iscsi"]["chap"] == {"user": "pi-desktop", "secret_file": "/run/secrets/netboot/pi-desktop-chap"}
    assert out["settings"]["firmware"]["rpi"]["path"].endswith("-raspberrypi-firmware-1.20250430/share/raspberrypi/boot")
    assert out["package"].startswith("netboot-appliance-")

    service = out["serviceConfig"]
    assert out["unitConfig"]["RequiresMountsFor"] == ["/mnt/nas/luns"]
    assert "-/mnt/nas/luns" in service["ReadWritePaths"] and "/etc/target" in service["ReadWritePaths"]
    # CAP_SYS_ADMIN: the kernel's check on LIO's CHAP attributes (qemu-tests/test_lio.py).
    assert service["CapabilityBoundingSet"] == ["CAP_NET_BIND_SERVICE", "CAP_SYS_ADMIN"]
    assert "AmbientCapabilities" not in service          # root: ambient capabilities do nothing
    assert service["StateDirectory"] == "netboot" and service["StateDirectoryMode"] == "0750"
    assert out["path"] == []
    # No fabric at boot, so rtslib can still move LIO's database root to /etc/target.
    assert out["kernelModules"] == ["configfs", "target_core_mod", "target_core_file", "target_core_iblock"]
    assert "d /etc/target 0700 root root -" in out["tmpfiles"]
    assert (out["udpPorts"], out["tcpPorts"]) == ([69], [3260])

    [key] = out["rootKeys"]
    gate = out["clientGate"]
    assert key.startswith(f'restrict,command="/nix/store/') and f'/bin/{gate["name"]} pi-desktop" ssh-ed25519 ' in key
    check_script(gate, tmp_path)


def test_client_gate_allows_only_the_hosts_own_commands(tmp_path) -> None:
    gate = appliance(PI_NFS_CHAP)["clientGate"]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("netboot", "nix-daemon"):
        (bin_dir / tool).write_text(f'#!/bin/sh\necho "{tool} $*"\n')
        (bin_dir / tool).chmod(0o755)
    script = tmp_path / "gate"
    script.write_text(gate["text"])

    def run(command: str) -> subprocess.CompletedProcess:
        env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "SSH_ORIGINAL_COMMAND": command}
        return subprocess.run(["bash", str(script), "pi-desktop"], capture_output=True, text=True, env=env)

    store_path = "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-nixos-system-pi-desktop"
    assert run(f"netboot register pi-desktop {store_path}").stdout == f"netboot register pi-desktop {store_path}\n"
    assert run("netboot confirm pi-desktop").stdout == "netboot confirm pi-desktop\n"
    assert run("nix-daemon --stdio").stdout == "nix-daemon --stdio\n"
    for refused in (f"netboot register pi-node-1 {store_path}", "netboot register pi-desktop /etc/passwd",
                    "netboot pin pi-desktop 1", "netboot confirm pi-desktop; reboot", "sh -c id", ""):
        proc = run(refused)
        assert proc.returncode == 1 and proc.stdout == "", refused
        assert "refused for client pi-desktop" in proc.stderr


def test_ipxe_on_a_block_device_with_proxy_dhcp(tmp_path) -> None:
    out = appliance(IPXE_BLOCK_DHCP)
    netboot_check(out["settings"], tmp_path)
    host = out["settings"]["hosts"]["rack-1"]
    assert host["iscsi"]["lun"] == {"block": "/dev/zvol/tank/rack-1"}
    assert host["tftp_access"] == "open"
    assert out["settings"]["firmware"] == {}           # no rpi host, no Pi firmware
    assert out["serviceConfig"]["CapabilityBoundingSet"] == ["CAP_NET_BIND_SERVICE", "CAP_SYS_ADMIN", "CAP_NET_RAW"]
    assert out["serviceConfig"]["PrivateDevices"] is False   # the block LUN is opened from /dev
    assert out["unitConfig"]["RequiresMountsFor"] == []
    assert sorted(out["udpPorts"]) == [67, 69, 4011]
    assert out["tcpPorts"] == [3260, 3261]
    assert out["rootKeys"] == []


def test_iscsi_off_loads_no_lio_and_keeps_the_full_sandbox(tmp_path) -> None:
    out = appliance(ISCSI_OFF)
    netboot_check(out["settings"], tmp_path)
    service = out["serviceConfig"]
    assert out["kernelModules"] == []
    assert not any("target" in p or "/sys/kernel/config" in p for p in service["ReadWritePaths"])
    assert service["ProtectKernelTunables"] is True and service["PrivateDevices"] is True
    assert service["CapabilityBoundingSet"] == ["CAP_NET_BIND_SERVICE"]
    assert not any("/etc/target" in rule for rule in out["tmpfiles"])
    assert "sys-kernel-config.mount" not in out["after"]
    assert out["udpPorts"] == [] and out["tcpPorts"] == []   # openFirewall is off


def test_secret_file_in_the_store_fails_with_the_modules_assertion() -> None:
    failed = failed_assertions(PI_NFS_CHAP.replace(
        '"/run/secrets/netboot/pi-desktop-chap"', '"/nix/store/0123456789abcdfghijklmnpqrsvwxyz-chap"'))
    assert len(failed) == 1 and "lie in the" in failed[0] and "hosts.pi-desktop.iscsi.chap.secret_file" in failed[0]


def test_inline_secret_fails_with_the_modules_assertion() -> None:
    failed = failed_assertions(PI_NFS_CHAP.replace(
        'secret_file = "/run/secrets/netboot/pi-desktop-chap";', 'secret = "0123456789ab";'))
    assert any("must not be written" in m and "hosts.pi-desktop.iscsi.chap.secret" in m for m in failed), failed


def test_chap_without_any_secret_fails_with_the_modules_assertion() -> None:
    failed = failed_assertions(PI_NFS_CHAP.replace('secret_file = "/run/secrets/netboot/pi-desktop-chap";', ""))
    assert failed == ["services.netboot-appliance.settings.hosts.pi-desktop.iscsi.chap needs secret_file "
                      "(a file outside the Nix store holding the CHAP secret)."]


def test_missing_portal_fails_with_the_modules_assertion() -> None:
    failed = failed_assertions(PI_NFS_CHAP.replace('portals = [ "10.0.4.3:3260" ];', ""))
    assert failed == ["services.netboot-appliance.settings.iscsi.portals: iSCSI is enabled but no portal "
                      "(ip:port) is listed."]


def test_client_keys_without_sshd_fail_with_the_modules_assertion() -> None:
    failed = failed_assertions(PI_NFS_CHAP.replace("services.openssh.enable = true;", ""))
    assert len(failed) == 1 and "services.openssh.enable = true" in failed[0]


def test_a_bad_settings_value_is_a_type_error_with_its_option_path() -> None:
    error = nix_eval_error(eval_harness() + "h.summarize h.applianceSummary (h.evalSystem { modules = [ ({ ... }: {"
                           + ISCSI_OFF.replace('boot = "uboot";', 'boot = "pxe";') + "}) ]; }).config")
    assert "services.netboot-appliance.settings.hosts.lab.boot" in error and "pxe" in error


# -- the client ----------------------------------------------------------------------

def _check_client(out: dict, tmp_path: Path) -> None:
    check_script(out["publish"], tmp_path)
    assert out["installBootLoader"].endswith("/bin/netboot-publish")
    assert out["iscsi"]["name"] == "iqn.2026-04.net.ereslibre:pi-desktop"
    assert out["iscsi"]["discoverPortal"] == "10.0.4.3:3260"
    assert out["iscsi"]["target"] == "iqn.2026-04.net.ereslibre.netboot:pi-desktop"
    assert out["rootFs"] == {"device": "/dev/disk/by-label/PIROOT", "fsType": "ext4", "options": ["_netdev"]}
    assert out["loaders"] == {"grub": False, "extlinux": False, "systemd-boot": False}
    assert out["initrdSystemd"] is False
    # One DHCP client identifier (the MAC) in both stages: udhcpc in the initrd, networkd after.
    assert out["initrdNetwork"] == {"enable": True, "udhcpc": True}
    assert not any(p.startswith("ip=") for p in out["kernelParams"])
    assert out["kernelParams"] == ["root=/dev/disk/by-label/PIROOT", "rootfstype=ext4", "rootwait"]
    [network] = out["networks"].values()
    assert network["dhcpV4Config"] == {"ClientIdentifier": "mac"}
    assert network["networkConfig"]["KeepConfiguration"] == "yes"
    assert out["knownHosts"]["netboot-appliance"]["hostNames"] == ["10.0.4.3"]
    assert out["knownHosts"]["netboot-appliance"]["publicKey"].startswith("ssh-ed25519 ")
    confirm = out["confirm"]["ExecStart"]
    assert "-o 'BatchMode=yes'" in confirm and confirm.endswith("root@10.0.4.3 netboot confirm pi-desktop")


def test_client_with_chap(tmp_path) -> None:
    out = client(CLIENT_CHAP)
    _check_client(out, tmp_path)
    assert out["iscsi"]["extraConfigFile"] == "/etc/iscsi/netboot-chap.conf"
    assert "examples/pi-desktop-iscsi-chap.conf" in out["initrdFiles"]["/etc/iscsi/netboot-chap.conf"]["buildCommand"] \
        or "-pi-desktop-iscsi-chap.conf" in out["initrdFiles"]["/etc/iscsi/netboot-chap.conf"]["buildCommand"]


def test_client_without_chap(tmp_path) -> None:
    out = client(CLIENT_BASE)
    _check_client(out, tmp_path)
    assert out["iscsi"]["extraConfigFile"] is None
    assert out["initrdFiles"] == {}


def _fake_tools(tmp_path: Path, **scripts: str) -> Path:
    """A bin/ directory of executable stand-ins, by command name."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool, text in scripts.items():
        (bin_dir / tool).write_text(text)
        (bin_dir / tool).chmod(0o755)
    return bin_dir


def test_publish_passes_a_path_with_spaces_as_one_remote_argument(tmp_path) -> None:
    """netboot-publish quotes the remote command: ssh joins its arguments into one shell line."""
    script = tmp_path / "netboot-publish"
    script.write_text(client(CLIENT_BASE)["publish"]["text"])
    log = tmp_path / "calls"
    # A fake ssh that runs the remote command line the way sshd does: through a shell.
    bin_dir = _fake_tools(tmp_path, ssh=f'#!/bin/bash\nfor last; do :; done\nbash -c "printf \'<%s>\' $last" > {log}\n',
                          nix="#!/bin/sh\nexit 0\n")
    toplevel = tmp_path / "a system with 'quotes'"
    toplevel.mkdir()
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin"}
    proc = subprocess.run(["bash", str(script), str(toplevel)], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert log.read_text() == f"<netboot><register><pi-desktop><{toplevel}>"


def test_client_forcing_the_systemd_initrd_fails_with_what_to_set() -> None:
    failed = failed_assertions(CLIENT_BASE + "boot.initrd.systemd.enable = true;", "clientSummary")
    assert len(failed) == 1 and "boot.initrd.systemd.enable = lib.mkForce false" in failed[0]


def test_client_without_the_appliance_host_key_fails_with_what_to_set() -> None:
    body = CLIENT_BASE.replace('appliance.hostKey = "ssh-ed25519', 'appliance.sshOptions = [ ]; #')
    failed = failed_assertions(body, "clientSummary")
    assert len(failed) == 1 and "netboot.client.appliance.hostKey" in failed[0]
    assert failed_assertions(body + "netboot.client.publish.enable = false; netboot.client.confirm.enable = false;",
                             "clientSummary") == []


# -- what the unit and tmpfiles are built from ---------------------------------------

def test_iscsi_apply_lock_directory_is_writable_in_the_sandbox() -> None:
    """ProtectSystem=strict leaves /run read-only: the apply lock's directory must be listed."""
    from appliance.iscsi.api import APPLY_LOCK

    writable = appliance(PI_NFS_CHAP)["serviceConfig"]["ReadWritePaths"]
    assert str(APPLY_LOCK.parent) in writable, writable
    assert str(APPLY_LOCK.parent) not in appliance(ISCSI_OFF)["serviceConfig"]["ReadWritePaths"]


@pytest.mark.parametrize(("option", "edit"), [
    ("server.state_dir", lambda body: body.replace("settings = {", 'settings = { server.state_dir = "/srv/net boot";')),
    ("server.gcroots_dir", lambda body: body.replace("settings = {", 'settings = { server.gcroots_dir = "/nix/var/nix/gcroots/%i";')),
    ("hosts.pi-desktop.profile", lambda body: body.replace('tftp_prefix = "pi-desktop/";',
                                                           'tftp_prefix = "pi-desktop/"; profile = "/nix/var/nix/profiles/my\\tnet/pi";')),
    ("hosts.pi-desktop.iscsi.lun.file", lambda body: body.replace("/mnt/nas/luns/pi-desktop.img", '/mnt/nas/my luns/pi.img')),
])
def test_a_path_systemd_would_split_or_expand_fails_with_the_modules_assertion(option, edit) -> None:
    """Whitespace splits a ReadWritePaths=/tmpfiles field in two, `%` is a systemd specifier,
    quotes and backslashes are unquoted: the appliance accepts such paths, the unit would not."""
    failed = failed_assertions(edit(PI_NFS_CHAP))
    assert len(failed) == 1 and f"services.netboot-appliance.settings.{option}" in failed[0], failed


@pytest.mark.parametrize(("option", "body"), [
    ("netboot.client.iscsi.initiatorName",
     CLIENT_BASE.replace('iscsi.initiatorName = "iqn.2026-04.net.ereslibre:pi-desktop";', 'iscsi.initiatorName = "pi-desktop";')),
    ("netboot.client.iscsi.initiatorName",
     CLIENT_BASE.replace('iscsi.initiatorName = "iqn.2026-04.net.ereslibre:pi-desktop";',
                         'iscsi.initiatorName = "iqn.2026-04.net.ereslibre:Pi-Desktop";')),
    ("netboot.client.appliance.targetPrefix",
     CLIENT_BASE.replace('"iqn.2026-04.net.ereslibre.netboot";', '"iqn.2026-04.net.ereslibre.netboot:pi";')),
])
def test_client_iscsi_names_the_appliance_would_refuse_are_type_errors(option: str, body: str) -> None:
    """The host would only find out at boot, in the initrd, that it can never log in."""
    error = nix_eval_error(eval_harness() + 'h.summarize h.clientSummary (h.evalSystem { system = "aarch64-linux"; '
                           "modules = [ ({ ... }: {" + body + "}) ]; }).config")
    assert option in error and "iSCSI" in error, error[-1500:]


def test_appliance_target_prefix_with_a_colon_is_a_type_error() -> None:
    error = nix_eval_error(eval_harness() + "h.summarize h.applianceSummary (h.evalSystem { modules = [ ({ ... }: {"
                           + PI_NFS_CHAP.replace('"iqn.2026-04.net.ereslibre.netboot";', '"iqn.2026-04.net.ereslibre.netboot:x";')
                           + "}) ]; }).config")
    assert "services.netboot-appliance.settings.iscsi.target_prefix" in error, error[-1500:]


# -- defaults: the module's and the appliance's must not drift apart -----------------

MINIMAL = SERVER_BASE + """
  services.netboot-appliance = {
    enable = true;
    settings = {
      iscsi = { enable = true; portals = [ "10.0.4.3" ]; };
      hosts.pi = { boot = "rpi"; mac = "dc:a6:32:01:02:03";
        iscsi = { initiator = "iqn.2026-04.net.example:pi"; lun.block = "/dev/zvol/tank/pi";
                  chap = { user = "pi"; secret_file = "/run/secrets/pi"; }; }; };
      hosts.pi5 = { boot = "rpi5"; mac = "2c:cf:67:01:02:03"; };
      hosts.lab = { boot = "uboot"; mac = "52:54:00:aa:bb:cc"; };
      hosts.rack = { boot = "ipxe"; mac = "52:54:00:12:34:56"; };
    };
  };
"""


def test_what_the_module_writes_by_default_is_what_the_appliance_assumes_when_omitted() -> None:
    """Each option default the module renders, removed again, parses to the same configuration."""
    import copy

    from appliance.config import parse_config

    rendered = appliance(MINIMAL)["settings"]
    omitted = copy.deepcopy(rendered)
    server_defaults = {"state_dir", "store_dir", "tftp_listen", "http_listen", "gcroots_dir"}
    assert server_defaults <= set(omitted["server"]), omitted["server"]
    for key in server_defaults:
        del omitted["server"][key]
    del omitted["iscsi"]["target_prefix"]
    # The appliance requires a profile; the module's default is checked by name below.
    for name, host in omitted["hosts"].items():
        assert host["profile"] == f"/nix/var/nix/profiles/netboot/{name}"
        for key in ("allow_eeprom_update", "config_txt", "tftp_access"):
            del host[key]
    assert parse_config(rendered) == parse_config(omitted)


def test_the_defaults_the_module_documents_are_the_appliances() -> None:
    from dataclasses import fields

    from appliance.config.model import Host

    documented = nix_eval_json(
        eval_harness() + "let opts = (h.evalSystem { modules = [ ({ ... }: {" + SERVER_BASE + "}) ]; })"
        ".options.services.netboot-appliance.settings.type.getSubOptions [ ]; "
        'host = opts.hosts.type.nestedTypes.elemType.getSubOptions [ "hosts" "x" ]; '
        'in builtins.mapAttrs (n: o: o.defaultText.text or null) (builtins.removeAttrs host [ "_module" "iscsi" ])')
    defaults = {f.name: f.default for f in fields(Host)}
    for option in ("menu_timeout", "trial_confirm_after", "trial_timeout"):
        assert float(documented[option]) == defaults[option], option
    assert documented["tftp_prefix"].startswith(f'"{defaults["prefix_kind"]}"')


def _with_tftp_listen(address: str) -> str:
    old = "netboot-appliance = {\n    enable = true;"
    assert old in ISCSI_OFF
    return ISCSI_OFF.replace(old, old + f" openFirewall = true; settings.server.tftp_listen = [ {nix_string(address)} ];")


@pytest.mark.parametrize(("address", "port"), [("10.0.4.3:", 69), (" [::]:1069", 1069), ("10.0.4.3:0069", 69)])
def test_firewall_opens_the_port_the_appliance_binds(address: str, port: int) -> None:
    assert appliance(_with_tftp_listen(address))["udpPorts"] == [port]


@pytest.mark.parametrize("address", ["10.0.4.3:tftp", "[::1]:x", "localhost:69", "10.0.4.3:70000"])
def test_a_bad_listen_address_is_a_type_error_with_its_option_path(address: str) -> None:
    error = nix_eval_error(eval_harness() + "h.summarize h.applianceSummary (h.evalSystem { modules = [ ({ ... }: {"
                           + _with_tftp_listen(address) + "}) ]; }).config")
    assert "services.netboot-appliance.settings.server.tftp_listen" in error, error[-1500:]


def test_client_confirm_command_reaches_ssh_verbatim_through_systemd() -> None:
    """ExecStart= expands `%` specifiers and `$` variables: ssh's own %h/%p and a literal `$`
    must arrive as written (doubled in the unit)."""
    body = CLIENT_BASE.replace('initrdNetworkModules = [ "bcmgenet" ];', 'initrdNetworkModules = [ "bcmgenet" ]; '
                               'appliance.sshOptions = [ "-o" "ProxyCommand=ssh -W %h:%p bastion" "-o" "User=$x" ];')
    confirm = client(body)["confirm"]["ExecStart"]
    assert "%%h:%%p" in confirm and "$$x" in confirm, confirm
    assert "%h" not in confirm.replace("%%h", ""), confirm


def test_client_portal_of_an_ipv6_appliance_is_bracketed() -> None:
    body = CLIENT_BASE.replace('appliance.address = "10.0.4.3";', 'appliance.address = "fd00::3";')
    assert client(body)["iscsi"]["discoverPortal"] == "[fd00::3]:3260"


def test_the_same_mac_on_two_hosts_fails_at_evaluation() -> None:
    """Also when cross-compiling, where the build cannot run `netboot check`."""
    body = ISCSI_OFF.replace('settings.hosts.lab = { boot = "uboot"; mac = "52:54:00:aa:bb:cc"; };',
                             'settings.hosts.lab = { boot = "uboot"; mac = "52:54:00:aa:bb:cc"; };'
                             ' settings.hosts.lab2 = { boot = "ipxe"; mac = "52-54-00-AA-BB-CC"; };')
    assert body != ISCSI_OFF
    failed = failed_assertions(body)
    assert len(failed) == 1 and "hosts.lab2.mac" in failed[0] and "52:54:00:aa:bb:cc" in failed[0] \
        and "lab" in failed[0], failed


@pytest.mark.parametrize("mac", ["52:54:00:aa:bb", "01:00:5e:00:00:01", "52:54:00:aa:bb:cg"])
def test_a_bad_mac_is_a_type_error_with_its_option_path(mac: str) -> None:
    error = nix_eval_error(eval_harness() + "h.summarize h.applianceSummary (h.evalSystem { modules = [ ({ ... }: {"
                           + ISCSI_OFF.replace('"52:54:00:aa:bb:cc"', nix_string(mac)) + "}) ]; }).config")
    assert "services.netboot-appliance.settings.hosts.lab.mac" in error and "MAC" in error, error[-1500:]


def test_tmpfiles_rules_create_profile_directories_but_leave_an_existing_ones_owner_and_mode(tmp_path) -> None:
    """A host's profile may live in a user's directory (per-user profiles): systemd-tmpfiles,
    run on the generated rules, must not hand it to root or open it up."""
    if os.geteuid() != 0:
        pytest.skip("chown needs root")
    body = PI_NFS_CHAP.replace('tftp_prefix = "pi-desktop/";', 'tftp_prefix = "pi-desktop/"; '
                               'profile = "/nix/var/nix/profiles/per-user/alice/pi-desktop";')
    rules = appliance(body)["tmpfiles"]
    root = tmp_path / "root"
    alice = root / "nix/var/nix/profiles/per-user/alice"
    alice.mkdir(parents=True)
    os.chown(alice, 65534, 65534)
    alice.chmod(0o700)
    conf = tmp_path / "netboot.conf"
    conf.write_text("\n".join(rules) + "\n")
    proc = subprocess.run([_tool("systemd-tmpfiles"), f"--root={root}", "--create", str(conf)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    st = alice.stat()
    assert (st.st_uid, st.st_mode & 0o7777) == (65534, 0o700), rules
    assert (root / "nix/var/nix/gcroots/netboot").is_dir()    # what is missing is still created


def test_client_keys_for_a_host_that_does_not_exist_fail_at_evaluation() -> None:
    """A misspelt host would get a key whose every register and confirm is refused."""
    failed = failed_assertions(PI_NFS_CHAP.replace("clientKeys.pi-desktop", "clientKeys.pi-dekstop"))
    assert len(failed) == 1 and "clientKeys.pi-dekstop" in failed[0] and "pi-desktop" in failed[0], failed


@pytest.mark.parametrize("name", ["Pi-Desktop", "pi_desktop", "pi desktop", 'pi"x', "-pi", "pi\\n", "p\u00ef"])
def test_a_host_name_the_appliance_refuses_fails_at_evaluation(name: str) -> None:
    """Host names go into IQNs, LIO names and the clients' forced SSH command."""
    body = ISCSI_OFF.replace("settings.hosts.lab =", f"settings.hosts.{nix_string(name)} =")
    assert body != ISCSI_OFF
    failed = failed_assertions(body)
    assert any("host names are lower-case" in m and nix_string(name)[1:-1] in m for m in failed), failed


def test_secrets_and_luns_under_home_directories_are_bound_into_the_sandbox() -> None:
    """ProtectHome=true hides /root, /home and /run/user, and systemd drops ReadWritePaths= below
    them; with "tmpfs" the paths listed in BindPaths=/BindReadOnlyPaths= stay visible
    (systemd.exec(5), ProtectHome=)."""
    body = (PI_NFS_CHAP.replace("/run/secrets/netboot/pi-desktop-chap", "/root/secrets/pi-desktop-chap")
            .replace("/mnt/nas/luns/pi-desktop.img", "/home/luns/pi-desktop.img"))
    service = appliance(body)["serviceConfig"]
    assert service["ProtectHome"] == "tmpfs"
    assert service["BindReadOnlyPaths"] == ["-/root/secrets/pi-desktop-chap"]
    assert service["BindPaths"] == ["-/home/luns"]
    plain = appliance(PI_NFS_CHAP)["serviceConfig"]
    assert plain["ProtectHome"] is True and not plain.get("BindReadOnlyPaths") and not plain.get("BindPaths")


def test_every_line_of_a_client_key_string_is_restricted() -> None:
    """`builtins.readFile ./keys.pub` holding two keys must not give the second one a root shell."""
    key_a = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDcJc0VsGqzqUFk9mpmGdRkVwD8nDbJ0H7s5SMh5L0vz a@pi"
    key_b = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFx0xjqIsVZ0hj7tBvOZr0hdJrOrxOSqMRsb9dBCnFmJ b@pi"
    start = PI_NFS_CHAP.index("clientKeys.pi-desktop = ")
    body = PI_NFS_CHAP[:start] + f"clientKeys.pi-desktop = [ {nix_string(key_a + chr(10) + chr(10) + key_b + chr(10))} ];\n  }};\n"
    keys = appliance(body)["rootKeys"]
    lines = [line for key in keys for line in key.split("\n") if line.strip()]
    assert len(lines) == 2 and all(line.startswith('restrict,command="') for line in lines), keys
    assert lines[0].endswith(key_a) and lines[1].endswith(key_b)


def test_publish_hands_nix_copy_ssh_options_with_spaces_intact(tmp_path) -> None:
    """Nix ≥ 2.26 splits NIX_SSHOPTS like a shell (NixOS/nix#12020): a ProxyCommand must
    arrive as one argument, as it does for the ssh of `netboot register`."""
    import shlex

    options = ["-o", "ProxyCommand=ssh -W %h:%p jump 'quoted'", "-p", "2222"]
    body = CLIENT_BASE.replace('initrdNetworkModules = [ "bcmgenet" ];', 'initrdNetworkModules = [ "bcmgenet" ]; '
                               f'appliance.sshOptions = [ {" ".join(nix_string(o) for o in options)} ];')
    script = tmp_path / "netboot-publish"
    script.write_text(client(body)["publish"]["text"])
    seen = tmp_path / "sshopts"
    bin_dir = _fake_tools(tmp_path, nix=f'#!/bin/bash\nprintf %s "$NIX_SSHOPTS" > {seen}\n', ssh="#!/bin/sh\nexit 0\n")
    proc = subprocess.run(["bash", str(script), str(tmp_path)], capture_output=True, text=True,
                          env={"PATH": f"{bin_dir}:/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    assert shlex.split(seen.read_text())[-4:] == options


def test_ssh_options_with_spaces_and_a_nix_that_splits_them_fail_with_what_to_do() -> None:
    body = CLIENT_BASE.replace('initrdNetworkModules = [ "bcmgenet" ];', 'initrdNetworkModules = [ "bcmgenet" ]; '
                               'appliance.sshOptions = [ "-o" "ProxyCommand=ssh -W %h:%p jump" ];') \
        + 'nix.package = pkgs.nix // { version = "2.24.9"; };'
    failed = failed_assertions(body, "clientSummary")
    assert len(failed) == 1 and "NIX_SSHOPTS" in failed[0] and "2.26" in failed[0], failed


@pytest.mark.parametrize("state_dir", ["/var/lib", "/var/lib/", "/srv", "/"])
def test_a_state_directory_that_is_not_its_own_fails_at_evaluation(state_dir: str) -> None:
    """tmpfiles would make /var/lib or /srv root-only (0750), or StateDirectory= would be empty."""
    old = "netboot-appliance = {\n    enable = true;"
    failed = failed_assertions(ISCSI_OFF.replace(old, old + f" settings.server.state_dir = {nix_string(state_dir)};"))
    assert len(failed) == 1 and "server.state_dir" in failed[0], failed


def test_a_state_directory_below_var_lib_with_a_trailing_slash_is_a_state_directory() -> None:
    old = "netboot-appliance = {\n    enable = true;"
    out = appliance(ISCSI_OFF.replace(old, old + ' settings.server.state_dir = "/var/lib/netboot/";'))
    assert out["serviceConfig"]["StateDirectory"] == "netboot"
    assert not any(rule.startswith("d /var/lib") for rule in out["tmpfiles"])

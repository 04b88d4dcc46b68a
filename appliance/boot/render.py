"""Render a host's boot tree (pure)."""

from __future__ import annotations

from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path
from typing import Mapping

from ..config import BootStyle, Host, mac_dashes
from ..nix import Generation
from . import text
from .tree import BootTree, Generated, Source, StoreFile
from .uimage import uimage_script

# What a Pi boot directory may take from the firmware package: blobs and overlays,
# never its kernel*.img / cmdline.txt / config.txt (ours are generated).
FIRMWARE_PATTERNS = ("start*.elf", "fixup*.dat", "bootcode.bin", "*.dtb", "overlays/*")
EEPROM_FILES = ("pieeprom.upd", "pieeprom.sig", "recovery.bin")

UBOOT_SCRIPT = "boot.scr.uimg"
IPXE_SCRIPT = "boot.ipxe"
IPXE_PROGRAMS = ("undionly.kpxe", "ipxe.efi", "snponly.efi")   # network boot programs served to PXE firmware


@dataclass(frozen=True)
class BootInputs:
    host: Host
    selected: Generation | None                  # what boots by default
    kept: tuple[Generation, ...] = ()            # valid generations, any order
    firmware: tuple[tuple[str, Path], ...] = ()  # (relative path, resolved file)
    dtbs: Mapping[int, tuple[tuple[str, Path], ...]] = field(default_factory=dict)  # per generation
    http_base: str | None = None                 # "http://host:port": iPXE loads kernels and initrds from it


def render_tree(inputs: BootInputs) -> BootTree:
    host = inputs.host
    kept = tuple(sorted({g.number: g for g in (*inputs.kept, *(x for x in [inputs.selected] if x))}.values(),
                        key=lambda g: -g.number))
    files: dict[str, Source] = {}
    if host.boot == BootStyle.RPI:
        _rpi(files, inputs, kept)
    elif inputs.selected is not None:
        if host.boot == BootStyle.UBOOT:
            _uboot(files, inputs, kept)
        else:
            _ipxe(files, inputs, kept)
    for gen in kept:
        _generation_dir(files, inputs, gen)
    return BootTree(host=host.name, generation=inputs.selected.number if inputs.selected else None, files=files)


def _generation_dir(files: dict[str, Source], inputs: BootInputs, gen: Generation) -> None:
    host = inputs.host
    base = f"{host.tftp_prefix}generations/{gen.number}/"
    assert gen.kernel and gen.initrd
    if host.boot == BootStyle.RPI:
        files[base + "kernel8.img"] = StoreFile(gen.kernel)
        files[base + "cmdline.txt"] = Generated(text.cmdline_txt(host, gen))
    else:
        files[base + "kernel"] = StoreFile(gen.kernel)
    files[base + "initrd"] = StoreFile(gen.initrd)
    for rel, path in inputs.dtbs.get(gen.number, ()):
        files[f"{base}dtbs/{rel}"] = StoreFile(path)


def _rpi(files: dict[str, Source], inputs: BootInputs, kept: tuple[Generation, ...]) -> None:
    host, prefix = inputs.host, inputs.host.tftp_prefix
    for rel, path in inputs.firmware:
        name = rel.rsplit("/", 1)[-1]
        if name in EEPROM_FILES and "/" not in rel:
            if host.allow_eeprom_update:
                files[prefix + rel] = StoreFile(path)
        elif any(fnmatch(rel, pattern) for pattern in FIRMWARE_PATTERNS):
            files[prefix + rel] = StoreFile(path)
    gen = inputs.selected
    if gen is None:
        return
    # The generation's own device trees win over the firmware's.
    for rel, path in inputs.dtbs.get(gen.number, ()):
        if rel.startswith("broadcom/") and rel.endswith(".dtb") and rel.count("/") == 1:
            files[prefix + rel.split("/", 1)[1]] = StoreFile(path)
    assert gen.kernel and gen.initrd
    files[prefix + "kernel8.img"] = StoreFile(gen.kernel)
    files[prefix + "initrd"] = StoreFile(gen.initrd)
    files[prefix + "cmdline.txt"] = Generated(text.cmdline_txt(host, gen))
    files[prefix + "config.txt"] = Generated(text.config_txt(host))


def _uboot(files: dict[str, Source], inputs: BootInputs, kept: tuple[Generation, ...]) -> None:
    host = inputs.host
    assert inputs.selected and host.mac
    menu = Generated(text.pxelinux_menu(host, inputs.selected, kept, host.tftp_prefix))
    files[f"pxelinux.cfg/01-{mac_dashes(host.mac)}"] = menu
    script = Generated(uimage_script(text.uboot_script(host), name=f"netboot {host.name}"))
    files[UBOOT_SCRIPT] = script                   # resolved per client (IP → MAC)
    files[host.tftp_prefix + UBOOT_SCRIPT] = script


def _ipxe(files: dict[str, Source], inputs: BootInputs, kept: tuple[Generation, ...]) -> None:
    host = inputs.host
    assert inputs.selected
    script = Generated(text.ipxe_script(host, inputs.selected, kept, host.tftp_prefix, inputs.http_base))
    files[host.tftp_prefix + IPXE_SCRIPT] = script
    files[IPXE_SCRIPT] = script                    # resolved per client (IP → MAC)
    # iPXE itself, for plain PXE / UEFI firmware to chain-load (the host's ``firmware``
    # is the ipxe package of its architecture; nixpkgs and Debian put these at its top).
    for rel, path in inputs.firmware:
        if rel in IPXE_PROGRAMS:
            files[host.tftp_prefix + rel] = StoreFile(path)

"""``rpi``: Raspberry Pi 4 / Pi 400 / CM4 EEPROM network boot.

The bootloader in the Pi's EEPROM fetches, under the host's TFTP prefix
(``TFTP_PREFIX`` in the EEPROM config: 0 serial, 1 ``TFTP_PREFIX_STR``,
2 MAC), the VideoCore firmware ``start4.elf`` / ``fixup4.dat``, which reads
``config.txt``, the device tree, ``overlays/``, the kernel named by
``kernel=``, ``cmdline.txt`` and the initramfs (Raspberry Pi documentation,
"Network booting" and "config.txt").  Everything but the firmware blobs
comes from the selected generation.  A ``kernel=`` line among the host's
``config_txt`` names the file the generation's kernel is served as (the last
one wins, as on the Pi); an ``initramfs`` line must name ``initrd``.
"""

from __future__ import annotations

import re
from fnmatch import fnmatch
from typing import TYPE_CHECKING, Any, Collection, Iterable, Mapping

from .. import text
from ..tree import Generated, Source, StoreFile
from .base import BootInputs, DhcpAnswer, DhcpQuery, FixedStyle, generation_dir

if TYPE_CHECKING:
    from ...config.model import Host

# Never served unless the host allows it: they re-flash the Pi's EEPROM.
EEPROM_FILES = ("pieeprom.upd", "pieeprom.sig", "recovery.bin")
# The PXE menu item the Pi bootloader looks for in option 43 (dnsmasq's
# pxe-service=0,"Raspberry Pi Boot").
PI_PXE_MENU = "Raspberry Pi Boot"
INITRD = "initrd"
# config.txt lines naming a file: ``kernel=<file>``, ``initramfs <file> [followkernel|address]``.
_KERNEL_LINE = re.compile(r"^\s*kernel\s*=(.*)$")
_INITRAMFS_LINE = re.compile(r"^\s*initramfs[\s=]+(\S*)")


class RaspberryPi(FixedStyle):
    """Raspberry Pi 4 EEPROM netboot: firmware, config.txt, cmdline.txt, kernel and initrd."""

    name: str = "rpi"
    description: str = "Raspberry Pi 4 / Pi 400 / CM4 EEPROM netboot (start4.elf firmware, kernel8.img)"
    default_firmware: str | None = "rpi"
    firmware_files: tuple[str, ...] = ("start4.elf", "fixup4.dat")
    required_files: tuple[str, ...] = ("start4.elf", "fixup4.dat", "initrd", "config.txt",
                                       "cmdline.txt", "bcm2711-*.dtb")
    eeprom_netboot: bool = True
    host_keys: frozenset[str] = frozenset({"config_txt", "allow_eeprom_update", "firmware"})
    # What a boot directory may take from the firmware package: blobs and
    # overlays, never its kernel*.img / cmdline.txt / config.txt (ours are generated).
    firmware_patterns: tuple[str, ...] = ("start*.elf", "fixup*.dat", "bootcode.bin", "*.dtb", "overlays/*")
    # Device trees of the generation (``dtbs/broadcom/<name>``) that replace the firmware's.
    dtb_pattern: str = "*.dtb"
    # The first files a boot fetches: seeing one again means a new boot.
    boot_files: tuple[str, ...] = ("config.txt", "start4.elf")
    config_base: tuple[str, ...] = ("arm_64bit=1", "kernel={kernel}", "initramfs initrd followkernel", "enable_uart=1")
    default_kernel: str = "kernel8.img"

    def kernel_name(self, host: "Host") -> str:
        names = kernel_lines(host.config_txt)
        return names[-1] if names else self.default_kernel   # the last kernel= wins

    def host_problems(self, table: Mapping[str, Any], firmware: Collection[str]) -> Iterable[tuple[str, str]]:
        name = table.get("firmware", self.default_firmware)
        if not isinstance(name, str) or name not in firmware:
            yield "firmware", f"{name!r} names no [firmware.*] table (an {self.name} host needs the Pi firmware)"
        lines = table.get("config_txt", [])
        if not (isinstance(lines, list) and all(isinstance(line, str) for line in lines)):
            return
        for name in kernel_lines(lines):
            if not name or "/" in name or not name.isprintable() or name in ("config.txt", "cmdline.txt", INITRD):
                yield "config_txt", f"kernel={name} must name a plain file (the generation's kernel is served as it)"
        for line in lines:
            match = _INITRAMFS_LINE.match(line)
            if match and match.group(1) != INITRD:
                yield "config_txt", (f"{line.strip()!r}: the generation's initrd is served as {INITRD!r} "
                                     f"(the Pi would ask for a file that is not there)")

    def config_txt(self, host: "Host") -> bytes:
        base = tuple(line.format(kernel=self.kernel_name(host)) for line in self.config_base)
        return text.config_txt(host, base)

    def render(self, inputs: BootInputs) -> dict[str, Source]:
        host, prefix = inputs.host, inputs.host.tftp_prefix
        files: dict[str, Source] = {}
        for rel, path in inputs.firmware:
            name = rel.rsplit("/", 1)[-1]
            if name in EEPROM_FILES and "/" not in rel:
                if host.allow_eeprom_update:
                    files[prefix + rel] = StoreFile(path)
            elif any(fnmatch(rel, pattern) for pattern in self.firmware_patterns):
                files[prefix + rel] = StoreFile(path)
        gen = inputs.selected
        if gen is not None:
            # The generation's own device trees win over the firmware's.
            for rel, path in inputs.dtbs.get(gen.number, ()):
                folder, _, dtb = rel.partition("/")
                if folder == "broadcom" and "/" not in dtb and fnmatch(dtb, self.dtb_pattern):
                    files[prefix + dtb] = StoreFile(path)
            assert gen.kernel and gen.initrd
            files[prefix + self.kernel_name(host)] = StoreFile(gen.kernel)
            files[prefix + INITRD] = StoreFile(gen.initrd)
            files[prefix + "cmdline.txt"] = Generated(text.cmdline_txt(host, gen))
            files[prefix + "config.txt"] = Generated(self.config_txt(host))
        for kept in inputs.generations:
            files.update(generation_dir(host, kept, inputs.dtbs.get(kept.number, ()), self.kernel_name(host),
                                        cmdline=True))
        return files

    def starts_boot(self, host: "Host", path: str) -> bool:
        return any(path in (name, host.tftp_prefix + name) for name in self.boot_files)

    def kernel_paths(self, host: "Host", generation: int) -> set[str]:
        kernel = self.kernel_name(host)
        return {host.tftp_prefix + kernel, f"{host.tftp_prefix}generations/{generation}/{kernel}"}

    def dhcp_answer(self, host: "Host", query: DhcpQuery) -> DhcpAnswer:
        if query.http_boot:
            return DhcpAnswer(refusal=f"UEFI HTTP Boot client, but the host boots as {self.name}")
        # No boot file: the Pi fetches from its prefix on the server in option 66.
        return DhcpAnswer(pxe_menu=PI_PXE_MENU)


def kernel_lines(lines: Iterable[str]) -> list[str]:
    """The file names of a ``config.txt``'s ``kernel=`` lines, in order."""
    return [m.group(1).strip() for line in lines if (m := _KERNEL_LINE.match(line))]


STYLE = RaspberryPi()

"""``rpi5``: Raspberry Pi 5 / Pi 500 / CM5 (BCM2712) EEPROM network boot.

The same EEPROM TFTP client and ``TFTP_PREFIX`` rules as the Pi 4, but the
bootloader has no VideoCore firmware stage: it reads ``config.txt`` itself,
then the device tree (``bcm2712-rpi-5-b.dtb``, ``bcm2712-rpi-500.dtb``,
``bcm2712-rpi-cm5*.dtb``, ``bcm2712d0-*``), ``overlays/``, the kernel named
by ``kernel=`` (default ``kernel_2712.img``), ``cmdline.txt`` and the
initramfs (Raspberry Pi documentation, "Raspberry Pi 5 boot" and
"config.txt: kernel").  ``start*.elf`` / ``fixup*.dat`` / ``bootcode.bin``
are never served to it.  A ``kernel=`` line among the host's ``config_txt``
names the file the generation's kernel is served as.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Collection, Iterable, Mapping

from .rpi import RaspberryPi

if TYPE_CHECKING:
    from ...config.model import Host

DEFAULT_KERNEL = "kernel_2712.img"


@dataclass(frozen=True)
class RaspberryPi5(RaspberryPi):
    name: str = "rpi5"
    description: str = "Raspberry Pi 5 / Pi 500 / CM5 EEPROM netboot (no start*.elf, kernel_2712.img)"
    firmware_patterns: tuple[str, ...] = ("bcm2712*.dtb", "overlays/*")
    firmware_files: tuple[str, ...] = ("bcm2712-rpi-5-b.dtb",)
    required_files: tuple[str, ...] = ("initrd", "config.txt", "cmdline.txt", "bcm2712-*.dtb")
    dtb_pattern: str = "bcm2712*.dtb"
    boot_files: tuple[str, ...] = ("config.txt",)
    config_base: tuple[str, ...] = ("kernel={kernel}", "initramfs initrd followkernel", "enable_uart=1")

    def kernel_name(self, host: "Host") -> str:
        names = _kernel_lines(host.config_txt)
        return names[-1] if names else DEFAULT_KERNEL   # the last kernel= wins

    def host_problems(self, table: Mapping[str, Any], firmware: Collection[str]) -> Iterable[tuple[str, str]]:
        yield from super().host_problems(table, firmware)
        lines = table.get("config_txt", [])
        if isinstance(lines, list) and all(isinstance(line, str) for line in lines):
            for name in _kernel_lines(lines):
                if not name or "/" in name or not name.isprintable() or name in ("config.txt", "cmdline.txt", "initrd"):
                    yield "config_txt", f"kernel={name} must name a plain file (the generation's kernel is served as it)"


def _kernel_lines(lines) -> list[str]:
    return [line.split("=", 1)[1].strip() for line in lines if line.replace(" ", "").startswith("kernel=")]


STYLE = RaspberryPi5()

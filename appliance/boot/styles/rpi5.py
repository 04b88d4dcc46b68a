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

from .rpi import RaspberryPi


class RaspberryPi5(RaspberryPi):
    """Raspberry Pi 5 EEPROM netboot: as the Pi 4, without start*.elf."""

    name: str = "rpi5"
    description: str = "Raspberry Pi 5 / Pi 500 / CM5 EEPROM netboot (no start*.elf, kernel_2712.img)"
    firmware_patterns: tuple[str, ...] = ("bcm2712*.dtb", "overlays/*")
    firmware_files: tuple[str, ...] = ("bcm2712-rpi-5-b.dtb",)
    required_files: tuple[str, ...] = ("initrd", "config.txt", "cmdline.txt", "bcm2712-*.dtb")
    dtb_pattern: str = "bcm2712*.dtb"
    boot_files: tuple[str, ...] = ("config.txt",)
    config_base: tuple[str, ...] = ("kernel={kernel}", "initramfs initrd followkernel", "enable_uart=1")
    default_kernel: str = "kernel_2712.img"


STYLE = RaspberryPi5()

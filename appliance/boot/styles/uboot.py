"""``uboot``: U-Boot's PXE boot (``pxe get`` / ``pxe boot``, doc/usage/cmd/pxe.rst).

An extlinux/PXE menu ``pxelinux.cfg/01-<mac-with-dashes>`` with one entry
per kept generation, newest first, default = the selected one.  Stock distro
boot (``boot_targets=… dhcp``) ignores the DHCP boot file and first fetches
``boot.scr.uimg`` from the TFTP root: it is served too, resolved per client
(IP → MAC), as a legacy uImage-wrapped script running ``pxe get`` + ``pxe boot``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Collection, Iterable, Mapping

from ...config.values import mac_dashes
from .. import text
from ..tree import Generated, Source
from ..uimage import uimage_script
from .base import BootInputs, DhcpAnswer, DhcpQuery, FixedStyle, generation_dir, require_mac

if TYPE_CHECKING:
    from ...config.model import Host

SCRIPT = "boot.scr.uimg"
MENU_DIR = "pxelinux.cfg/"


class UBoot(FixedStyle):
    """U-Boot distro boot: a pxelinux-style menu and a boot script."""

    name: str = "uboot"
    description: str = "U-Boot PXE menu (pxelinux.cfg/01-<mac>) and boot.scr.uimg for distro boot"
    default_firmware: str | None = None
    firmware_files: tuple[str, ...] = ()
    required_files: tuple[str, ...] = ()
    eeprom_netboot: bool = False
    host_keys: frozenset[str] = frozenset({"menu_timeout"})
    rewrite: str = "U-Boot's pxe would rewrite them (it expands ${…} and $(…) and removes quotes and backslashes)"

    def host_problems(self, table: Mapping[str, Any], firmware: Collection[str]) -> Iterable[tuple[str, str]]:
        yield from require_mac(self.name, table)
        yield from self.cmdline_problems(table)

    def rewritten_words(self, cmdline: str) -> list[str]:
        return text.uboot_rewritten(cmdline)

    def render(self, inputs: BootInputs) -> dict[str, Source]:
        host, selected = inputs.host, inputs.selected
        files: dict[str, Source] = {}
        kept = inputs.generations
        if selected is not None:
            assert host.mac
            files[f"{MENU_DIR}01-{mac_dashes(host.mac)}"] = Generated(
                text.pxelinux_menu(host, selected, kept, host.tftp_prefix))
            script = Generated(uimage_script(text.uboot_script(host), name=f"netboot {host.name}"))
            files[SCRIPT] = script                      # resolved per client (IP → MAC)
            files[host.tftp_prefix + SCRIPT] = script
        for gen in kept:
            files.update(generation_dir(host, gen, inputs.dtbs.get(gen.number, ()), "kernel", cmdline=False))
        return files

    def starts_boot(self, host: "Host", path: str) -> bool:
        # U-Boot's own ``pxe`` boot target fetches the menu without boot.scr.uimg.
        return path in (SCRIPT, host.tftp_prefix + SCRIPT) or path.startswith(MENU_DIR)

    def kernel_paths(self, host: "Host", generation: int) -> set[str]:
        return {f"{host.tftp_prefix}generations/{generation}/kernel"}

    def dhcp_answer(self, host: "Host", query: DhcpQuery) -> DhcpAnswer:
        # U-Boot's DHCP client ignores replies whose yiaddr is 0 (net/bootp.c) and
        # older versions took the first OFFER: a proxy can only get in the way.
        return DhcpAnswer(refusal="U-Boot ignores proxyDHCP replies (yiaddr 0.0.0.0)")


STYLE = UBoot()

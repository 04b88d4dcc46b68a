"""``ipxe``: an iPXE script (``#!ipxe``, ipxe.org/scripting) per host.

``<host-dir>/boot.ipxe`` and ``boot.ipxe`` in the TFTP root (resolved by the
client's IP → MAC) hold a menu of the kept generations with a timeout,
default = the selected one; with the HTTP transport on, kernels and initrds
are loaded over HTTP.

Plain PXE firmware is chain-loaded into iPXE by the proxyDHCP, chosen by
client architecture (option 93, RFC 4578 / IANA "Processor Architecture
Types"): 0 (BIOS) ``undionly.kpxe``, 7 and 9 (x86-64 UEFI) and 11 (arm64
UEFI) ``ipxe.efi``, from the host's ``firmware`` table (the ``ipxe`` package
of its architecture), under its TFTP prefix; ``bios_bootfile`` /
``efi_bootfile`` override the file.  iPXE itself gets ``boot.ipxe`` — never
an iPXE binary again, so no loop.  UEFI HTTP Boot (architectures 16 and 19)
gets the same ``ipxe.efi`` as an ``http://`` URL when HTTP is enabled.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Collection, Iterable, Mapping

from .. import text
from ..tree import Generated, Source, StoreFile
from .base import BootInputs, DhcpAnswer, DhcpQuery, FixedStyle, generation_dir, require_mac

if TYPE_CHECKING:
    from ...config.model import Host

SCRIPT = "boot.ipxe"
PROGRAMS = ("undionly.kpxe", "ipxe.efi", "snponly.efi")   # network boot programs served to PXE firmware
ARCH_BIOS = 0
ARCH_EFI = {7: "x86-64 UEFI", 9: "x86-64 UEFI", 11: "arm64 UEFI", 16: "x86-64 UEFI HTTP", 19: "arm64 UEFI HTTP"}
BIOS_NBP = "undionly.kpxe"
EFI_NBP = "ipxe.efi"


class Ipxe(FixedStyle):
    """iPXE clients: a generated boot script with a menu of generations."""

    name: str = "ipxe"
    description: str = "iPXE script with a menu of generations (boot.ipxe); PXE ROMs chain-load iPXE"
    default_firmware: str | None = None
    firmware_files: tuple[str, ...] = ()
    required_files: tuple[str, ...] = ()
    eeprom_netboot: bool = False
    host_keys: frozenset[str] = frozenset({"menu_timeout", "firmware"})
    rewrite: str = "iPXE would run, drop or expand them in boot.ipxe (a command separator, a comment or a setting)"

    def host_problems(self, table: Mapping[str, Any], firmware: Collection[str]) -> Iterable[tuple[str, str]]:
        yield from require_mac(self.name, table)
        yield from self.cmdline_problems(table)

    def rewritten_words(self, cmdline: str) -> list[str]:
        return text.ipxe_acted_on(cmdline)

    def render(self, inputs: BootInputs) -> dict[str, Source]:
        host, selected = inputs.host, inputs.selected
        files: dict[str, Source] = {}
        kept = inputs.generations
        if selected is not None:
            script = Generated(text.ipxe_script(host, selected, kept, host.tftp_prefix, inputs.http_base))
            files[host.tftp_prefix + SCRIPT] = script
            files[SCRIPT] = script                      # resolved per client (IP → MAC)
            # iPXE itself, for plain PXE / UEFI firmware to chain-load (the host's ``firmware``
            # is the ipxe package of its architecture; nixpkgs and Debian put these at its top).
            for rel, path in inputs.firmware:
                if rel in PROGRAMS:
                    files[host.tftp_prefix + rel] = StoreFile(path)
        for gen in kept:
            files.update(generation_dir(host, gen, inputs.dtbs.get(gen.number, ()), "kernel", cmdline=False))
        return files

    def starts_boot(self, host: "Host", path: str) -> bool:
        return path in (SCRIPT, host.tftp_prefix + SCRIPT)

    def kernel_paths(self, host: "Host", generation: int) -> set[str]:
        return {f"{host.tftp_prefix}generations/{generation}/kernel"}

    def dhcp_answer(self, host: "Host", query: DhcpQuery) -> DhcpAnswer:
        arch = query.arch
        if query.http_boot:
            if arch not in ARCH_EFI:
                return DhcpAnswer(refusal=f"HTTP boot for client architecture {arch} is not supported")
            if query.http_base is None:
                return DhcpAnswer(refusal="UEFI HTTP Boot client, but server.http_listen is not set")
            name = query.efi_bootfile or (host.tftp_prefix + EFI_NBP if host.firmware is not None else None)
            if name is None:
                return DhcpAnswer(refusal="UEFI HTTP Boot client: set the host's firmware (the ipxe package) "
                                          "or dhcp.efi_bootfile")
            return DhcpAnswer(boot_file=f"{query.http_base}/{name.lstrip('/')}")
        bios = arch in (None, ARCH_BIOS)
        skip = bios   # some UEFI firmware drops offers that bypass boot server discovery
        if query.ipxe:
            return DhcpAnswer(boot_file=host.tftp_prefix + SCRIPT, skip_discovery=skip)
        if not bios and arch not in ARCH_EFI:
            return DhcpAnswer(refusal=f"no iPXE binary for client architecture {arch}")
        chain = query.bios_bootfile if bios else query.efi_bootfile
        if chain is None and host.firmware is not None:
            chain = host.tftp_prefix + (BIOS_NBP if bios else EFI_NBP)
        if chain is None:
            which = "bios_bootfile" if bios else "efi_bootfile"
            return DhcpAnswer(refusal=f"firmware is not iPXE (architecture {arch}): set the host's firmware "
                                      f"(the ipxe package) or dhcp.{which}")
        return DhcpAnswer(boot_file=chain, skip_discovery=skip)


STYLE = Ipxe()

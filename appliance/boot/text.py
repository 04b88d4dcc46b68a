"""Generated boot files: pure text from a host and its generations."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..config.model import Host
    from ..nix import Generation


# COMMAND_LINE_SIZE of arm64 and x86 Linux: the kernel silently drops what follows.
MAX_KERNEL_CMDLINE = 2048


def kernel_cmdline(host: Host, gen: Generation) -> str:
    """``init=<toplevel>/init <kernel-params> <host cmdline>``, single spaces."""
    parts = [f"init={gen.init}", *gen.kernel_params, host.cmdline.strip()]
    return " ".join(p for p in parts if p)


def cmdline_txt(host: Host, gen: Generation) -> bytes:
    return (kernel_cmdline(host, gen) + "\n").encode()


def cmdline_too_long(cmdline: str) -> str | None:
    """Why the kernel would cut ``cmdline`` (None: it fits)."""
    size = len(cmdline.encode())
    if size < MAX_KERNEL_CMDLINE:   # the kernel keeps one byte for the terminating NUL
        return None
    return (f"kernel command line is {size} bytes: Linux keeps {MAX_KERNEL_CMDLINE} with the final NUL "
            f"and would drop the rest (the host's cmdline with it)")


def ipxe_acted_on(words: str) -> list[str]:
    """The words of a script line iPXE does not pass on as written (ipxe src/core/exec.c):
    ``||``, ``&&`` and ``;`` end the command and start another, a word starting with ``#``
    comments out the rest, ``${…}`` is replaced by a setting.  No quoting exists."""
    return [w for w in words.split() if w in ("||", "&&", ";") or w.startswith("#") or "${" in w]


def uboot_rewritten(words: str) -> list[str]:
    """The words of a PXE menu ``APPEND`` that U-Boot changes before the kernel sees them: its
    ``pxe`` command runs the line through cli_simple_process_macros(), which expands ``${…}``
    and ``$(…)`` and removes quotes ``'`` and backslashes."""
    return [w for w in words.split() if "${" in w or "$(" in w or "'" in w or "\\" in w]


def _ipxe_display(text: str) -> str:
    """Display text in an iPXE script line: a word iPXE would act on is quoted (and ``${``
    broken), so it is shown, never run."""
    acted_on = set(ipxe_acted_on(text))
    return " ".join(f'"{w.replace("${", "$ {")}"' if w in acted_on else w for w in text.split())


def config_txt(host: Host, base: tuple[str, ...]) -> bytes:
    """A Pi ``config.txt``: the style's ``base`` lines, then the host's own."""
    lines = [f"# netboot-appliance: host {host.name}", *base, *host.config_txt]
    return ("\n".join(lines) + "\n").encode()


def entry_title(gen: Generation) -> str:
    date = time.strftime("%Y-%m-%d %H:%M", time.gmtime(gen.created)) if gen.created else "?"
    label = f" {gen.label}" if gen.label else " NixOS"
    return f"generation {gen.number}:{label} ({date})"


def pxelinux_timeout(seconds: int) -> int:
    """``TIMEOUT`` in tenths of a second; never 0, which syslinux and U-Boot's ``pxe`` read as
    "wait for a key forever" (U-Boot's menu_create(): a zero timeout disables it)."""
    return seconds * 10 if seconds > 0 else 1


def pxelinux_menu(host: Host, selected: Generation, kept: tuple[Generation, ...], host_dir: str) -> bytes:
    """An extlinux/PXE menu for U-Boot's ``pxe`` command, newest first."""
    lines = [
        f"# netboot-appliance: host {host.name}",
        # U-Boot prompts ("Enter choice:") once a top-level MENU line is parsed; without it, and
        # without PROMPT 1, it boots the default with no wait, which is what menu_timeout = 0 asks.
        *([f"MENU TITLE netboot {host.name}"] if host.menu_timeout > 0 else []),
        f"TIMEOUT {pxelinux_timeout(host.menu_timeout)}",
        f"DEFAULT nixos-{selected.number}",
        "",
    ]
    for gen in kept:
        gdir = f"{host_dir}generations/{gen.number}"
        lines += [
            f"LABEL nixos-{gen.number}",
            f"  MENU LABEL {entry_title(gen)}{' (default)' if gen.number == selected.number else ''}",
            f"  LINUX /{gdir}/kernel",
            f"  INITRD /{gdir}/initrd",
        ]
        if gen.dtbs is not None:
            lines.append(f"  FDTDIR /{gdir}/dtbs")
        lines += [f"  APPEND {kernel_cmdline(host, gen)}", ""]
    return "\n".join(lines).encode()


def uboot_script(host: Host) -> str:
    """What ``boot.scr.uimg`` runs: fetch this host's PXE menu and boot it."""
    # bootfile without a '/' makes U-Boot's pxe look in the TFTP root.
    return "\n".join([
        f"echo netboot-appliance: host {host.name}",
        "setenv bootfile boot.scr.uimg",
        "pxe get && pxe boot",
        "echo netboot-appliance: pxe boot failed",
        "",
    ])


def ipxe_script(host: Host, selected: Generation, kept: tuple[Generation, ...], host_dir: str,
                http_base: str | None = None) -> bytes:
    """A ``#!ipxe`` menu of kept generations with a timeout (none for ``menu_timeout = 0``: the
    default boots at once).

    Kernels and initrds are root-relative URIs (fetched the way the script
    came, usually TFTP), or ``http_base`` URLs when the HTTP transport is on:
    iPXE's HTTP moves them over TCP instead of lock-step TFTP blocks.
    """
    lines = ["#!ipxe", f"# netboot-appliance: host {host.name}"]
    if host.menu_timeout == 0:
        # No menu: iPXE's ``choose --timeout 0`` waits for a key forever.
        lines += [f"goto nixos-{selected.number}", ""]
    else:
        lines += [f"menu netboot {host.name}", "item --gap Generations (newest first):"]
        lines += [f"item nixos-{gen.number} {_ipxe_display(entry_title(gen))}" for gen in kept]
        lines += [
            f"choose --default nixos-{selected.number} --timeout {host.menu_timeout * 1000} target"
            f" || goto nixos-{selected.number}",
            "goto ${target}",
            "",
        ]
    for gen in kept:
        gdir = f"{http_base or ''}/{host_dir}generations/{gen.number}"
        lines += [
            f":nixos-{gen.number}",
            f"echo Booting {host.name} NixOS generation {gen.number}",
            f"kernel {gdir}/kernel initrd=initrd {kernel_cmdline(host, gen)}",
            f"initrd --name initrd {gdir}/initrd",
            "boot",
            "",
        ]
    return "\n".join(lines).encode()

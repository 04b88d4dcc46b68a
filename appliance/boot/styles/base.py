"""What every boot style provides, and the pieces several styles share.

A boot style is one module in this package implementing ``BootStyle``; the
registry in ``__init__.py`` is the only list of styles.  Configuration
parsing, tree rendering, trial detection (``starts_boot`` / ``kernel_paths``),
the proxyDHCP answer, the CLI, ``netboot doctor`` and the NixOS module's
option type all read it.
"""

from __future__ import annotations

from dataclasses import FrozenInstanceError, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Collection, Iterable, Mapping, NamedTuple, Protocol, runtime_checkable

from .. import text
from ..tree import Generated, Source, StoreFile

if TYPE_CHECKING:
    from ...config.model import Host
    from ...nix import Generation


@dataclass(frozen=True)
class BootInputs:
    """Everything a tree is rendered from (gathered by ``boot.gather``)."""

    host: "Host"
    selected: "Generation | None"                # what boots by default
    kept: tuple["Generation", ...] = ()          # valid generations, any order
    firmware: tuple[tuple[str, Path], ...] = ()  # (relative path, resolved file)
    dtbs: Mapping[int, tuple[tuple[str, Path], ...]] = field(default_factory=dict)  # per generation
    http_base: str | None = None                 # "http://host:port": iPXE loads kernels and initrds from it

    @property
    def generations(self) -> tuple["Generation", ...]:
        """Kept generations and the selected one, newest first, each once."""
        every = {g.number: g for g in (*self.kept, *((self.selected,) if self.selected else ()))}
        return tuple(sorted(every.values(), key=lambda g: -g.number))


# NamedTuples, not dataclasses: defined at every start, used only by the proxyDHCP.
class DhcpQuery(NamedTuple):
    """What a style's proxyDHCP answer may depend on, read from the request."""

    ipxe: bool                        # the client already runs iPXE (option 175 / user class "iPXE")
    arch: int | None                  # client system architecture (option 93, RFC 4578)
    http_boot: bool = False           # UEFI HTTP Boot (vendor class "HTTPClient", UEFI 2.x §24.7)
    http_base: str | None = None      # "http://address:port" of the HTTP transport, if enabled
    bios_bootfile: str | None = None  # [dhcp] settings for chain-loading iPXE
    efi_bootfile: str | None = None


class DhcpAnswer(NamedTuple):
    """A style's proxyDHCP answer; the DHCP policy encodes it (RFC 2132, PXE 2.1)."""

    boot_file: str | None = None      # BOOTP file field / option 67
    pxe_menu: str | None = None       # option 43 with a one-item PXE boot menu of this description
    skip_discovery: bool = False      # option 43 discovery control 8: boot file is in this offer
    refusal: str = ""                 # why there is no reply (non-empty: stay silent)


class FixedStyle:
    """Base of the style classes: a style's settings are class attributes, its one instance
    (the module's ``STYLE``) is immutable, and instances of one style are equal.

    Not a dataclass: the styles are defined before ``netboot serve`` can answer, and a
    dataclass compiles its generated methods at every start."""

    __slots__ = ()

    def __setattr__(self, name: str, value: object) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}")

    def __eq__(self, other: object) -> bool:
        return True if other.__class__ is self.__class__ else NotImplemented

    def __hash__(self) -> int:
        return hash(self.__class__)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}()"

    # What the style's boot loader does to the kernel command line words ``rewritten_words`` finds.
    rewrite: str = ""

    def rewritten_words(self, cmdline: str) -> list[str]:
        """The words of a kernel command line the boot loader would change before the kernel
        sees them (the boot files carry the line in a script or menu it parses)."""
        return []

    def generation_problems(self, host: "Host", gen: "Generation") -> tuple[str, ...]:
        rewritten = self.rewritten_words(" ".join(gen.kernel_params))
        if rewritten:
            return (f"kernel parameters {', '.join(map(repr, rewritten))}: {self.rewrite}",)
        too_long = text.cmdline_too_long(text.kernel_cmdline(host, gen))
        return (too_long,) if too_long else ()

    def cmdline_problems(self, table: Mapping[str, Any]) -> Iterable[tuple[str, str]]:
        """The host's own ``cmdline``, checked as ``generation_problems`` checks a generation's."""
        cmdline = table.get("cmdline")
        rewritten = self.rewritten_words(cmdline) if isinstance(cmdline, str) else []
        if rewritten:
            yield "cmdline", f"{', '.join(map(repr, rewritten))}: {self.rewrite}"


@runtime_checkable
class BootStyle(Protocol):
    """One way of booting a host: its config, its tree, its boot start and its DHCP answer."""

    name: str                         # the value of a host's ``boot`` key
    description: str                  # one line, for --help, docs and the NixOS option
    default_firmware: str | None      # [firmware.*] table used when the host names none
    firmware_files: tuple[str, ...]   # what that firmware directory must hold (netboot doctor)
    required_files: tuple[str, ...]   # fnmatch patterns under the host's prefix a served tree has (doctor)
    eeprom_netboot: bool              # set up in the board's EEPROM (TFTP_PREFIX, BOOT_ORDER), not by DHCP alone
    host_keys: frozenset[str]         # the host keys only some styles read, which this one does

    def host_problems(self, table: Mapping[str, Any], firmware: Collection[str]) -> Iterable[tuple[str, str]]:
        """(host key, message) for each style-specific problem of a host's config table."""
        ...

    def generation_problems(self, host: "Host", gen: "Generation") -> tuple[str, ...]:
        """Why a valid generation cannot be written into this host's boot files as it is
        (its kernel command line would be changed on the way); empty when it can."""
        ...

    def render(self, inputs: BootInputs) -> dict[str, Source]:
        """The host's files: TFTP path → source (a pure function of ``inputs``)."""
        ...

    def starts_boot(self, host: "Host", path: str) -> bool:
        """Whether a request for ``path`` means the host has started a new boot."""
        ...

    def kernel_paths(self, host: "Host", generation: int) -> set[str]:
        """The TFTP paths of ``generation``'s kernel (a completed fetch is a boot attempt)."""
        ...

    def dhcp_answer(self, host: "Host", query: DhcpQuery) -> DhcpAnswer:
        """The proxyDHCP answer for this host's boot firmware."""
        ...


def generation_dir(host: "Host", gen: "Generation", dtbs: Iterable[tuple[str, Path]],
                   kernel_name: str, cmdline: bool) -> dict[str, Source]:
    """``<host-dir>/generations/<N>/…``: every kept generation stays addressable."""
    assert gen.kernel and gen.initrd
    base = f"{host.tftp_prefix}generations/{gen.number}/"
    files: dict[str, Source] = {base + kernel_name: StoreFile(gen.kernel)}
    if cmdline:
        files[base + "cmdline.txt"] = Generated(text.cmdline_txt(host, gen))
    files[base + "initrd"] = StoreFile(gen.initrd)
    for rel, path in dtbs:
        files[f"{base}dtbs/{rel}"] = StoreFile(path)
    return files


def require_mac(style: str, table: Mapping[str, Any]) -> Iterable[tuple[str, str]]:
    """Styles whose hosts are recognised by MAC (menus per MAC, scripts resolved by IP → MAC)."""
    if "mac" not in table:
        yield "mac", f"missing (a {style} host is recognised by its MAC)"

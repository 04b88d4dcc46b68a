"""The configuration model: frozen dataclasses, already validated."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Mapping

if TYPE_CHECKING:
    from ..boot.styles import BootStyle


@dataclass(frozen=True)
class ListenAddress:
    """A host (name or address) and port to listen on."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class ServerConfig:
    """The ``[server]`` table: directories and listen addresses."""

    state_dir: Path = Path("/var/lib/netboot")
    store_dir: Path = Path("/nix/store")
    tftp_listen: tuple[ListenAddress, ...] = (ListenAddress("0.0.0.0", 69),)
    http_listen: tuple[ListenAddress, ...] = ()          # empty: no HTTP transport
    gcroots_dir: Path | None = Path("/nix/var/nix/gcroots/netboot")
    metrics_listen: ListenAddress | None = None
    # Seconds a TFTP transfer may go without progress before it is abandoned:
    # the Raspberry Pi bootloader allows 30 s per file.
    tftp_give_up_after: float = 30.0


@dataclass(frozen=True)
class IscsiConfig:
    """The ``[iscsi]`` table: whether and where root disks are exported."""

    enable: bool = False
    portals: tuple[ListenAddress, ...] = ()
    target_prefix: str = "iqn.2026-11.lan.netboot"
    # When LIO cannot be opened or the plan applied at start: "fail" (serve exits)
    # or "degraded" (serve TFTP only, report it, retry with backoff).
    on_failure: str = "fail"

    def target_iqn(self, host: str) -> str:
        return f"{self.target_prefix}:{host}"


@dataclass(frozen=True)
class DhcpConfig:
    """The optional proxyDHCP (boot options only, never addresses)."""

    enable: bool = False
    interface: str | None = None        # the LAN interface the Pis / PXE clients are on
    server_address: str | None = None   # the TFTP next-server advertised (siaddr, options 54 and 66)
    bios_bootfile: str | None = None    # ipxe hosts whose firmware is a plain BIOS PXE ROM, e.g. "undionly.kpxe"
    efi_bootfile: str | None = None     # ipxe hosts whose firmware is UEFI PXE, e.g. "ipxe.efi"


@dataclass(frozen=True)
class Firmware:
    """A ``[firmware.NAME]`` table: a directory of Raspberry Pi boot firmware."""

    name: str
    path: Path


@dataclass(frozen=True)
class LunSpec:
    """A host's root disk: a backing file (with its size) or a block device."""

    kind: str  # "file" | "block"
    path: Path
    size: int | None = None  # bytes; required for "file"


@dataclass(frozen=True)
class ChapSpec:
    """CHAP credentials of a host's iSCSI session (secrets stay in files)."""

    user: str
    secret_file: Path
    mutual_user: str | None = None
    mutual_secret_file: Path | None = None


@dataclass(frozen=True)
class HostIscsi:
    """A host's ``iscsi`` table: its initiator name, disk and CHAP."""

    initiator: str
    lun: LunSpec
    chap: ChapSpec | None = None


@dataclass(frozen=True)
class Host:
    """A ``[hosts.NAME]`` table: how a machine is recognised and what it boots."""

    name: str
    boot: "BootStyle"               # one of appliance.boot.styles.STYLES
    profile: Path
    mac: str | None = None          # normalised "dc:a6:32:01:02:03"
    serial: str | None = None       # normalised lower-case hex, 8 digits
    prefix_kind: str = "mac"        # "mac" | "serial" | "literal"
    tftp_prefix: str = ""           # the resolved host directory, "" or ending in "/"
    cmdline: str = ""
    config_txt: tuple[str, ...] = ()
    firmware: str | None = None     # name of a [firmware.*] table (rpi hosts)
    allow_eeprom_update: bool = False
    tftp_access: str = "open"       # "open" | "strict": for routed clients (MAC unknown); CHAP hosts: "strict"
    menu_timeout: int = 5           # seconds, U-Boot / iPXE menus
    trial_confirm_after: float = 120.0
    trial_timeout: float = 900.0
    iscsi: HostIscsi | None = None


@dataclass(frozen=True)
class Config:
    """The whole, checked configuration file."""

    server: ServerConfig = field(default_factory=ServerConfig)
    iscsi: IscsiConfig = field(default_factory=IscsiConfig)
    firmware: Mapping[str, Firmware] = field(default_factory=dict)
    hosts: Mapping[str, Host] = field(default_factory=dict)
    source: Path | None = None
    dhcp: DhcpConfig = field(default_factory=DhcpConfig)

    def host(self, name: str) -> Host:
        from ..errors import UnknownHost
        from .values import did_you_mean

        try:
            return self.hosts[name]
        except KeyError:
            raise UnknownHost(name, list(self.hosts), did_you_mean(name, self.hosts)) from None

    def host_by_mac(self, mac: str) -> Host | None:
        for host in self.hosts.values():
            if host.mac == mac:
                return host
        return None

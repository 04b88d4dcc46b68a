"""proxyDHCP policy: a parsed request and the configuration in, a reply (or nothing) out.

Pure: no sockets, no clock, no logging.  ``decide`` answers only

* Ethernet BOOTREQUESTs from a MAC listed in ``[hosts]``,
* whose vendor class (option 60) starts with ``PXEClient`` — boot firmware
  (the Pi EEPROM, PXE ROMs, iPXE).  An operating system's DHCP client (the
  kernel's ``ip=dhcp``, udhcpc, dhcpcd) on the same MAC sends another vendor
  class and is left alone: some of them accept the first OFFER even when it
  carries no address,
* DHCPDISCOVER on the DHCP port (→ DHCPOFFER) and DHCPREQUEST on the PXE
  boot-server port 4011 (→ DHCPACK).  A DHCPREQUEST on port 67 is addressed
  to the DHCP server that leases the address; a proxy never ACKs it (an ACK
  with yiaddr 0.0.0.0 would configure the client with no address).

Replies never assign an address (yiaddr 0.0.0.0, no lease time).  They carry
siaddr = ``server_address``, option 54 (server id), option 60 ``PXEClient``,
option 66 (TFTP server) as a dotted-quad *string* (the Pi bootloader rejects
a binary address there), the client's UUID (option 97) echoed as PXE
requires, and per boot style:

rpi    option 43 with the PXE menu the Pi bootloader looks for, byte for byte
       what dnsmasq sends for ``pxe-service=0,"Raspberry Pi Boot"``
       (discovery control 3, menu prompt, menu item type 0); no boot file.
ipxe   iPXE itself (option 175 present, or user class "iPXE") gets
       ``<tftp_prefix>boot.ipxe`` — never an iPXE binary again, so no loop.
       Plain PXE firmware is chain-loaded into iPXE, chosen by client
       architecture (option 93, RFC 4578 / IANA "Processor Architecture
       Types"): 0 (BIOS) ``undionly.kpxe``, 7 and 9 (x86-64 UEFI) and 11
       (arm64 UEFI) ``ipxe.efi``, from the host's ``firmware`` table (the
       ``ipxe`` package of the host's architecture), under its TFTP prefix;
       ``bios_bootfile`` / ``efi_bootfile`` override the file.  UEFI HTTP
       Boot (vendor class ``HTTPClient``, architectures 16 and 19) gets the
       same ``ipxe.efi`` as an ``http://`` URL and vendor class
       ``HTTPClient`` back (UEFI 2.x §24.7), when HTTP is enabled.
uboot  no reply: U-Boot's DHCP client ignores replies whose yiaddr is 0
       (net/bootp.c), and older U-Boots took the first OFFER — a proxy can
       only get in the way.  Give U-Boot next-server from the router or set
       ``serverip``.

``seen_lease`` is the other half: the (IP, MAC) a configured client has
taken, for host resolution of unprefixed TFTP paths (SPEC §6, "a lease seen
by the proxyDHCP").  A proxy never sees the router's ACK (it goes to port 68),
so the evidence is what the client itself says: the requested address
(option 50) of its broadcast DHCPREQUEST, its ``ciaddr``, or the source address
of a request to port 4011 (the client has its address by then).  Like the
kernel neighbour table, this trusts the LAN: a host that spoofs a configured
MAC can claim any address.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from ..boot.render import IPXE_SCRIPT
from ..config.model import BootStyle, Config, DhcpConfig, Host
from . import packet as p

__all__ = [
    "DHCP_PORT", "PXE_PORT", "PI_VENDOR_OPTIONS", "PXE_BYPASS_DISCOVERY",
    "Decision", "decide", "seen_lease", "is_ipxe",
]

DHCP_PORT = 67
PXE_PORT = 4011

# PXE vendor sub-options (PXE 2.1 §2.4.2 / dnsmasq's SUBOPT_PXE_*).
PXE_DISCOVERY_CONTROL = 6
PXE_BOOT_MENU = 9
PXE_MENU_PROMPT = 10

# dnsmasq's option 43 for a lone ``pxe-service=0,"Raspberry Pi Boot"``: discovery
# control 3 (no broadcast / multicast discovery), prompt with timeout 0 "PXE",
# one menu item of type 0 (local boot) with the description the Pi checks for.
_PI_MENU = b"Raspberry Pi Boot"
PI_VENDOR_OPTIONS = p.encode_suboptions([
    (PXE_DISCOVERY_CONTROL, b"\x03"),
    (PXE_MENU_PROMPT, b"\x00PXE"),
    (PXE_BOOT_MENU, b"\x00\x00" + bytes((len(_PI_MENU),)) + _PI_MENU),
])
# Discovery control 8: "boot file name in this offer; skip boot server discovery".
PXE_BYPASS_DISCOVERY = p.encode_suboptions([(PXE_DISCOVERY_CONTROL, b"\x08")])

_PXE_CLIENT = b"PXEClient"
_HTTP_CLIENT = b"HTTPClient"

# Client system architectures (option 93) → the iPXE binary that chain-loads.
ARCH_BIOS = 0
ARCH_EFI = {7: "x86-64 UEFI", 9: "x86-64 UEFI", 11: "arm64 UEFI", 16: "x86-64 UEFI HTTP", 19: "arm64 UEFI HTTP"}
BIOS_NBP = "undionly.kpxe"
EFI_NBP = "ipxe.efi"


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do with one request: ``reply`` (or None) and why, for logs and counters."""

    reply: p.DhcpPacket | None
    reason: str
    host: str | None = None


def is_ipxe(request: p.DhcpPacket) -> bool:
    user_class = request.option(p.OPT_USER_CLASS) or b""
    return request.option(p.OPT_IPXE_ENCAP) is not None or b"iPXE" in user_class


def _arch(request: p.DhcpPacket) -> int | None:
    raw = request.option(p.OPT_CLIENT_ARCH)
    return int.from_bytes(raw[:2], "big") if raw is not None and len(raw) >= 2 else None


def decide(request: p.DhcpPacket, config: Config, port: int = DHCP_PORT) -> Decision:
    """The reply to ``request`` received on ``port`` (67 or 4011), or why there is none."""
    settings = config.dhcp
    if settings.server_address is None:
        return Decision(None, "no server_address configured")
    if request.op != p.BOOTREQUEST:
        return Decision(None, "not a BOOTREQUEST")
    mac = request.mac
    if mac is None:
        return Decision(None, "not an Ethernet client")
    kind = request.message_type
    if port == PXE_PORT:
        if kind not in (p.DHCPREQUEST, p.DHCPINFORM):
            return Decision(None, f"message type {kind} on the PXE port")
        reply_kind = p.DHCPACK
    else:
        if kind != p.DHCPDISCOVER:
            return Decision(None, "not a DHCPDISCOVER" if kind is not None else "not DHCP")
        reply_kind = p.DHCPOFFER
    host = config.host_by_mac(mac)
    if host is None:
        return Decision(None, f"unknown MAC {mac}")
    vendor_class = request.option(p.OPT_VENDOR_CLASS) or b""
    http_boot = vendor_class.startswith(_HTTP_CLIENT)
    if not (vendor_class.startswith(_PXE_CLIENT) or http_boot):
        return Decision(None, "not PXE firmware (vendor class is not PXEClient or HTTPClient)", host.name)

    if http_boot:
        boot_file, vendor, refusal = _http_boot_choice(request, host, config)
    else:
        boot_file, vendor, refusal = _boot_choice(request, host, settings)
    if refusal:
        return Decision(None, refusal, host.name)
    file = (boot_file or "").encode("utf-8")
    if len(file) > 127:
        return Decision(None, f"boot file {boot_file!r} does not fit the 128-byte BOOTP file field", host.name)

    options: list[tuple[int, bytes]] = [
        (p.OPT_MESSAGE_TYPE, bytes((reply_kind,))),
        (p.OPT_SERVER_ID, ipaddress.IPv4Address(settings.server_address).packed),
        (p.OPT_VENDOR_CLASS, _HTTP_CLIENT if http_boot else _PXE_CLIENT),
    ]
    uuid = request.option(p.OPT_CLIENT_UUID)
    if uuid is not None:
        options.append((p.OPT_CLIENT_UUID, uuid))
    options.append((p.OPT_TFTP_SERVER, settings.server_address.encode("ascii")))
    if vendor:
        options.append((p.OPT_VENDOR_SPECIFIC, vendor))
    reply = p.DhcpPacket(
        op=p.BOOTREPLY,
        xid=request.xid,
        chaddr=request.chaddr,
        htype=request.htype,
        hlen=request.hlen,
        flags=request.flags,
        ciaddr=request.ciaddr if port == PXE_PORT else "0.0.0.0",
        yiaddr="0.0.0.0",
        siaddr=settings.server_address,
        giaddr=request.giaddr,
        file=file,
        options=tuple(options),
    )
    return Decision(reply, f"{host.boot.value} host: {'offer' if reply_kind == p.DHCPOFFER else 'ack'}"
                    + (f" {boot_file}" if boot_file else ""), host.name)


def _boot_choice(request: p.DhcpPacket, host: Host, settings: DhcpConfig) -> tuple[str | None, bytes, str]:
    """(boot file or None, option 43 or b"", why there is no reply or "")."""
    if host.boot == BootStyle.RPI:
        return None, PI_VENDOR_OPTIONS, ""
    if host.boot == BootStyle.UBOOT:
        return None, b"", "U-Boot ignores proxyDHCP replies (yiaddr 0.0.0.0)"
    arch = _arch(request)
    bios = arch in (None, ARCH_BIOS)
    vendor = PXE_BYPASS_DISCOVERY if bios else b""   # some UEFI firmware drops offers that bypass discovery
    if is_ipxe(request):
        return host.tftp_prefix + IPXE_SCRIPT, vendor, ""
    if not bios and arch not in ARCH_EFI:
        return None, b"", f"no iPXE binary for client architecture {arch}"
    chain = settings.bios_bootfile if bios else settings.efi_bootfile
    if chain is None and host.firmware is not None:
        chain = host.tftp_prefix + (BIOS_NBP if bios else EFI_NBP)
    if chain is None:
        which = "bios_bootfile" if bios else "efi_bootfile"
        return None, b"", (f"firmware is not iPXE (architecture {arch}): set the host's firmware "
                           f"(the ipxe package) or dhcp.{which}")
    return chain, vendor, ""


def _http_boot_choice(request: p.DhcpPacket, host: Host, config: Config) -> tuple[str | None, bytes, str]:
    """UEFI HTTP Boot: ``ipxe.efi`` by URL from the HTTP transport."""
    arch = _arch(request)
    if arch not in ARCH_EFI:
        return None, b"", f"HTTP boot for client architecture {arch} is not supported"
    base = http_url_base(config)
    if base is None:
        return None, b"", "UEFI HTTP Boot client, but server.http_listen is not set"
    name = config.dhcp.efi_bootfile or (host.tftp_prefix + EFI_NBP if host.firmware is not None else None)
    if name is None:
        return None, b"", "UEFI HTTP Boot client: set the host's firmware (the ipxe package) or dhcp.efi_bootfile"
    return f"{base}/{name.lstrip('/')}", b"", ""


def http_url_base(config: Config) -> str | None:
    """``http://address:port`` of the HTTP transport as clients on the proxy's LAN reach it."""
    if not config.server.http_listen:
        return None
    listen = config.server.http_listen[0]
    host = listen.host
    if ipaddress.ip_address(host).is_unspecified:
        host = config.dhcp.server_address or ""
    elif ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{listen.port}" if host else None


def _usable(ip: str) -> bool:
    addr = ipaddress.IPv4Address(ip)
    return not (addr.is_unspecified or addr.is_multicast or addr.is_loopback or addr.is_reserved
                or ip == "255.255.255.255")


def seen_lease(request: p.DhcpPacket, config: Config, port: int = DHCP_PORT,
               source_ip: str | None = None) -> tuple[str, str] | None:
    """(ip, mac) when a configured client's request shows the address it has taken."""
    if request.op != p.BOOTREQUEST or request.message_type not in (p.DHCPREQUEST, p.DHCPINFORM):
        return None
    mac = request.mac
    if mac is None or config.host_by_mac(mac) is None:
        return None
    candidates = []
    requested = request.option(p.OPT_REQUESTED_IP)
    if requested is not None and len(requested) == 4:
        candidates.append(str(ipaddress.IPv4Address(requested)))
    candidates.append(request.ciaddr)
    if port == PXE_PORT and source_ip:
        candidates.append(source_ip)
    for ip in candidates:
        try:
            if _usable(ip):
                return ip, mac
        except ValueError:
            continue
    return None

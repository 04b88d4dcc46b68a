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
requires (only a well-formed one: type 0 and 16 bytes), and what the host's
boot style answers (``BootStyle.dhcp_answer``, ``appliance/boot/styles``):

* a PXE menu (the Pi bootloaders): option 43 byte for byte what dnsmasq
  sends for ``pxe-service=0,"Raspberry Pi Boot"`` (discovery control 3, menu
  prompt, menu item type 0); no boot file;
* a boot file (iPXE's script, or an iPXE binary for PXE firmware to
  chain-load, or its ``http://`` URL for UEFI HTTP Boot), with option 43
  discovery control 8 ("boot file in this offer") for BIOS clients;
* no reply, and why (U-Boot ignores proxy offers: give it next-server from
  the router or set ``serverip``).

UEFI HTTP Boot clients (vendor class ``HTTPClient``) get vendor class
``HTTPClient`` back (UEFI 2.x §24.7).

``seen_lease`` is the other half: the (IP, MAC) a configured client has
taken, for host resolution of unprefixed TFTP paths (a client whose
neighbour entry is gone is still recognised).  A proxy never sees the router's ACK (it goes to port 68),
so the evidence is what the client itself says: the requested address
(option 50) of its broadcast DHCPREQUEST, its ``ciaddr``, or the source address
of a request to port 4011 (the client has its address by then).  Like the
kernel neighbour table, this trusts the LAN: a host that spoofs a configured
MAC can claim any address.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from ..boot.gather import http_base_url
from ..boot.styles import DhcpAnswer, DhcpQuery
from ..config.model import Config
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



def pxe_menu_options(description: str) -> bytes:
    """dnsmasq's option 43 for a lone ``pxe-service=0,"<description>"``: discovery
    control 3 (no broadcast / multicast discovery), prompt with timeout 0 "PXE",
    one menu item of type 0 (local boot) with the description (the Pi checks it)."""
    item = description.encode()
    return p.encode_suboptions([
        (PXE_DISCOVERY_CONTROL, b"\x03"),
        (PXE_MENU_PROMPT, b"\x00PXE"),
        (PXE_BOOT_MENU, b"\x00\x00" + bytes((len(item),)) + item),
    ])


PI_VENDOR_OPTIONS = pxe_menu_options("Raspberry Pi Boot")
# Discovery control 8: "boot file name in this offer; skip boot server discovery".
PXE_BYPASS_DISCOVERY = p.encode_suboptions([(PXE_DISCOVERY_CONTROL, b"\x08")])

_PXE_CLIENT = b"PXEClient"
_HTTP_CLIENT = b"HTTPClient"


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do with one request: ``reply`` (or None) and why, for logs and counters.

    ``reason`` may quote what the client sent (its architecture, say); ``outcome`` never does
    (a fixed phrase, or the reply with the boot file the configuration chose), so it can key
    log throttling."""

    reply: p.DhcpPacket | None
    reason: str
    host: str | None = None
    outcome: str = "ignored"


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
        return Decision(None, "not PXE firmware (vendor class is not PXEClient or HTTPClient)", host.name,
                        "not PXE firmware")

    answer = host.boot.dhcp_answer(host, DhcpQuery(
        ipxe=is_ipxe(request), arch=_arch(request), http_boot=http_boot, http_base=http_base_url(config),
        bios_bootfile=settings.bios_bootfile, efi_bootfile=settings.efi_bootfile))
    if answer.refusal:
        return Decision(None, answer.refusal, host.name, "refused by the boot style")
    boot_file, vendor = answer.boot_file, _vendor_options(answer)
    file = (boot_file or "").encode("utf-8")
    if len(file) > 127:
        return Decision(None, f"boot file {boot_file!r} does not fit the 128-byte BOOTP file field", host.name,
                        "boot file too long")

    options: list[tuple[int, bytes]] = [
        (p.OPT_MESSAGE_TYPE, bytes((reply_kind,))),
        (p.OPT_SERVER_ID, ipaddress.IPv4Address(settings.server_address).packed),
        (p.OPT_VENDOR_CLASS, _HTTP_CLIENT if http_boot else _PXE_CLIENT),
    ]
    uuid = request.option(p.OPT_CLIENT_UUID)
    if uuid is not None and len(uuid) == 17 and uuid[0] == 0:
        # Type 0 and a 16-byte GUID (RFC 4578 §2.3), echoed as PXE requires; anything else is
        # not a machine identifier, and echoing it could grow the reply past what clients accept.
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
    # The boot file comes from the configuration (one of a few per host): it may key the log.
    reason = f"{host.boot.name} host: {'offer' if reply_kind == p.DHCPOFFER else 'ack'}" + (
        f" {boot_file}" if boot_file else "")
    return Decision(reply, reason, host.name, reason)


def _vendor_options(answer: DhcpAnswer) -> bytes:
    """Option 43 for a style's answer (PXE 2.1 vendor sub-options), or b""."""
    if answer.pxe_menu is not None:
        return pxe_menu_options(answer.pxe_menu)
    return PXE_BYPASS_DISCOVERY if answer.skip_discovery else b""


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

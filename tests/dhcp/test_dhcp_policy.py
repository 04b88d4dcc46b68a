"""proxyDHCP policy: who gets a reply, and what it carries (pure, no sockets)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.dhcp import BOOTP, DHCP

from appliance.dhcp import packet as p
from appliance.dhcp.policy import (DHCP_PORT, PXE_BYPASS_DISCOVERY, PXE_PORT, decide,
                                   seen_lease)
from appliance.dhcp.server import reply_destination

from .helpers import (BOARD_MAC, PC_MAC, PI_MAC, PI_UUID, SERVER, STRANGER_MAC, config, mac_bytes, pi_discover,
                      request)

IPXE = ((p.OPT_IPXE_ENCAP, b"\x13\x01\x01"), (p.OPT_USER_CLASS, b"iPXE"))


def test_unknown_mac_gets_no_reply():
    d = decide(request(STRANGER_MAC), config())
    assert d.reply is None and "unknown MAC" in d.reason and d.host is None


def test_the_pi_gets_the_raspberry_pi_boot_menu_and_a_dotted_quad_tftp_server():
    req = pi_discover(flags=0x8000)
    d = decide(req, config())
    r = d.reply
    assert r is not None and d.host == "pi"
    assert r.op == p.BOOTREPLY and r.message_type == p.DHCPOFFER
    assert r.yiaddr == "0.0.0.0" and r.ciaddr == "0.0.0.0"
    assert r.siaddr == SERVER
    assert r.xid == req.xid and r.chaddr == req.chaddr and r.flags == 0x8000
    assert r.option(p.OPT_SERVER_ID) == bytes(int(x) for x in SERVER.split("."))
    assert r.option(p.OPT_VENDOR_CLASS) == b"PXEClient"
    assert r.option(p.OPT_TFTP_SERVER) == SERVER.encode("ascii")       # a string, not 4 bytes
    assert r.option(p.OPT_CLIENT_UUID) == PI_UUID                      # echoed
    assert r.file == b""
    assert r.option(51) is None                                         # no lease
    vendor = r.option(p.OPT_VENDOR_SPECIFIC)
    assert b"Raspberry Pi Boot" in vendor
    # exactly dnsmasq's option 43 for pxe-service=0,"Raspberry Pi Boot"
    assert vendor == bytes.fromhex("060103" "0a0400505845" "0914" "0000" "11") + b"Raspberry Pi Boot" + b"\xff"
    sub = dict(p.parse_suboptions(vendor))
    assert sub[6] == b"\x03" and sub[10] == b"\x00PXE" and sub[9] == b"\x00\x00\x11Raspberry Pi Boot"


@pytest.mark.parametrize("uuid", [b"\x00" * 3000, b"\x00" + bytes(15), b"\x01" + bytes(16), b""],
                         ids=["3000-bytes", "16-bytes", "type-1", "empty"])
def test_a_malformed_client_uuid_is_not_echoed(uuid):
    """Option 97 is type 0 plus a 16-byte GUID (RFC 4578 §2.3); anything else is not sent back,
    so a client cannot make a reply larger than the 576 bytes every DHCP client accepts (RFC 2131 §2)."""
    req = request(PI_MAC, extra=((p.OPT_CLIENT_NDI, b"\x01\x02\x01"), (p.OPT_CLIENT_UUID, uuid)))
    reply = decide(req, config()).reply
    assert reply is not None and reply.option(p.OPT_CLIENT_UUID) is None
    assert len(p.encode_packet(reply)) <= 576


def test_the_pi_offer_reads_the_same_in_scapy():
    raw = p.encode_packet(decide(pi_discover(), config()).reply)
    s = BOOTP(raw)
    assert s.yiaddr == "0.0.0.0" and s.siaddr == SERVER
    opts = {o[0]: o[1] for o in s[DHCP].options if isinstance(o, tuple)}
    assert opts["message-type"] == 2
    assert opts["tftp_server_name"] == SERVER.encode()
    assert b"Raspberry Pi Boot" in opts["vendor_specific"]


def test_an_os_dhcp_client_on_a_configured_mac_is_left_alone():
    for vendor in (None, b"udhcp 1.35.0", b"Linux ipconfig", b"dhcpcd-9.4.1"):
        d = decide(request(PI_MAC, vendor=vendor), config())
        assert d.reply is None and "PXEClient" in d.reason and d.host == "pi"


def test_ipxe_gets_its_script_by_host_prefix():
    d = decide(request(PC_MAC, extra=IPXE), config())
    r = d.reply
    assert r is not None and r.file == b"52-54-00-ab-cd-ef/boot.ipxe"
    assert r.option(p.OPT_VENDOR_SPECIFIC) == PXE_BYPASS_DISCOVERY
    assert r.option(p.OPT_TFTP_SERVER) == SERVER.encode() and r.siaddr == SERVER and r.yiaddr == "0.0.0.0"
    # user class alone also marks iPXE
    assert decide(request(PC_MAC, extra=((p.OPT_USER_CLASS, b"iPXE"),)), config()).reply.file.endswith(b"boot.ipxe")


def test_a_plain_pxe_rom_chainloads_ipxe_only_when_configured():
    d = decide(request(PC_MAC, arch=0), config())
    assert d.reply is None and "bios_bootfile" in d.reason
    r = decide(request(PC_MAC, arch=0), config(bios_bootfile="undionly.kpxe")).reply
    assert r.file == b"undionly.kpxe" and r.option(p.OPT_VENDOR_SPECIFIC) == PXE_BYPASS_DISCOVERY
    # UEFI (architecture 7): efi_bootfile, and no discovery-control option
    assert decide(request(PC_MAC, arch=7), config(bios_bootfile="undionly.kpxe")).reply is None
    r = decide(request(PC_MAC, arch=7), config(efi_bootfile="ipxe.efi")).reply
    assert r.file == b"ipxe.efi" and r.option(p.OPT_VENDOR_SPECIFIC) is None


def test_uboot_hosts_get_no_reply():
    d = decide(request(BOARD_MAC), config())
    assert d.reply is None and "U-Boot" in d.reason


def test_request_on_the_dhcp_port_is_not_acked_but_shows_the_lease():
    req = request(PI_MAC, kind=p.DHCPREQUEST, extra=((p.OPT_REQUESTED_IP, bytes([10, 253, 7, 50])),
                                                      (p.OPT_SERVER_ID, bytes([10, 253, 7, 254]))))
    assert decide(req, config()).reply is None
    assert seen_lease(req, config()) == ("10.253.7.50", PI_MAC)


def test_request_on_the_pxe_port_is_acked():
    req = request(PC_MAC, kind=p.DHCPREQUEST, extra=IPXE, ciaddr="10.253.7.60")
    r = decide(req, config(), PXE_PORT).reply
    assert r.message_type == p.DHCPACK and r.ciaddr == "10.253.7.60" and r.yiaddr == "0.0.0.0"
    assert r.file.endswith(b"boot.ipxe")
    assert seen_lease(req, config(), PXE_PORT, "10.253.7.60") == ("10.253.7.60", PC_MAC)
    # a DISCOVER on the PXE port is not answered
    assert decide(request(PC_MAC, extra=IPXE), config(), PXE_PORT).reply is None


def test_leases_only_for_configured_macs_and_real_addresses():
    cfg = config()
    assert seen_lease(request(STRANGER_MAC, kind=p.DHCPREQUEST, ciaddr="10.0.0.5"), cfg) is None
    assert seen_lease(request(PI_MAC, kind=p.DHCPDISCOVER, ciaddr="10.0.0.5"), cfg) is None
    assert seen_lease(request(PI_MAC, kind=p.DHCPREQUEST), cfg) is None          # no address in it
    assert seen_lease(request(PI_MAC, kind=p.DHCPREQUEST, extra=((50, b"\0\0\0\0"),)), cfg) is None
    assert seen_lease(request(PI_MAC, kind=p.DHCPREQUEST, extra=((50, b"\1\2"),), ciaddr="10.0.0.5"), cfg) == \
        ("10.0.0.5", PI_MAC)
    assert seen_lease(request(PI_MAC, kind=p.DHCPREQUEST), cfg, PXE_PORT, "10.0.0.6") == ("10.0.0.6", PI_MAC)


def test_no_reply_when_the_proxy_is_not_configured():
    from appliance.config.parse import parse_config

    cfg = parse_config({"hosts": {"pc": {"boot": "ipxe", "mac": PC_MAC, "profile": "/p"}}})
    assert decide(request(PC_MAC, extra=IPXE), cfg).reply is None


def test_not_a_request_or_not_ethernet():
    assert decide(p.DhcpPacket(op=p.BOOTREPLY, xid=1, chaddr=mac_bytes(PI_MAC)), config()).reply is None
    assert decide(request(PI_MAC, kind=p.DHCPINFORM), config()).reply is None
    token_ring = request(PI_MAC)
    assert decide(p.DhcpPacket(**{**{f: getattr(token_ring, f) for f in token_ring.__slots__}, "htype": 6}),
                  config()).reply is None


@pytest.mark.parametrize("fields, port, source, expected", [
    ({}, DHCP_PORT, ("0.0.0.0", 68), ("255.255.255.255", 68)),
    ({"flags": 0x8000, "ciaddr": "10.0.0.5"}, DHCP_PORT, ("10.0.0.5", 68), ("255.255.255.255", 68)),
    ({"ciaddr": "10.0.0.5"}, DHCP_PORT, ("10.0.0.5", 68), ("10.0.0.5", 68)),
    ({"giaddr": "10.9.0.1"}, DHCP_PORT, ("10.9.0.1", 67), ("10.9.0.1", 67)),
    ({"ciaddr": "10.0.0.5"}, PXE_PORT, ("10.0.0.5", 68), ("10.0.0.5", 68)),
])
def test_reply_destination(fields, port, source, expected):
    assert reply_destination(request(PI_MAC, **fields), port, source) == expected


_macs = st.sampled_from([PI_MAC, PC_MAC, BOARD_MAC, STRANGER_MAC]).map(mac_bytes)


@settings(max_examples=300)
@given(chaddr=_macs, htype=st.integers(0, 255), hlen=st.integers(0, 16), port=st.sampled_from([DHCP_PORT, PXE_PORT]),
       options=st.lists(st.tuples(st.sampled_from([43, 50, 53, 54, 60, 77, 93, 97, 175, 12]),
                                  st.binary(max_size=40)), max_size=8, unique_by=lambda o: o[0]),
       ciaddr=st.sampled_from(["0.0.0.0", "10.0.0.1", "255.255.255.255", "224.0.0.1"]))
def test_policy_never_raises_on_any_parsed_request(chaddr, htype, hlen, port, options, ciaddr):
    req = p.DhcpPacket(op=1, xid=9, chaddr=chaddr, htype=htype, hlen=hlen, ciaddr=ciaddr, options=tuple(options))
    cfg = config(bios_bootfile="undionly.kpxe")
    d = decide(p.parse_packet(p.encode_packet(req)), cfg, port)
    if d.reply is not None:
        assert d.reply.yiaddr == "0.0.0.0"
        p.encode_packet(d.reply)
    seen_lease(req, cfg, port, "10.0.0.7")


# -- chain-loading iPXE by client architecture ---------------------------------------------

def chain_config(**server):
    from appliance.config.parse import parse_config

    return parse_config({
        "server": server,
        "dhcp": {"enable": True, "interface": "eth0", "server_address": SERVER},
        "firmware": {"ipxe": {"path": "/usr/lib/ipxe"}},
        "hosts": {"pc": {"boot": "ipxe", "mac": PC_MAC, "profile": "/p/pc", "firmware": "ipxe"}},
    })


@pytest.mark.parametrize("arch, wanted", [
    (0, "undionly.kpxe"), (None, "undionly.kpxe"), (7, "ipxe.efi"), (9, "ipxe.efi"), (11, "ipxe.efi"),
])
def test_plain_pxe_firmware_chainloads_the_hosts_ipxe_by_architecture(arch, wanted):
    r = decide(request(PC_MAC, arch=arch, vendor=b"PXEClient:Arch:%05d:UNDI:003016" % (arch or 0)),
               chain_config()).reply
    assert r is not None and r.file == f"52-54-00-ab-cd-ef/{wanted}".encode()
    assert r.option(p.OPT_VENDOR_CLASS) == b"PXEClient" and r.siaddr == SERVER


def test_ipxe_after_chainloading_gets_its_script_never_the_binary_again():
    for arch in (0, 7, 11):
        r = decide(request(PC_MAC, arch=arch, extra=IPXE), chain_config()).reply
        assert r.file == b"52-54-00-ab-cd-ef/boot.ipxe"


def test_unknown_architectures_are_not_chainloaded():
    d = decide(request(PC_MAC, arch=6), chain_config())          # IA32 UEFI: no binary for it
    assert d.reply is None and "architecture 6" in d.reason


def test_uefi_http_boot_gets_an_http_url_and_httpclient_vendor_class():
    http_boot = dict(vendor=b"HTTPClient:Arch:00016:UNDI:003001", arch=16)
    d = decide(request(PC_MAC, **http_boot), chain_config())
    assert d.reply is None and "http_listen" in d.reason
    r = decide(request(PC_MAC, **http_boot), chain_config(http_listen=["0.0.0.0:8080"])).reply
    assert r.file == f"http://{SERVER}:8080/52-54-00-ab-cd-ef/ipxe.efi".encode()
    assert r.option(p.OPT_VENDOR_CLASS) == b"HTTPClient"
    r = decide(request(PC_MAC, **http_boot), chain_config(http_listen=["10.253.7.9:80"])).reply
    assert r.file == b"http://10.253.7.9:80/52-54-00-ab-cd-ef/ipxe.efi"

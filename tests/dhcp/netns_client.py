"""A PXE client on a real interface, run inside the test's network namespace.

    python netns_client.py IFACE PI_MAC STRANGER_MAC SERVER_IP CLIENT_IP LEASE_IP

Sends, with scapy on a raw socket, what a Raspberry Pi 4 bootloader sends
(a broadcast DISCOVER with vendor class PXEClient, architecture 0, UUID), the
same from a MAC no host has, the broadcast DHCPREQUEST a client sends to
the router for LEASE_IP and the Pi's DISCOVER again (xid 5, whose OFFER marks
the end); sniffs every BOOTREPLY.  Then takes CLIENT_IP and
asks the PXE boot-server port 4011 by unicast, from port 68, as iPXE and PXE
ROMs do.  Prints one JSON document; every wait is bounded.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time

from scapy.all import BOOTP, DHCP, IP, UDP, AsyncSniffer, Ether, conf, sendp

conf.verb = 0
iface, pi_mac, stranger_mac, server_ip, client_ip, lease_ip = sys.argv[1:7]
PI_VENDOR = b"PXEClient:Arch:00000:UNDI:002001"


def chaddr(mac: str) -> bytes:
    return bytes.fromhex(mac.replace(":", "")) + bytes(10)


def frame(mac: str, xid: int, options: list) -> Ether:
    return (Ether(src=mac, dst="ff:ff:ff:ff:ff:ff") / IP(src="0.0.0.0", dst="255.255.255.255")
            / UDP(sport=68, dport=67) / BOOTP(op=1, xid=xid, chaddr=chaddr(mac), flags=0x8000)
            / DHCP(options=options + ["end"]))


def describe(pkt) -> dict:
    options = {}
    for opt in pkt[DHCP].options if DHCP in pkt else []:
        if isinstance(opt, tuple):
            key, value = opt[0], opt[1]
            options[str(key)] = value.hex() if isinstance(value, bytes) else value
    return {"xid": pkt[BOOTP].xid, "yiaddr": pkt[BOOTP].yiaddr, "siaddr": pkt[BOOTP].siaddr,
            "file": pkt[BOOTP].file.rstrip(b"\0").decode(), "src": pkt[IP].src, "dst": pkt[IP].dst,
            "eth_dst": pkt[Ether].dst, "dport": pkt[UDP].dport, "options": options, "raw": bytes(pkt[BOOTP]).hex()}


started = threading.Event()
sniffer = AsyncSniffer(iface=iface, store=True, started_callback=started.set,
                       lfilter=lambda k: UDP in k and k[UDP].dport == 68 and BOOTP in k and k[BOOTP].op == 2)
sniffer.start()
if not started.wait(60):        # frames sent before the sniffer listens would have unseen answers
    sys.exit("the sniffer did not start within 60 s")
common = [("vendor_class_id", PI_VENDOR), (93, b"\x00\x00"), (94, b"\x01\x02\x01"),
          ("param_req_list", [1, 3, 43, 60, 66, 67])]
sendp(frame(pi_mac, 1, [("message-type", "discover"), *common, (97, b"\x00" + bytes(range(16)))]), iface=iface)
sendp(frame(stranger_mac, 2, [("message-type", "discover"), *common]), iface=iface)
sendp(frame(pi_mac, 3, [("message-type", "request"), ("requested_addr", lease_ip),
                        ("server_id", server_ip.rsplit(".", 1)[0] + ".254"), *common]), iface=iface)
# A barrier: the server reads port 67 in order, so once the answer to a second DISCOVER is
# seen, any answer to the stranger or to the REQUEST (there should be none) was seen before it.
sendp(frame(pi_mac, 5, [("message-type", "discover"), *common, (97, b"\x00" + bytes(range(16)))]), iface=iface)
deadline = time.monotonic() + 30
while time.monotonic() < deadline and not any(p[BOOTP].xid == 5 for p in list(sniffer.results or [])):
    time.sleep(0.05)
broadcast = [describe(p) for p in sniffer.stop()]

subprocess.run(["ip", "addr", "add", f"{client_ip}/24", "dev", iface], check=True)
ack = None
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
    sock.bind((client_ip, 68))
    sock.settimeout(0.5)
    req = (BOOTP(op=1, xid=4, chaddr=chaddr(pi_mac), ciaddr=client_ip)
           / DHCP(options=[("message-type", "request"), *common, "end"]))
    for _ in range(40):          # the first datagram may wait for ARP; retry, bounded
        sock.sendto(bytes(req), (server_ip, 4011))
        try:
            data, source = sock.recvfrom(2048)
        except socket.timeout:
            continue
        pkt = Ether() / IP(src=source[0], dst=client_ip) / UDP(sport=source[1], dport=68) / BOOTP(data)
        ack = describe(pkt)
        break
print(json.dumps({"broadcast": broadcast, "ack": ack}))

"""The source MAC of each TFTP request, read from the frame it arrived in.

An ``AF_PACKET`` socket with a classic BPF filter (Linux
``Documentation/networking/filter.rst``) that passes only UDP datagrams to
the TFTP listen ports, IPv4 and IPv6, and only their first bytes.  The
kernel hands a frame to packet sockets before the IP layer delivers it to
the UDP socket, so when the TFTP loop reads a request its frame is already
queued here: ``mac_of`` drains the queue without waiting and answers from
the (client address, client port) of the request.
"""

from __future__ import annotations

import ctypes
import socket
import struct
from collections import OrderedDict
from typing import Iterable

ETH_P_ALL = 0x0003
ETH_P_IP = 0x0800
ETH_P_IPV6 = 0x86DD
ARPHRD_ETHER = 1
PACKET_OUTGOING = 4
SO_ATTACH_FILTER = 26
SNAP_BYTES = 96            # Ethernet + the longest IPv4 header + UDP ports
REMEMBERED = 4096          # (address, port) → MAC entries kept
DRAIN_MAX = 4096           # frames read per drain, so a flood cannot hold the loop

# classic BPF opcodes
_LDH_ABS, _LDB_ABS, _LDXB_MSH, _LDH_IND = 0x28, 0x30, 0xB1, 0x48
_JEQ, _JSET, _RET = 0x15, 0x45, 0x06


def udp_port_filter(ports: Iterable[int]) -> list[tuple[int, int, int, int]]:
    """A BPF program (code, jt, jf, k) accepting Ethernet frames of unfragmented
    UDP over IPv4 or IPv6 (no extension headers) to one of ``ports``."""
    ports = sorted(set(ports))
    if not ports:
        raise ValueError("no ports to filter on")
    prog: list[tuple[int, object, object, int]] = []   # jumps as labels, resolved below
    labels: dict[str, int] = {}

    def port_checks() -> None:
        for i, port in enumerate(ports):
            prog.append((_JEQ, "accept", 0 if i < len(ports) - 1 else "drop", port))

    prog.append((_LDH_ABS, 0, 0, 12))                 # EtherType
    prog.append((_JEQ, 0, "ipv6", ETH_P_IP))
    prog.append((_LDB_ABS, 0, 0, 14 + 9))             # IPv4 protocol
    prog.append((_JEQ, 0, "drop", socket.IPPROTO_UDP))
    prog.append((_LDH_ABS, 0, 0, 14 + 6))             # flags + fragment offset
    prog.append((_JSET, "drop", 0, 0x1FFF))           # not the first fragment: no UDP header
    prog.append((_LDXB_MSH, 0, 0, 14))                # X = IPv4 header length
    prog.append((_LDH_IND, 0, 0, 14 + 2))             # UDP destination port
    port_checks()
    labels["ipv6"] = len(prog)
    prog.append((_JEQ, 0, "drop", ETH_P_IPV6))
    prog.append((_LDB_ABS, 0, 0, 14 + 6))             # IPv6 next header
    prog.append((_JEQ, 0, "drop", socket.IPPROTO_UDP))
    prog.append((_LDH_ABS, 0, 0, 14 + 40 + 2))        # UDP destination port
    port_checks()
    labels["accept"] = len(prog)
    prog.append((_RET, 0, 0, SNAP_BYTES))
    labels["drop"] = len(prog)
    prog.append((_RET, 0, 0, 0))

    def offset(at: int, target: object) -> int:
        if isinstance(target, str):
            return labels[target] - at - 1
        return int(target)  # type: ignore[call-overload]

    return [(code, offset(i, jt), offset(i, jf), k) for i, (code, jt, jf, k) in enumerate(prog)]


def request_source(frame: bytes) -> tuple[str, int, str] | None:
    """(source address, source port, source MAC) of an Ethernet frame the filter passed."""
    if len(frame) < 14:
        return None
    mac = frame[6:12].hex(":")
    ethertype = int.from_bytes(frame[12:14], "big")
    if ethertype == ETH_P_IP and len(frame) >= 34:
        ihl = (frame[14] & 0x0F) * 4
        if ihl < 20 or len(frame) < 14 + ihl + 2:
            return None
        ip = socket.inet_ntop(socket.AF_INET, frame[26:30])
        port = int.from_bytes(frame[14 + ihl:16 + ihl], "big")
    elif ethertype == ETH_P_IPV6 and len(frame) >= 56:
        ip = socket.inet_ntop(socket.AF_INET6, frame[22:38])
        port = int.from_bytes(frame[54:56], "big")
    else:
        return None
    return ip, port, mac


class FrameSources:
    """Source MACs of recent TFTP requests, by (client address, client port).

    Needs ``CAP_NET_RAW``; the constructor raises ``OSError`` without it.
    Used from the TFTP thread only.
    """

    def __init__(self, ports: Iterable[int]) -> None:
        program = udp_port_filter(ports)
        self._seen: OrderedDict[tuple[str, int], str] = OrderedDict()
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        try:
            code = b"".join(struct.pack("HBBI", *insn) for insn in program)
            buf = ctypes.create_string_buffer(code, len(code))
            fprog = struct.pack("HL", len(program), ctypes.addressof(buf))
            sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
            sock.setblocking(False)
            # Frames queued before the filter was attached are anything at all.
            self._sock = sock
            self._drain(keep=False)
        except BaseException:
            sock.close()
            raise

    def mac_of(self, ip: str, port: int) -> str | None:
        self._drain()
        return self._seen.get((ip, port))

    def _drain(self, keep: bool = True) -> None:
        seen = self._seen
        for _ in range(DRAIN_MAX):
            try:
                frame, addr = self._sock.recvfrom(SNAP_BYTES)
            except OSError:       # nothing queued (EAGAIN), or a link went away
                return
            if not keep or addr[2] == PACKET_OUTGOING or addr[3] != ARPHRD_ETHER:
                continue
            source = request_source(frame)
            if source is None:
                continue
            key = (source[0], source[1])
            seen[key] = source[2]
            seen.move_to_end(key)
            if len(seen) > REMEMBERED:
                seen.popitem(last=False)

    def close(self) -> None:
        self._sock.close()

"""Legacy U-Boot image (uImage) wrapping of a boot script, as ``mkimage -T script`` makes it.

Pure: lets the appliance serve ``boot.scr.uimg`` without mkimage at run time.
"""

from __future__ import annotations

import struct
import zlib

_MAGIC = 0x27051956
_OS_LINUX = 5
_ARCH = {"arm": 2, "x86": 3, "arm64": 22, "riscv": 26, "x86_64": 24}
_TYPE_SCRIPT = 6
_COMP_NONE = 0


def uimage_script(script: str, name: str = "netboot", arch: str = "arm64", timestamp: int = 0) -> bytes:
    """Header (64 bytes, big-endian, two CRC32s) + multi-file payload (length, 0, script)."""
    body = script.encode()
    payload = struct.pack(">II", len(body), 0) + body
    header = struct.pack(
        ">IIIIIIIBBBB32s",
        _MAGIC, 0, timestamp, len(payload), 0, 0, zlib.crc32(payload),
        _OS_LINUX, _ARCH[arch], _TYPE_SCRIPT, _COMP_NONE, name.encode()[:31],
    )
    header_crc = zlib.crc32(header)
    return header[:4] + struct.pack(">I", header_crc) + header[8:] + payload

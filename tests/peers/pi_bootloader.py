"""The Raspberry Pi 4 and Pi 5 EEPROM bootloaders' TFTP behaviour, over raw UDP sockets.

Reusable by any suite that needs "a Pi netbooting from this server":

    pi = Pi4Bootloader(("127.0.0.1", port), prefix="dc-a6-32-01-02-03/")
    result = pi.boot()            # raises TftpFailure / TimeoutError on a bad server
    result.files["kernel8.img"]   # bytes fetched

    pi5 = Pi5Bootloader(("127.0.0.1", port), prefix="2c-cf-67-01-02-03/")
    result = pi5.boot()           # config.txt decides the kernel and initramfs names

What the real bootloader does, and this emulator repeats:

- probes ``start4.elf`` with ``tsize=0 blksize=1024``, reads the OACK and
  abandons the transfer with ERROR 0 "Early terminate";
- fetches files lock-step with blksize 1024 (a block number rolls over from
  65535 to 0), re-sending its last ACK when data stops coming;
- fires two requests for the same file from different ports at once;
- probes files that usually do not exist (expects ERROR 1, promptly);
- every file must arrive within 30 s.

The Pi 5 (BCM2712) bootloader uses the same TFTP client but has no
VideoCore firmware stage: it probes and reads ``config.txt`` itself, then the
board's device tree, the overlays named by ``dtoverlay=``, ``cmdline.txt``,
the kernel named by ``kernel=`` (default ``kernel_2712.img``) and the
initramfs named by ``initramfs`` (Raspberry Pi documentation, "Raspberry Pi 5
boot" and "config.txt").  ``Pi5Bootloader`` follows that order and reads the
names from the served ``config.txt``, so a config that names a file the
server does not have fails the boot as it would on the board.

The module also provides ``fetch()``, a small strict TFTP read client
(checks block order, TIDs, OACK contents) used by the TFTP tests.  It talks
to whatever address it is given; the tests only use loopback.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field

__all__ = [
    "FetchResult",
    "PI_MISSING_PROBES",
    "PI5_BOOT_FILES",
    "PI5_MISSING_PROBES",
    "Pi4Bootloader",
    "Pi5Bootloader",
    "PiBootResult",
    "TftpFailure",
    "fetch",
    "probe_tsize",
]

PI_MISSING_PROBES = ("pieeprom.sig", "recover4.elf", "recovery.elf", "dt-blob.bin",
                     "bootcfg.txt", "overlays/overlay_map.dtb")
PI_BOOT_FILES = ("start4.elf", "config.txt", "fixup4.dat", "cmdline.txt", "kernel8.img", "initrd")
# Probed before config.txt is read; a server without EEPROM updates answers "not found".
PI5_MISSING_PROBES = ("pieeprom.sig", "recovery.bin", "overlays/overlay_map.dtb")
PI5_BOOT_FILES = ("config.txt", "bcm2712-rpi-5-b.dtb", "cmdline.txt", "kernel_2712.img", "initrd")


class TftpFailure(Exception):
    """The server answered with ERROR (``code``) or broke the protocol (code None)."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class FetchResult:
    data: bytes
    oack: dict[str, str]
    server_tid: tuple[str, int]
    duration: float


def _rrq(path: str, options: dict[str, object], mode: str = "octet") -> bytes:
    parts = [b"\0\1", path.encode(), b"\0", mode.encode(), b"\0"]
    for name, value in options.items():
        parts += [name.encode(), b"\0", str(value).encode(), b"\0"]
    return b"".join(parts)


def _ack(block: int) -> bytes:
    return b"\0\4" + (block & 0xFFFF).to_bytes(2, "big")


def _error(code: int, message: str) -> bytes:
    return b"\0\5" + code.to_bytes(2, "big") + message.encode() + b"\0"


def _parse_oack(body: bytes) -> dict[str, str]:
    fields = body.split(b"\0")
    if fields and fields[-1] == b"":
        fields.pop()
    if len(fields) % 2:
        raise TftpFailure(f"malformed OACK {body!r}")
    return {fields[i].decode().lower(): fields[i + 1].decode() for i in range(0, len(fields), 2)}


def _open_socket(server: tuple[str, int]) -> socket.socket:
    family = socket.AF_INET6 if ":" in server[0] else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.bind(("::1" if family == socket.AF_INET6 else "127.0.0.1", 0) if server[0] in ("127.0.0.1", "::1")
              else ("", 0))
    return sock


def fetch(server: tuple[str, int], path: str, *, blksize: int | None = None, tsize: bool = False,
          windowsize: int | None = None, options: dict[str, object] | None = None,
          mode: str = "octet", timeout: float = 1.0, total_timeout: float = 30.0,
          early_terminate: bool = False, sock: socket.socket | None = None) -> FetchResult:
    """Read ``path``; returns the data (or, with ``early_terminate``, stops at the OACK).

    Raises ``TftpFailure`` for ERROR packets and protocol violations,
    ``TimeoutError`` when the file does not arrive within ``total_timeout``.
    """
    opts: dict[str, object] = dict(options or {})
    if tsize:
        opts["tsize"] = 0
    if blksize is not None:
        opts["blksize"] = blksize
    if windowsize is not None:
        opts["windowsize"] = windowsize
    own_socket = sock is None
    sock = sock or _open_socket(server)
    started = time.monotonic()
    deadline = started + total_timeout
    try:
        request = _rrq(path, opts, mode)
        last_sent = request
        sock.sendto(request, server)
        tid: tuple[str, int] | None = None
        expected = 1
        size = blksize if blksize is not None else 512
        window = 1
        oack: dict[str, str] = {}
        chunks: list[bytes] = []
        since_ack = 0
        reacked_for = 0
        while True:
            now = time.monotonic()
            if now >= deadline:
                raise TimeoutError(f"{path}: not received within {total_timeout} s")
            sock.settimeout(min(timeout, deadline - now))
            try:
                datagram, addr = sock.recvfrom(65536)
            except socket.timeout:
                sock.sendto(last_sent, tid or server)       # lost: re-send our last packet
                continue
            addr = (addr[0], addr[1])
            if tid is None:
                if addr[0] != server[0]:
                    continue
                tid = addr
            elif addr != tid:
                sock.sendto(_error(5, "Unknown transfer ID"), addr)
                continue
            if len(datagram) < 4:
                raise TftpFailure(f"{path}: short datagram {datagram!r}")
            opcode = int.from_bytes(datagram[:2], "big")
            if opcode == 5:
                code = int.from_bytes(datagram[2:4], "big")
                raise TftpFailure(f"{path}: error {code}: {datagram[4:].rstrip(bytes(1)).decode(errors='replace')}",
                                  code)
            if opcode == 6:
                if expected != 1 or chunks:
                    continue                                    # duplicate OACK
                oack = _parse_oack(datagram[2:])
                unknown = set(oack) - set(opts)
                if unknown:
                    raise TftpFailure(f"{path}: OACK has options never requested: {unknown}")
                size = int(oack.get("blksize", 512))
                window = int(oack.get("windowsize", 1))
                if early_terminate:
                    sock.sendto(_error(0, "Early terminate"), tid)
                    return FetchResult(b"", oack, tid, time.monotonic() - started)
                last_sent = _ack(0)
                sock.sendto(last_sent, tid)
                continue
            if opcode != 3:
                raise TftpFailure(f"{path}: unexpected opcode {opcode}")
            if early_terminate and opts:
                raise TftpFailure(f"{path}: DATA instead of OACK")
            block = int.from_bytes(datagram[2:4], "big")
            if block != expected & 0xFFFF:
                # A duplicate or a gap: our ACK was probably lost.  Repeat it, once
                # per gap (as atftp and the Pi do), never as a reply to every block.
                if chunks and reacked_for != expected:
                    reacked_for = expected
                    last_sent = _ack(expected - 1)
                    sock.sendto(last_sent, tid)
                    since_ack = 0
                continue
            payload = datagram[4:]
            if len(payload) > size:
                raise TftpFailure(f"{path}: block {expected} has {len(payload)} bytes > blksize {size}")
            chunks.append(payload)
            expected += 1
            since_ack += 1
            last_block = len(payload) < size
            if last_block or since_ack >= window:
                last_sent = _ack(expected - 1)
                sock.sendto(last_sent, tid)
                since_ack = 0
            if last_block:
                return FetchResult(b"".join(chunks), oack, tid, time.monotonic() - started)
    finally:
        if own_socket:
            sock.close()


def probe_tsize(server: tuple[str, int], path: str, blksize: int = 1024) -> int:
    """The bootloader's size probe: RRQ tsize=0, OACK, ERROR 0 "Early terminate"."""
    result = fetch(server, path, tsize=True, blksize=blksize, early_terminate=True)
    if "tsize" not in result.oack:
        raise TftpFailure(f"{path}: OACK without tsize: {result.oack}")
    return int(result.oack["tsize"])


@dataclass
class PiBootResult:
    files: dict[str, bytes] = field(default_factory=dict)
    tsize: dict[str, int] = field(default_factory=dict)
    durations: dict[str, float] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)


class Pi4Bootloader:
    """Replays a Pi 4 EEPROM netboot against a TFTP server."""

    def __init__(self, server: tuple[str, int], prefix: str = "", blksize: int = 1024,
                 per_file_timeout: float = 30.0, missing_within: float = 2.0) -> None:
        self.server = server
        self.prefix = prefix
        self.blksize = blksize
        self.per_file_timeout = per_file_timeout
        self.missing_within = missing_within    # "file not found" must come this soon

    def get(self, name: str) -> FetchResult:
        return fetch(self.server, self.prefix + name, blksize=self.blksize, tsize=True,
                     total_timeout=self.per_file_timeout)

    def get_parallel(self, name: str, count: int = 2) -> list[FetchResult]:
        """``count`` simultaneous requests for one file, each from its own port."""
        results: list[FetchResult | BaseException | None] = [None] * count

        def run(i: int) -> None:
            try:
                results[i] = self.get(name)
            except BaseException as exc:  # reported to the caller below
                results[i] = exc

        threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(self.per_file_timeout + 5)
        for r in results:
            if isinstance(r, BaseException):
                raise r
            if r is None:
                raise TimeoutError(f"{name}: parallel fetch did not finish")
        return results  # type: ignore[return-value]

    def expect_missing(self, name: str) -> None:
        started = time.monotonic()
        try:
            fetch(self.server, self.prefix + name, blksize=self.blksize, tsize=True,
                  total_timeout=self.per_file_timeout)
        except TftpFailure as exc:
            if exc.code != 1:
                raise
        else:
            raise TftpFailure(f"{name}: expected 'file not found', got the file")
        if time.monotonic() - started > self.missing_within:
            raise TftpFailure(f"{name}: 'file not found' took {time.monotonic() - started:.1f} s")

    def fetch_checked(self, name: str) -> FetchResult:
        got = self.get(name)
        if "tsize" in got.oack and int(got.oack["tsize"]) != len(got.data):
            raise TftpFailure(f"{name}: tsize {got.oack['tsize']} but {len(got.data)} bytes arrived")
        return got

    def start(self, result: PiBootResult, first: str, missing: tuple[str, ...]) -> None:
        """The opening every EEPROM boot shares: a size probe, missing files, a doubled first fetch."""
        result.tsize[first] = probe_tsize(self.server, self.prefix + first, self.blksize)
        for name in missing:
            self.expect_missing(name)
            result.missing.append(name)
        one, two = self.get_parallel(first, 2)
        if one.data != two.data:
            raise TftpFailure(f"{first}: parallel downloads differ")
        result.files[first] = one.data
        result.durations[first] = max(one.duration, two.duration)

    def boot(self, files: tuple[str, ...] = PI_BOOT_FILES,
             missing: tuple[str, ...] = PI_MISSING_PROBES) -> PiBootResult:
        result = PiBootResult()
        self.start(result, files[0], missing)
        for name in files[1:]:
            got = self.fetch_checked(name)
            result.files[name] = got.data
            result.durations[name] = got.duration
        return result


def config_txt_names(text: str) -> tuple[str, str, tuple[str, ...]]:
    """(kernel, initramfs, overlays) a Pi 5 loads for ``config.txt``; the last setting wins."""
    kernel, initramfs, overlays = "kernel_2712.img", "", []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if line.startswith("kernel="):
            kernel = line.split("=", 1)[1].strip()
        elif line.startswith("initramfs "):
            initramfs = line.split()[1]
        elif line.startswith("dtoverlay="):
            name = line.split("=", 1)[1].split(",", 1)[0].strip()
            if name:
                overlays.append(f"overlays/{name}.dtbo")
    return kernel, initramfs, tuple(overlays)


class Pi5Bootloader(Pi4Bootloader):
    """Replays a Pi 5 / Pi 500 / CM5 EEPROM netboot: no start*.elf, config.txt first."""

    def boot(self, board_dtb: str = "bcm2712-rpi-5-b.dtb",  # type: ignore[override]
             missing: tuple[str, ...] = PI5_MISSING_PROBES) -> PiBootResult:
        result = PiBootResult()
        self.start(result, "config.txt", missing)
        kernel, initramfs, overlays = config_txt_names(result.files["config.txt"].decode())
        names = [board_dtb, *overlays, "cmdline.txt", kernel] + ([initramfs] if initramfs else [])
        for name in names:
            got = self.fetch_checked(name)
            result.files[name] = got.data
            result.durations[name] = got.duration
        return result


if __name__ == "__main__":
    import sys

    host, port = sys.argv[1], int(sys.argv[2])
    prefix = sys.argv[3] if len(sys.argv) > 3 else ""
    boot = Pi4Bootloader((host, port), prefix).boot()
    for name, data in boot.files.items():
        print(f"{name}: {len(data)} bytes in {boot.durations[name]:.2f} s")

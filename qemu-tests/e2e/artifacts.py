"""Client boot artifacts built from Debian packages, cached by a hash of their inputs.

Per architecture (``amd64``, ``arm64``):

- the kernel (x86: ``bzImage``; arm64: the uncompressed ``Image``, as NixOS ships it)
  and, for arm64, the Raspberry Pi device trees;
- a small initrd written here (a newc cpio, no root or fakeroot needed): static
  busybox, ``iscsistart`` and the libraries it loads, and the kernel modules for
  the NIC, iSCSI, SCSI disks and ext4, with ``init`` from ``initrd-init``;
- root filesystem images (ext4 from ``mke2fs -d``) whose init scripts print a
  marker naming the generation they were booted with.

Nothing is installed on the host: ``.deb`` files come from ``apt-get download``
and are unpacked with ``dpkg-deb -x``.  Output lives in
``${NETBOOT_CACHE:-~/.cache/netboot-appliance}/e2e/<key>/``.
"""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import hashlib
import json
import os
import re
import shutil
import stat
import struct
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

from lab import package_versions

HERE = Path(__file__).resolve().parent

ARCHES = ("amd64", "arm64")
TRIPLET = {"amd64": "x86_64-linux-gnu", "arm64": "aarch64-linux-gnu"}
# What iscsistart (and libkmod, libcrypto) load; the closure is checked at build time.
LIB_PACKAGES = ("libc6", "libssl3", "libkmod2", "libopeniscsiusr", "liblzma5", "libzstd1", "zlib1g")
USER_PACKAGES = ("busybox-static", "open-iscsi", *LIB_PACKAGES)
COMMON_MODULES = ("virtio_pci", "virtio_net", "af_packet", "iscsi_tcp", "sd_mod", "crc32c_generic", "ext4")
MODULES = {
    "amd64": (*COMMON_MODULES, "crc32c_intel"),
    # raspi3b: dwc2 USB host + QEMU's usb-net (CDC Ethernet / RNDIS)
    "arm64": (*COMMON_MODULES, "phy_generic", "dwc2", "usbnet", "cdc_ether", "rndis_host"),
}
RPI_DTBS = ("bcm2837-rpi-3-b.dtb", "bcm2711-rpi-4-b.dtb", "bcm2711-rpi-400.dtb")


def cache_root() -> Path:
    base = os.environ.get("NETBOOT_CACHE") or os.path.expanduser("~/.cache/netboot-appliance")
    return Path(base) / "e2e"


def _run(argv: Sequence[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(list(argv), check=True, capture_output=True, text=True, **kw)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


# -- apt ---------------------------------------------------------------------------------

def _apt_name(pkg: str, arch: str) -> str:
    return pkg if arch == "amd64" else f"{pkg}:{arch}"


def ensure_arch(arch: str) -> None:
    """arm64 packages need ``dpkg --add-architecture arm64`` and fresh lists."""
    if arch == "amd64":
        return
    foreign = _run(["dpkg", "--print-foreign-architectures"]).stdout.split()
    if arch not in foreign:
        _run(["dpkg", "--add-architecture", arch])
        _run(["apt-get", "update", "-qq"])


def resolve_versions(packages: Sequence[str], arch: str) -> dict[str, str]:
    """name → candidate version (apt-cache), updating the lists once if needed."""
    ensure_arch(arch)
    return package_versions(packages, None if arch == "amd64" else arch)


def kernel_package(arch: str) -> str:
    ensure_arch(arch)
    out = _run(["apt-cache", "depends", _apt_name(f"linux-image-{arch}", arch)]).stdout
    m = re.search(r"Depends:\s*(linux-image-[^\s:]+)", out)
    if not m:
        raise RuntimeError(f"cannot resolve linux-image-{arch}: {out!r}")
    return m.group(1)


def download(debs_dir: Path, versions: dict[str, str], arch: str) -> dict[str, Path]:
    debs_dir.mkdir(parents=True, exist_ok=True)

    def find(pkg: str, version: str) -> Path | None:
        v = version.split(":", 1)[-1]
        for c in debs_dir.glob(f"{pkg}_*_{arch}.deb"):
            rest = c.name[len(pkg) + 1:]
            if rest.startswith(v + "_") or rest.startswith(version.replace(":", "%3a") + "_"):
                return c
        return None

    wanted = [f"{_apt_name(p, arch)}={v}" for p, v in sorted(versions.items()) if find(p, v) is None]
    if wanted:
        with tempfile.TemporaryDirectory(dir=debs_dir) as tmp:
            os.chmod(tmp, 0o755)
            _run(["apt-get", "download", "-qq", *wanted], cwd=tmp)
            for f in Path(tmp).glob("*.deb"):
                os.replace(f, debs_dir / f.name)
    found = {p: find(p, v) for p, v in versions.items()}
    missing = [p for p, d in found.items() if d is None]
    if missing:
        raise RuntimeError(f"apt-get download did not produce {missing} ({arch})")
    return found  # type: ignore[return-value]


# -- ELF: DT_NEEDED without readelf --------------------------------------------------------

def elf_needed(path: Path) -> tuple[list[str], str | None]:
    """(DT_NEEDED sonames, PT_INTERP) of a 64-bit little-endian ELF file."""
    data = path.read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        return [], None
    phoff, = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    loads, dynamic, interp = [], None, None
    for i in range(phnum):
        p_type, _flags, p_offset, p_vaddr, _paddr, p_filesz, _memsz, _align = struct.unpack_from(
            "<IIQQQQQQ", data, phoff + i * phentsize)
        if p_type == 1:
            loads.append((p_vaddr, p_offset, p_filesz))
        elif p_type == 2:
            dynamic = (p_offset, p_filesz)
        elif p_type == 3:
            interp = data[p_offset:p_offset + p_filesz].rstrip(b"\0").decode()
    if dynamic is None:
        return [], interp

    def offset(vaddr: int) -> int:
        for va, off, size in loads:
            if va <= vaddr < va + size:
                return vaddr - va + off
        raise ValueError(f"{path}: address {vaddr:#x} outside the file")

    needed, strtab = [], None
    for i in range(dynamic[1] // 16):
        tag, val = struct.unpack_from("<qQ", data, dynamic[0] + i * 16)
        if tag == 0:
            break
        if tag == 1:
            needed.append(val)
        elif tag == 5:
            strtab = offset(val)
    assert strtab is not None
    names = [data[strtab + n:data.index(b"\0", strtab + n)].decode() for n in needed]
    return names, interp


# -- cpio (newc) ---------------------------------------------------------------------------

class Cpio:
    """A newc archive assembled in memory: files, directories, symlinks, device nodes."""

    def __init__(self) -> None:
        self.entries: dict[str, tuple[int, bytes, int]] = {}   # name → (mode, data, rdev)

    def dir(self, name: str, mode: int = 0o755) -> None:
        parts = name.strip("/").split("/")
        for i in range(1, len(parts) + 1):
            self.entries.setdefault("/".join(parts[:i]), (stat.S_IFDIR | mode, b"", 0))

    def _parent(self, name: str) -> str:
        name = name.strip("/")
        if "/" in name:
            self.dir(name.rsplit("/", 1)[0])
        return name

    def file(self, name: str, data: bytes, mode: int = 0o644) -> None:
        self.entries[self._parent(name)] = (stat.S_IFREG | mode, data, 0)

    def symlink(self, name: str, target: str) -> None:
        self.entries[self._parent(name)] = (stat.S_IFLNK | 0o777, target.encode(), 0)

    def chardev(self, name: str, major: int, minor: int, mode: int = 0o600) -> None:
        self.entries[self._parent(name)] = (stat.S_IFCHR | mode, b"", os.makedev(major, minor))

    def bytes(self) -> bytes:
        out = bytearray()

        def entry(ino: int, name: str, mode: int, data: bytes, rdev: int) -> None:
            nm = name.encode() + b"\0"
            fields = (ino, mode, 0, 0, 2 if stat.S_ISDIR(mode) else 1, 0, len(data), 0, 0,
                      os.major(rdev), os.minor(rdev), len(nm), 0)
            out.extend(b"070701" + b"".join(b"%08X" % f for f in fields))
            out.extend(nm)
            out.extend(b"\0" * (-len(out) % 4))
            out.extend(data)
            out.extend(b"\0" * (-len(out) % 4))

        for ino, name in enumerate(sorted(self.entries), start=1):
            mode, data, rdev = self.entries[name]
            entry(ino, name, mode, data, rdev)
        entry(0, "TRAILER!!!", 0, b"", 0)
        return bytes(out)


# -- the per-architecture build ---------------------------------------------------------------

@dataclass(frozen=True)
class ArchArtifacts:
    arch: str
    kernel: Path
    initrd: Path
    kernel_version: str
    dtbs: dict[str, Path]          # name → file (arm64: Raspberry Pi device trees)
    busybox: Path                  # static busybox for root filesystems
    key: str

    @property
    def kernel_gz(self) -> Path | None:
        p = self.kernel.with_name("kernel.gz")
        return p if p.exists() else None


def _inputs_digest(*extra: object) -> str:
    h = hashlib.sha256()
    for name in ("artifacts.py", "initrd-init"):
        h.update(name.encode() + b"\0" + (HERE / name).read_bytes() + b"\0")
    h.update(json.dumps(extra, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def build_arch(arch: str, cache: Path | None = None, log=print) -> ArchArtifacts:
    cache = cache or cache_root()
    kpkg = kernel_package(arch)
    versions = resolve_versions([kpkg, *USER_PACKAGES], arch)
    key = _inputs_digest(arch, versions, MODULES[arch], RPI_DTBS)
    out = cache / f"{arch}-{key}"
    manifest = out / "manifest.json"
    with _locked(cache / f".lock-{arch}"):
        if not manifest.is_file():
            for stale in cache.glob(f"{arch}-*"):      # earlier inputs: not needed any more
                shutil.rmtree(stale, ignore_errors=True)
            log(f"e2e: building {arch} kernel + initrd ({key})")
            debs = download(cache / "debs", versions, arch)
            tmp = Path(tempfile.mkdtemp(prefix=f"build-{arch}-", dir=cache))
            try:
                info = _assemble(arch, tmp, debs, kpkg)
                (tmp / "out/manifest.json").write_text(json.dumps({**info, "packages": versions, "key": key}, indent=2))
                if out.exists():
                    shutil.rmtree(out)
                os.replace(tmp / "out", out)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            log(f"e2e: {arch}: kernel {(out / 'kernel').stat().st_size >> 10} KiB, "
                f"initrd {(out / 'initrd').stat().st_size >> 10} KiB")
        m = json.loads(manifest.read_text())
    return ArchArtifacts(arch=arch, kernel=out / "kernel", initrd=out / "initrd", kernel_version=m["kernel_version"],
                         dtbs={n: out / "dtbs" / n for n in m["dtbs"]}, busybox=out / "busybox", key=key)


def _assemble(arch: str, tmp: Path, debs: dict[str, Path], kpkg: str) -> dict:
    kroot, sysroot, out = tmp / "kernel", tmp / "sysroot", tmp / "out"
    for d in (kroot, sysroot, out, out / "dtbs"):
        d.mkdir(parents=True)
    _run(["dpkg-deb", "-x", str(debs[kpkg]), str(kroot)])
    for pkg in USER_PACKAGES:
        _run(["dpkg-deb", "-x", str(debs[pkg]), str(sysroot)])
    kver = next((kroot / "lib/modules").iterdir()).name
    vmlinuz = next((kroot / "boot").glob("vmlinuz-*"))
    raw = vmlinuz.read_bytes()
    if arch == "arm64":
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)         # U-Boot's booti wants the plain Image
        # What a Pi's kernel8.img may be: the firmware (and QEMU's loader) gunzip it.
        (out / "kernel.gz").write_bytes(gzip.compress(raw, compresslevel=9, mtime=0))
    (out / "kernel").write_bytes(raw)
    dtbs = []
    if arch == "arm64":
        for name in RPI_DTBS:
            src = kroot / "usr/lib" / f"linux-image-{kver}" / "broadcom" / name
            if src.exists():
                shutil.copy2(src, out / "dtbs" / name)
                dtbs.append(name)
    busybox = sysroot / "bin/busybox"
    shutil.copy2(busybox, out / "busybox")

    cpio = Cpio()
    for d in ("bin", "sbin", "dev", "proc", "sys", "run", "tmp", "newroot", "etc/iscsi", "var/run", "var/lock"):
        cpio.dir(d)
    cpio.chardev("dev/console", 5, 1)
    cpio.chardev("dev/null", 1, 3, 0o666)
    cpio.file("bin/busybox", busybox.read_bytes(), 0o755)
    for applet in ("sh", "mount", "umount", "switch_root", "udhcpc", "ip", "sleep", "cat", "echo", "insmod",
                   "poweroff", "reboot", "mkdir", "ls", "cut", "ifconfig", "route", "dmesg", "grep", "sed", "tr",
                   "head", "uname", "test", "["):
        cpio.symlink(f"bin/{applet}", "busybox")
    init = (HERE / "initrd-init").read_bytes()
    cpio.file("init", init, 0o755)
    cpio.file("etc/udhcpc.script", UDHCPC_SCRIPT.encode(), 0o755)
    cpio.file("etc/passwd", b"root:x:0:0:root:/:/bin/sh\n")
    cpio.file("etc/group", b"root:x:0:\n")
    _add_program(cpio, sysroot, sysroot / "sbin/iscsistart", "sbin/iscsistart", arch)
    modules = _modules(kroot, kver, MODULES[arch])
    for rel in modules:
        cpio.file(f"lib/modules/{Path(rel).name}", (kroot / "lib/modules" / kver / rel).read_bytes())
    cpio.file("etc/modules", ("".join(Path(r).name + "\n" for r in modules)).encode())
    (out / "initrd").write_bytes(gzip.compress(cpio.bytes(), compresslevel=9, mtime=0))
    return {"kernel_version": kver, "dtbs": dtbs, "modules": modules}


UDHCPC_SCRIPT = """#!/bin/sh
# udhcpc hook: configure the address (no router, no DNS: nothing routed is needed).
case "$1" in
  bound|renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/${mask:-24}" dev "$interface"
    echo "$ip" > /run/e2e-ip
    ;;
  deconfig)
    ip addr flush dev "$interface"
    ;;
esac
exit 0
"""


def _add_program(cpio: Cpio, sysroot: Path, path: Path, dest: str, arch: str) -> None:
    """A dynamically linked program and the closure of libraries it needs."""
    cpio.file(dest, path.read_bytes(), 0o755)
    dirs = [sysroot / d for d in (f"lib/{TRIPLET[arch]}", f"usr/lib/{TRIPLET[arch]}", "lib", "usr/lib", "lib64")]
    todo, seen = [path], set()
    while todo:
        needed, interp = elf_needed(todo.pop())
        if interp and interp not in seen:
            seen.add(interp)
            real = _in_root(sysroot, interp)
            cpio.file(interp.lstrip("/"), real.read_bytes(), 0o755)
        for soname in needed:
            if soname in seen:
                continue
            seen.add(soname)
            hit = next((d / soname for d in dirs if (d / soname).exists()), None)
            if hit is None:
                raise RuntimeError(f"{dest} needs {soname}: not in {', '.join(USER_PACKAGES)} ({arch})")
            real = _in_root(sysroot, "/" + str(hit.relative_to(sysroot)))
            cpio.file(f"lib/{TRIPLET[arch]}/{soname}", real.read_bytes(), 0o755)
            todo.append(real)


def _in_root(root: Path, path: str) -> Path:
    """Follow symlinks of an absolute path inside ``root`` (a chroot-style lookup)."""
    parts = [p for p in path.split("/") if p]
    cur = root
    for _ in range(40):
        done = True
        for i, part in enumerate(parts):
            nxt = cur / part
            if nxt.is_symlink():
                target = os.readlink(nxt)
                base = [] if target.startswith("/") else list(cur.relative_to(root).parts)
                parts = [p for p in base + target.split("/") + parts[i + 1:] if p]
                cur, done = root, False
                break
            cur = nxt
        if done:
            return cur
        cur = root
    raise RuntimeError(f"symlink loop at {path}")


def _modules(kroot: Path, kver: str, wanted: Sequence[str]) -> list[str]:
    """Module files (relative to lib/modules/KVER) in load order, dependencies first."""
    _run(["depmod", "-b", str(kroot), kver])
    base = kroot / "lib/modules" / kver
    order: list[str] = []
    for mod in wanted:
        res = subprocess.run(["modprobe", "-d", str(kroot), "-S", kver, "--show-depends", mod],
                             capture_output=True, text=True, check=False)
        for line in res.stdout.splitlines():
            parts = line.split()
            if parts and parts[0] == "insmod":
                rel = os.path.relpath(parts[1], base)
                if rel not in order:
                    order.append(rel)
    return order


# -- root filesystems ------------------------------------------------------------------------

def build_rootfs(out: Path, busybox: Path, host: str, inits: dict[str, str], size_mb: int = 8) -> Path:
    """An ext4 image: busybox, /sbin/init and the given init scripts (absolute path → script)."""
    with tempfile.TemporaryDirectory(prefix="e2e-rootfs-") as tmp:
        root = Path(tmp)
        for d in ("bin", "sbin", "dev", "proc", "sys", "tmp", "etc"):
            (root / d).mkdir()
        shutil.copy2(busybox, root / "bin/busybox")
        for applet in ("sh", "mount", "cat", "echo", "poweroff", "reboot", "sleep", "cut"):
            (root / "bin" / applet).symlink_to("busybox")
        (root / "etc/hostname").write_text(host + "\n")
        for path, script in {"/sbin/init": marker_init(host, "sbin-init"), **inits}.items():
            p = root / path.lstrip("/")
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(script)
            p.chmod(0o755)
        tmp_img = out.with_suffix(".tmp")
        if tmp_img.exists():
            tmp_img.unlink()
        _run(["mke2fs", "-q", "-F", "-t", "ext4", "-O", "^has_journal", "-L", f"e2e-{host}"[:16],
              "-E", "root_owner=0:0", "-d", str(root), str(tmp_img), f"{size_mb}M"],
             env={**os.environ, "E2FSPROGS_FAKE_TIME": "1700000000"})
        os.replace(tmp_img, out)
    return out


MARKER = "NETBOOT-E2E-MARKER"
FAILED = "NETBOOT-E2E-INIT-FAILED"


def marker_init(host: str, label: str, fail: bool = False) -> str:
    """An init script: mount /proc, print the marker with the cmdline's generation, power off.
    With ``fail`` it prints a failure line and reboots instead (a generation that does not come up)."""
    last = f'echo "{FAILED} host={host} generation=$gen init={label}"\nreboot -f' if fail else \
        f'echo "{MARKER} host={host} generation=$gen init={label}"\npoweroff -f'
    return f"""#!/bin/sh
export PATH=/bin:/sbin
mount -t proc proc /proc
gen=none
for a in $(cat /proc/cmdline); do
  case "$a" in netboot.generation=*) gen="${{a#netboot.generation=}}" ;; esac
done
{last}
sleep 5
"""

"""Build (and cache) the lab VM's kernel + initramfs from Debian packages.

No chroot, no loop mounts, no package installation on the host: the .debs
are fetched with ``apt-get download`` and unpacked with ``dpkg-deb -x``; the
kernel modules LIO needs are picked with ``modprobe --show-depends`` and
indexed with ``depmod -b``; the tree is packed with ``cpio`` + ``gzip -1``.
The guest's stdlib and the dependencies come byte-compiled (hash-based .pyc,
see ``compile_python``): under TCG compiling them at each start costs tens of seconds.

The result lives in ``<cache>/qemu/<key>/`` where the key hashes the package
versions, this builder's files and the byte-compiling Python, so a rebuild happens only when an input
changes; a cold cache builds in well under a minute.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

__all__ = ["ServerImage", "build_server_image", "build_pydeps", "compile_python", "default_cache_dir",
           "pyproject_requirements"]

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent

# The userland: busybox, Debian's Python 3.11 + stdlib, kmod, and the libraries they load.
BASE_PACKAGES = (
    "busybox-static", "python3.11-minimal", "libpython3.11-minimal", "libpython3.11-stdlib",
    "libc6", "libgcc-s1", "libssl3", "libexpat1", "zlib1g", "libbz2-1.0", "libcrypt1", "libffi8",
    "liblzma5", "libuuid1", "libzstd1", "libkmod2", "kmod", "libudev1", "libc-bin",
    "libsqlite3-0",   # pyroute2 (the neighbour table: client IP → MAC) imports sqlite3
)
# Modules (with their dependencies) the lab loads; absent or built-in ones are skipped.
MODULES = (
    "configfs", "target_core_mod", "target_core_file", "target_core_iblock", "target_core_pscsi",
    "iscsi_target_mod", "virtio_pci", "virtio_console", "virtio_net", "virtio_blk", "9pnet_virtio", "9p",
    "crc32c_generic", "crc32c_intel", "libcrc32c", "md5", "sha1_generic", "sha256_generic", "sha3_generic",
    "bridge", "tun", "veth", "loop",
)
PRUNE = (
    "usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale", "usr/share/lintian",
    "usr/lib/python3.11/idlelib", "usr/lib/python3.11/tkinter", "usr/lib/python3.11/ensurepip",
    "usr/lib/python3.11/lib2to3", "usr/lib/python3.11/pydoc_data", "usr/lib/python3.11/turtledemo",
)


# Byte-compiles for the guest on the host: Debian's Python 3.11, the interpreter the image
# ships (same bytecode magic, checked against the image's importlib when it is built).
COMPILE_PYTHON = os.environ.get("LAB_COMPILE_PYTHON", "/usr/bin/python3.11")


@dataclass(frozen=True)
class ServerImage:
    kernel: Path
    initrd: Path
    kernel_version: str
    key: str


def default_cache_dir() -> Path:
    return Path(os.environ.get("NETBOOT_CACHE") or REPO / ".cache")


def _run(argv: Sequence[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(list(argv), check=True, capture_output=True, text=True, **kw)


def _kernel_package() -> str:
    out = _run(["apt-cache", "depends", "linux-image-amd64"]).stdout
    m = re.search(r"Depends:\s*(linux-image-\S+)", out)
    if not m:
        raise RuntimeError(f"cannot resolve linux-image-amd64: {out!r}")
    return m.group(1)


def package_versions(packages: Sequence[str], arch: str | None = None) -> dict[str, str]:
    """name → candidate version (apt-cache) for this machine's or a foreign ``arch``,
    updating the package lists once if needed."""
    def query() -> dict[str, str]:
        names = [f"{p}:{arch}" if arch else p for p in packages]
        res = subprocess.run(["apt-cache", "show", "--no-all-versions", *names],
                             capture_output=True, text=True, check=False)
        found: dict[str, str] = {}
        name = None
        for line in res.stdout.splitlines():
            if line.startswith("Package: "):
                name = line.split(None, 1)[1]
            elif line.startswith("Version: ") and name:
                found.setdefault(name, line.split(None, 1)[1])
        return found

    found = query()
    if set(found) != set(packages):
        _run(["apt-get", "update", "-qq"])   # a cold machine: package lists not fetched yet
        found = query()
    missing = sorted(set(packages) - set(found))
    if missing:
        raise RuntimeError(f"Debian packages not available{f' for {arch}' if arch else ''}: {', '.join(missing)}")
    return found


def _compiler_id() -> str:
    """Version and bytecode magic of ``COMPILE_PYTHON``: part of every cache key holding .pyc files."""
    return _run([COMPILE_PYTHON, "-c", "import importlib.util, sys; "
                 "print(sys.version.split()[0], importlib.util.MAGIC_NUMBER.hex())"]).stdout.strip()


def compile_python(paths: Sequence[Path], invalidation: str = "unchecked-hash") -> None:
    """Byte-compile the trees under ``paths`` with ``COMPILE_PYTHON`` into their ``__pycache__``.

    Hash-based .pyc (PEP 552) do not depend on mtimes, which cpio does not keep:
    ``unchecked-hash`` for trees that never change once built (the image, a cache dir).
    A working tree shared over 9p, which passes mtimes through, is compiled
    ``timestamp``-based (``project.compile_project``): a stale .pyc is recompiled, not used.
    """
    res = subprocess.run([COMPILE_PYTHON, "-m", "compileall", "-q", "-j", "0", "--invalidation-mode", invalidation,
                          *map(str, paths)], capture_output=True, text=True, check=False)
    if res.returncode:
        raise RuntimeError(f"byte-compiling {', '.join(map(str, paths))} failed:\n"
                           f"{res.stdout[-3000:]}{res.stderr[-2000:]}")


def _check_bytecode_magic(root: Path) -> None:
    """The image's interpreter must accept .pyc written by ``COMPILE_PYTHON``."""
    source = (root / "usr/lib/python3.11/importlib/_bootstrap_external.py").read_text()
    m = re.search(r"^MAGIC_NUMBER = \((\d+)\)\.to_bytes\(2, 'little'\) \+ b'\\r\\n'", source, re.M)
    if not m:
        raise RuntimeError("cannot find MAGIC_NUMBER in the image's importlib")
    guest = (int(m.group(1)).to_bytes(2, "little") + b"\r\n").hex()
    host = _compiler_id().split()[1]
    if guest != host:
        raise RuntimeError(f"{COMPILE_PYTHON} writes bytecode magic {host}, the image's Python needs {guest}; "
                           "set LAB_COMPILE_PYTHON to a matching Python 3.11")


def _inputs_digest() -> str:
    h = hashlib.sha256()
    for path in sorted([HERE / "image.py", *sorted((HERE / "guest").iterdir())]):
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    h.update(json.dumps([BASE_PACKAGES, MODULES, PRUNE]).encode())
    return h.hexdigest()


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)   # two test runs must not build into one dir
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def build_server_image(cache_dir: Path | None = None, extra_packages: Sequence[str] = (), log=print) -> ServerImage:
    """Return the cached kernel + initrd, building them first if needed."""
    cache = (cache_dir or default_cache_dir()) / "qemu"
    kernel_pkg = _kernel_package()
    packages = sorted({kernel_pkg, *BASE_PACKAGES, *extra_packages})
    versions = package_versions(packages)
    key = hashlib.sha256(json.dumps([versions, _inputs_digest(), _compiler_id()],
                                    sort_keys=True).encode()).hexdigest()[:16]
    out = cache / key
    manifest = out / "manifest.json"
    with _locked(cache / ".lock"):
        if manifest.is_file():
            m = json.loads(manifest.read_text())
            return ServerImage(out / "vmlinuz", out / "initrd.img", m["kernel_version"], key)
        log(f"lab: building VM image {key} ({len(packages)} packages)")
        debs = _download(cache / "debs", versions)
        tmp = Path(tempfile.mkdtemp(prefix=f"build-{key}-", dir=cache))
        try:
            kver = _assemble(tmp, debs, kernel_pkg)
            final = tmp / "out"
            (final / "manifest.json").write_text(json.dumps(
                {"kernel_version": kver, "packages": versions, "key": key}, indent=2, sort_keys=True))
            if out.exists():
                shutil.rmtree(out)
            os.replace(final, out)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        log(f"lab: VM image ready: {out} (initrd {(out / 'initrd.img').stat().st_size >> 20} MiB)")
        return ServerImage(out / "vmlinuz", out / "initrd.img", kver, key)


def _download(debs_dir: Path, versions: dict[str, str]) -> dict[str, Path]:
    debs_dir.mkdir(parents=True, exist_ok=True)

    def deb_path(pkg: str, version: str) -> Path | None:
        v = version.split(":", 1)[-1]
        for candidate in debs_dir.glob(f"{pkg}_*.deb"):
            if candidate.name.startswith(f"{pkg}_{v.replace(':', '%3a')}_") or \
               candidate.name.startswith(f"{pkg}_{version.replace(':', '%3a')}_"):
                return candidate
        return None

    wanted = {p: v for p, v in versions.items() if deb_path(p, v) is None}
    if wanted:
        _run(["apt-get", "download", "-qq", *(f"{p}={v}" for p, v in sorted(wanted.items()))], cwd=debs_dir)
    found = {p: deb_path(p, v) for p, v in versions.items()}
    missing = [p for p, d in found.items() if d is None]
    if missing:
        raise RuntimeError(f"apt-get download did not produce: {missing}")
    return found  # type: ignore[return-value]


def _assemble(tmp: Path, debs: dict[str, Path], kernel_pkg: str) -> str:
    root = tmp / "root"
    kroot = tmp / "kernel"
    out = tmp / "out"
    for d in (root, kroot, out):
        d.mkdir()
    _run(["dpkg-deb", "-x", str(debs[kernel_pkg]), str(kroot)])
    for pkg, deb in sorted(debs.items()):
        if pkg != kernel_pkg:
            _run(["dpkg-deb", "-x", str(deb), str(root)])

    kver = next((kroot / "lib/modules").iterdir()).name
    shutil.copy2(next((kroot / "boot").glob("vmlinuz-*")), out / "vmlinuz")
    _copy_modules(kroot, root, kver)

    for rel in PRUNE:
        shutil.rmtree(root / rel, ignore_errors=True)
    for d in ("proc", "sys", "dev", "tmp", "run", "etc", "root", "var/tmp", "usr/lib/lab", "mnt"):
        (root / d).mkdir(parents=True, exist_ok=True)
    _busybox_links(root)
    py = root / "usr/bin/python3"
    if not py.exists():
        py.symlink_to("python3.11")
    shutil.copy2(HERE / "guest/init", root / "init")
    (root / "init").chmod(0o755)
    shutil.copy2(HERE / "guest/agent.py", root / "usr/lib/lab/agent.py")
    _check_bytecode_magic(root)
    compile_python([root / "usr/lib/python3.11", root / "usr/lib/lab"])
    (root / "etc/hostname").write_text("lab\n")
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (root / "etc/group").write_text("root:x:0:\n")
    console = root / "dev/console"
    if not console.exists():
        os.mknod(console, 0o600 | 0o020000, os.makedev(5, 1))   # the kernel opens it before /init
    _check_libraries(root)

    with open(out / "initrd.img", "wb") as f:
        find = subprocess.Popen(["sh", "-c", "find . -mindepth 1 | LC_ALL=C sort"], cwd=root, stdout=subprocess.PIPE)
        cpio = subprocess.Popen(["cpio", "-o", "-H", "newc", "-R", "0:0", "--quiet"], cwd=root,
                                stdin=find.stdout, stdout=subprocess.PIPE)
        gz = subprocess.Popen(["gzip", "-1"], stdin=cpio.stdout, stdout=f)
        assert find.stdout and cpio.stdout
        find.stdout.close()
        cpio.stdout.close()
        if gz.wait() or cpio.wait() or find.wait():
            raise RuntimeError("packing the initramfs failed")
    return kver


def _copy_modules(kroot: Path, root: Path, kver: str) -> None:
    src = kroot / "lib/modules" / kver
    _run(["depmod", "-b", str(kroot), kver])   # the .deb ships no modules.dep
    wanted: set[Path] = set()
    for mod in MODULES:
        res = subprocess.run(["modprobe", "-d", str(kroot), "-S", kver, "--show-depends", mod],
                             capture_output=True, text=True, check=False)
        for line in res.stdout.splitlines():
            parts = line.split()
            if parts and parts[0] == "insmod":
                wanted.add(Path(parts[1]))
    dst = root / "lib/modules" / kver
    dst.mkdir(parents=True)
    for ko in sorted(wanted):
        rel = ko.relative_to(src)
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ko, dst / rel)
    for name in ("modules.order", "modules.builtin", "modules.builtin.modinfo"):
        if (src / name).exists():
            shutil.copy2(src / name, dst / name)
    _run(["depmod", "-b", str(root), kver])


def _busybox_links(root: Path) -> None:
    busybox = root / "bin/busybox"
    applets = _run([str(busybox), "--list-full"]).stdout.split()
    for applet in applets:
        link = root / applet
        if link.exists() or link.is_symlink():
            continue   # kmod's modprobe, Python, ... win over busybox applets
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(busybox, link.parent))


def _check_libraries(root: Path) -> None:
    """Fail the build when python3 or kmod needs a library the tree lacks."""
    libdirs = [root / d for d in ("lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu", "lib64", "usr/lib")]
    for binary in ("usr/bin/python3.11", "bin/kmod"):
        res = _run(["readelf", "-d", str(root / binary)]) if shutil.which("readelf") else None
        if res is None:
            return
        for lib in re.findall(r"Shared library: \[([^\]]+)\]", res.stdout):
            if not any((d / lib).exists() for d in libdirs):
                raise RuntimeError(f"{binary} needs {lib}, missing from the image")


def pyproject_requirements() -> list[str]:
    """The project's pinned runtime dependencies (pyproject.toml)."""
    import tomllib

    return list(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"])


def build_pydeps(cache_dir: Path | None = None, requirements: Sequence[str] | None = None, log=print) -> Path:
    """``pip install --target`` the (pure-Python) dependencies once, byte-compiled for the
    guest's Python; shared into the VM by 9p."""
    reqs = sorted(requirements if requirements is not None else pyproject_requirements())
    key = hashlib.sha256(json.dumps([reqs, "unchecked-hash", _compiler_id()]).encode()).hexdigest()[:16]
    base = (cache_dir or default_cache_dir()) / "qemu" / "pydeps"
    out = base / key
    with _locked(base / ".lock"):
        if (out / ".complete").exists():
            return out
        log(f"lab: installing {len(reqs)} Python packages for the VM into {out}")
        tmp = Path(tempfile.mkdtemp(prefix=f"{key}-", dir=base))
        try:
            _run([os.environ.get("LAB_PIP_PYTHON", "python3"), "-m", "pip", "install", "-q", "--no-compile",
                  "--disable-pip-version-check", "--target", str(tmp), *reqs])
            compile_python([tmp])
            (tmp / ".complete").write_text("\n".join(reqs) + "\n")
            if out.exists():
                shutil.rmtree(out)
            os.replace(tmp, out)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return out

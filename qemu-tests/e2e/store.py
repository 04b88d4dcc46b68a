"""A Nix-store-like tree of real client generations, and the hosts' root filesystem images.

Like a real NixOS closure, generations of one architecture share the kernel and
initrd store paths; each generation is a ``nixos-system-<host>-<N>`` toplevel
(kernel, initrd, init, kernel-params, boot.json, dtbs for arm64) whose
kernel-params carry ``netboot.generation=N``.  Each host's root filesystem holds
the toplevels' ``init`` at the same store path, so the init that runs is the one
the served command line named.  Generations listed in ``failing`` have an init
that reboots instead of printing the marker.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .artifacts import ArchArtifacts, _locked, build_rootfs, cache_root, marker_init

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
HASH_ALPHABET = "0123456789abcdfghijklmnpqrsvwxyz"
STORE_DIR = "/nix/store"          # where the server VM mounts the tree
ROOTFS_MB = 16


@dataclass(frozen=True)
class HostSpec:
    name: str
    boot: str                     # ipxe | uboot | rpi
    arch: str                     # amd64 | arm64
    mac: str
    octet: int                    # the client's address is <lab prefix>.<octet>
    console: str                  # kernel console= value
    generations: tuple[int, ...] = (1,)
    failing: tuple[int, ...] = ()
    rootfs: bool = True           # False: the host never gets as far (isolation)
    kernel_gz: bool = False       # serve the gzip-compressed kernel (Pi firmware unpacks it)


@dataclass
class BuiltStore:
    root: Path                    # contains store/ (→ /nix/store) and luns/
    toplevels: dict[str, dict[int, str]] = field(default_factory=dict)   # host → N → /nix/store/... path
    firmware: str = ""            # /nix/store/... path of the Pi firmware boot directory
    lun_bytes: int = ROOTFS_MB << 20

    @property
    def store(self) -> Path:
        return self.root / "store"

    @property
    def luns(self) -> Path:
        return self.root / "luns"


def store_name(name: str, seed: str) -> str:
    digest = hashlib.sha256(f"{seed}/{name}".encode()).digest()
    return "".join(HASH_ALPHABET[b % 32] for b in digest[:32]) + "-" + name


def _write(path: Path, data: bytes | str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    path.chmod(mode)


def build_store(hosts: list[HostSpec], arches: dict[str, ArchArtifacts], cache: Path | None = None,
                log=print) -> BuiltStore:
    cache = cache or cache_root()
    h = hashlib.sha256()
    h.update((HERE / "store.py").read_bytes())
    h.update(json.dumps([[spec.__dict__ for spec in hosts], {a: x.key for a, x in arches.items()}],
                        sort_keys=True).encode())
    key = h.hexdigest()[:16]
    out = cache / f"store-{key}"
    with _locked(cache / ".lock-store"):
        if not (out / "built.json").is_file():
            for stale in cache.glob("store-*"):
                shutil.rmtree(stale, ignore_errors=True)
            log(f"e2e: building the store tree and root filesystems ({key})")
            tmp = Path(tempfile.mkdtemp(prefix="store-", dir=cache))
            try:
                meta = _build(tmp, hosts, arches)
                (tmp / "built.json").write_text(json.dumps(meta, indent=2))
                if out.exists():
                    shutil.rmtree(out)
                os.replace(tmp, out)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        meta = json.loads((out / "built.json").read_text())
    return BuiltStore(root=out, toplevels={h: {int(n): p for n, p in g.items()} for h, g in meta["toplevels"].items()},
                      firmware=meta["firmware"])


def _build(root: Path, hosts: list[HostSpec], arches: dict[str, ArchArtifacts]) -> dict:
    store = root / "store"
    store.mkdir(parents=True)
    (root / "luns").mkdir()
    pkgs: dict[str, dict[str, str]] = {}
    for arch, art in arches.items():
        kname = store_name(f"linux-{art.kernel_version}", arch)
        image = "bzImage" if arch == "amd64" else "Image"
        (store / kname).mkdir()
        shutil.copy2(art.kernel, store / kname / image)
        if art.kernel_gz is not None:
            shutil.copy2(art.kernel_gz, store / kname / "Image.gz")
        for dtb, src in art.dtbs.items():
            _write(store / kname / "dtbs" / "broadcom" / dtb, src.read_bytes())
        iname = store_name("initrd-e2e-iscsi", arch)
        (store / iname).mkdir()
        shutil.copy2(art.initrd, store / iname / "initrd")
        pkgs[arch] = {"kernel": f"{STORE_DIR}/{kname}/{image}", "kernel_gz": f"{STORE_DIR}/{kname}/Image.gz", "initrd": f"{STORE_DIR}/{iname}/initrd",
                      "dtbs": f"{STORE_DIR}/{kname}/dtbs" if art.dtbs else ""}

    toplevels: dict[str, dict[int, str]] = {}
    for spec in hosts:
        pk = dict(pkgs[spec.arch])
        if spec.kernel_gz:
            pk["kernel"] = pk["kernel_gz"]
        system = "x86_64-linux" if spec.arch == "amd64" else "aarch64-linux"
        inits: dict[str, str] = {}
        for n in spec.generations:
            seed = f"{spec.name}-{n}"
            top_name = store_name(f"nixos-system-{spec.name}-25.11.{n}", seed)
            top = store / top_name
            top_path = f"{STORE_DIR}/{top_name}"
            init_name = store_name(f"nixos-init-{spec.name}-{n}", seed)
            script = marker_init(spec.name, f"generation-{n}", fail=n in spec.failing)
            _write(store / init_name / "init", script, 0o755)
            inits[f"{top_path}/init"] = script
            top.mkdir()
            # Links are absolute /nix/store paths, as in a real store (valid inside the server VM).
            os.symlink(pk["kernel"], top / "kernel")
            os.symlink(pk["initrd"], top / "initrd")
            os.symlink(f"{STORE_DIR}/{init_name}/init", top / "init")
            if pk["dtbs"]:
                os.symlink(pk["dtbs"], top / "dtbs")
            params = [f"console={spec.console}", "loglevel=4", f"netboot.generation={n}"]
            _write(top / "kernel-params", " ".join(params))
            _write(top / "nixos-version", f"25.11.{n}")
            _write(top / "system", system)
            _write(top / "boot.json", json.dumps({"org.nixos.bootspec.v1": {
                "init": f"{top_path}/init", "initrd": pk["initrd"], "kernel": pk["kernel"],
                "kernelParams": params, "label": f"NixOS 25.11.{n} (e2e)", "system": system,
                "toplevel": top_path}}, indent=2))
            toplevels.setdefault(spec.name, {})[n] = top_path
        if spec.rootfs:
            build_rootfs(root / "luns" / f"{spec.name}.img", arches[spec.arch].busybox, spec.name, inits,
                         size_mb=ROOTFS_MB)

    # Raspberry Pi firmware (stand-in blobs: only the bootloader emulator reads them).
    sys.path.insert(0, str(REPO))
    from appliance.demo.store import make_firmware

    fw = make_firmware(store)
    return {"toplevels": toplevels, "firmware": f"{STORE_DIR}/{fw.relative_to(store)}"}

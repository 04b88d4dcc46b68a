"""Observed LIO state: read once through rtslib into plain frozen data.

``observe(root, files)`` walks an ``RTSRoot`` (duck-typed: this module does
not import rtslib, so the data types are usable without it) and the backing
files the configuration names.  Errors are translated by the caller
(``lio.LioAdapter``), the one place that maps rtslib errors.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from ..config.identity import backing_identity
from .desired import Portal, Secret

__all__ = [
    "AclObserved",
    "BackstoreObserved",
    "FileObserved",
    "LioObserved",
    "LunObserved",
    "SessionObserved",
    "TargetObserved",
    "TpgObserved",
    "observe",
    "observe_files",
    "parse_acl_info",
]

# TPG attributes the appliance manages; others are left as the kernel has them.
MANAGED_TPG_ATTRIBUTES = ("authentication", "demo_mode_write_protect", "generate_node_acls")


@dataclass(frozen=True)
class BackstoreObserved:
    plugin: str            # "fileio", "block", "ramdisk", ...
    name: str
    path: str | None       # udev_path (backing file / device)
    size: int | None       # fileio: bytes; None where it is not meaningful
    configured: bool = True   # False: made but never given a device (an interrupted creation)


@dataclass(frozen=True)
class LunObserved:
    index: int
    backstore: tuple[str, str] | None   # (plugin, name) or None if dangling


@dataclass(frozen=True)
class SessionObserved:
    target_iqn: str
    tpg: int
    initiator: str
    state: str                   # e.g. "LOGGED_IN"
    addresses: tuple[str, ...]   # one per connection

    def as_json(self) -> dict[str, Any]:
        return {"target": self.target_iqn, "tpg": self.tpg, "initiator": self.initiator,
                "state": self.state, "addresses": list(self.addresses)}


@dataclass(frozen=True)
class AclObserved:
    initiator: str
    mapped_luns: tuple[tuple[int, int, bool], ...]   # (mapped lun, tpg lun, write_protect)
    chap_userid: str = ""
    chap_password: Secret = field(default_factory=lambda: Secret(""), repr=False)
    chap_mutual_userid: str = ""
    chap_mutual_password: Secret = field(default_factory=lambda: Secret(""), repr=False)
    session: SessionObserved | None = None


@dataclass(frozen=True)
class TpgObserved:
    tag: int
    enabled: bool
    attributes: tuple[tuple[str, str], ...]
    portals: tuple[Portal, ...]
    luns: tuple[LunObserved, ...]
    acls: tuple[AclObserved, ...]

    @property
    def attribute_map(self) -> dict[str, str]:
        return dict(self.attributes)

    def lun(self, index: int) -> LunObserved | None:
        return next((l for l in self.luns if l.index == index), None)

    def acl(self, initiator: str) -> AclObserved | None:
        return next((a for a in self.acls if a.initiator.lower() == initiator.lower()), None)


@dataclass(frozen=True)
class TargetObserved:
    iqn: str
    tpgs: tuple[TpgObserved, ...]

    def tpg(self, tag: int) -> TpgObserved | None:
        return next((t for t in self.tpgs if t.tag == tag), None)


@dataclass(frozen=True)
class FileObserved:
    path: Path
    exists: bool
    kind: str = ""        # "file" | "block" | "dir" | "other" | "broken symlink to ..." | ""
    size: int | None = None
    parent_exists: bool = True
    identity: str = ""    # equal for every name of one file or device (config.identity)


@dataclass(frozen=True)
class LioObserved:
    backstores: tuple[BackstoreObserved, ...] = ()
    targets: tuple[TargetObserved, ...] = ()      # iSCSI fabric only
    files: tuple[FileObserved, ...] = ()

    def backstore(self, name: str) -> tuple[BackstoreObserved, ...]:
        return tuple(b for b in self.backstores if b.name == name)

    def target(self, iqn: str) -> TargetObserved | None:
        return next((t for t in self.targets if t.iqn == iqn), None)

    def file(self, path: Path) -> FileObserved | None:
        return next((f for f in self.files if f.path == path), None)

    def identity(self, path: Path | str) -> str:
        """Which disk ``path`` names; a path that was not looked at is only itself."""
        f = self.file(Path(path))
        return f.identity if f is not None and f.identity else f"path {path}"

    def sessions(self, target_iqn: str | None = None) -> tuple[SessionObserved, ...]:
        return tuple(a.session for t in self.targets if target_iqn in (None, t.iqn)
                     for tpg in t.tpgs for a in tpg.acls if a.session is not None)


# -- reading ----------------------------------------------------------------------------

def observe(root: Any, files: Iterable[Path] = ()) -> LioObserved:
    """Read LIO (via an ``RTSRoot``) once, and the named backing files and
    every backstore's file or device (to compare them by identity)."""
    root.invalidate_caches()   # rtslib caches backstore indexes module-wide
    backstores = tuple(sorted((_backstore(so) for so in root.storage_objects),
                              key=lambda b: (b.plugin, b.name)))
    targets = tuple(sorted((_target(t) for t in root.targets if t.fabric_module.name == "iscsi"),
                           key=lambda t: t.iqn))
    paths = {*files, *(Path(b.path) for b in backstores if b.path and b.path.startswith("/"))}
    return LioObserved(backstores=backstores, targets=targets, files=observe_files(paths))


def observe_files(paths: Iterable[Path]) -> tuple[FileObserved, ...]:
    out = []
    for path in sorted(set(paths)):
        identity = backing_identity(path)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            if os.path.islink(path):   # into a share that is not mounted, most likely
                out.append(FileObserved(path, True, f"broken symlink to {os.readlink(path)}", identity=identity))
            else:
                out.append(FileObserved(path, exists=False, parent_exists=path.parent.is_dir(), identity=identity))
            continue
        if stat.S_ISREG(st.st_mode):
            out.append(FileObserved(path, True, "file", st.st_size, identity=identity))
        elif stat.S_ISBLK(st.st_mode):
            out.append(FileObserved(path, True, "block", identity=identity))
        elif stat.S_ISDIR(st.st_mode):
            out.append(FileObserved(path, True, "dir", identity=identity))
        else:
            out.append(FileObserved(path, True, "other", identity=identity))
    return tuple(out)


def _backstore(so: Any) -> BackstoreObserved:
    plugin = so.plugin
    if not so.is_configured():
        # rtslib reads an unconfigured fileio's path from "info" as the word "Size".
        return BackstoreObserved(plugin=plugin, name=so.name, path=None, size=None, configured=False)
    path = so.udev_path or None
    size = None
    if plugin == "fileio":
        size = int(so.size)
    return BackstoreObserved(plugin=plugin, name=so.name, path=path, size=size)


def _target(target: Any) -> TargetObserved:
    iqn = target.wwn
    return TargetObserved(iqn=iqn, tpgs=tuple(sorted((_tpg(iqn, tpg) for tpg in target.tpgs),
                                                      key=lambda t: t.tag)))


def _tpg(iqn: str, tpg: Any) -> TpgObserved:
    attributes = tuple((name, str(tpg.get_attribute(name)).strip()) for name in MANAGED_TPG_ATTRIBUTES)
    portals = tuple(sorted(Portal(np.ip_address.strip("[]"), int(np.port)) for np in tpg.network_portals))
    luns = []
    for lun in tpg.luns:
        try:
            so = lun.storage_object
            ref = (so.plugin, so.name)
        except Exception:  # a LUN whose backstore link is broken: report it as dangling
            ref = None
        luns.append(LunObserved(index=int(lun.lun), backstore=ref))
    acls = []
    for acl in tpg.node_acls:
        mapped = tuple(sorted((int(m.mapped_lun), int(m.tpg_lun.lun), bool(m.write_protect))
                              for m in acl.mapped_luns))
        acls.append(AclObserved(
            initiator=acl.node_wwn,
            mapped_luns=mapped,
            chap_userid=acl.chap_userid or "",
            chap_password=Secret(acl.chap_password or ""),
            chap_mutual_userid=acl.chap_mutual_userid or "",
            chap_mutual_password=Secret(acl.chap_mutual_password or ""),
            session=_session(iqn, int(tpg.tag), acl),
        ))
    return TpgObserved(
        tag=int(tpg.tag),
        enabled=bool(tpg.enable),
        attributes=tuple(sorted(attributes)),
        portals=portals,
        luns=tuple(sorted(luns, key=lambda l: l.index)),
        acls=tuple(sorted(acls, key=lambda a: a.initiator)),
    )


def _session(iqn: str, tag: int, acl: Any) -> SessionObserved | None:
    try:
        text = Path(acl.path, "info").read_text()
    except OSError:
        return None
    return parse_acl_info(iqn, tag, text)


def parse_acl_info(target_iqn: str, tpg: int, text: str) -> SessionObserved | None:
    """Parse a NodeACL's configfs ``info`` file (iscsi_target_mod) into a session."""
    lines = text.splitlines()
    if not lines or lines[0].startswith("No active"):
        return None
    initiator = ""
    state = ""
    addresses: list[str] = []
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("InitiatorName:"):
            initiator = stripped.split(":", 1)[1].strip()
        elif "TARG_SESS_STATE_" in stripped:
            state = stripped.split("TARG_SESS_STATE_", 1)[1].split()[0]
        elif stripped.startswith("Address "):
            parts = stripped.split()
            if len(parts) >= 2:
                addresses.append(parts[1])
    if not initiator:
        return None
    return SessionObserved(target_iqn=target_iqn, tpg=tpg, initiator=initiator,
                           state=state or "UNKNOWN", addresses=tuple(addresses))

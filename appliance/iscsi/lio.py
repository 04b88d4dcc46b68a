"""The edge to kernel LIO: preparing the kernel, one ``RTSRoot``, rtslib calls.

``LioAdapter.open()`` makes LIO usable (configfs mounted, modules loaded,
dbroot present) or raises ``LioUnavailable`` saying exactly what is missing;
only then is ``RTSRoot`` created (its constructor mounts and modprobes on its
own, and rtslib-fb 2.2.4's ``mount_configfs()`` is broken).  rtslib and OS
errors become ``IscsiError`` in exactly one place: ``_lio_errors``.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from ..errors import IscsiError, LioUnavailable
from .desired import TPG_TAG, SecretReader
from .observe import LioObserved, observe
from .plan import (
    Action,
    CreateAcl,
    CreateBackstore,
    CreateLun,
    CreateMappedLun,
    CreatePortal,
    CreateTarget,
    CreateTpg,
    DeleteAcl,
    DeleteBackstore,
    DeleteLun,
    DeleteMappedLun,
    DeletePortal,
    DeleteTarget,
    DeleteTpg,
    EnableTpg,
    Plan,
    SetAclChap,
    SetTpgAttribute,
)

__all__ = ["KernelPaths", "LioAdapter", "prepare_kernel"]

log = logging.getLogger(__name__)

CONFIGFS = Path("/sys/kernel/config")
DBROOT = Path("/etc/target")
MODULES = ("target_core_mod", "target_core_file", "target_core_iblock", "iscsi_target_mod")


@dataclass(frozen=True)
class KernelPaths:
    """Where the kernel interfaces live; tests point these elsewhere."""

    proc_filesystems: Path = Path("/proc/filesystems")
    proc_mounts: Path = Path("/proc/self/mounts")
    sys_module: Path = Path("/sys/module")
    configfs: Path = CONFIGFS
    dbroot: Path = DBROOT


Runner = Callable[[list[str]], "subprocess.CompletedProcess[str]"]


def _run(argv: list[str]) -> "subprocess.CompletedProcess[str]":
    try:
        return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)
    except FileNotFoundError as exc:
        return subprocess.CompletedProcess(argv, 127, "", f"{argv[0]}: not found ({exc.strerror})")


def _has_configfs(paths: KernelPaths) -> bool:
    try:
        return any(line.split()[-1:] == ["configfs"] for line in paths.proc_filesystems.read_text().splitlines())
    except OSError:
        return False


def _configfs_mounted(paths: KernelPaths) -> bool:
    try:
        lines = paths.proc_mounts.read_text().splitlines()
    except OSError:
        return False
    return any(len(f) > 2 and f[1] == str(paths.configfs) and f[2] == "configfs" for f in map(str.split, lines))


def _modprobe(module: str, paths: KernelPaths, run: Runner) -> str | None:
    """Load a module; None on success, else why not."""
    if (paths.sys_module / module).is_dir():
        return None
    result = run(["modprobe", module])
    if result.returncode == 0:
        return None
    return (result.stderr or result.stdout).strip() or f"modprobe exited {result.returncode}"


def prepare_kernel(paths: KernelPaths = KernelPaths(), run: Runner = _run) -> None:
    """Make LIO usable or raise ``LioUnavailable`` naming what is missing."""
    release = os.uname().release
    if not _has_configfs(paths):
        why = _modprobe("configfs", paths, run)
        if why is not None or not _has_configfs(paths):
            raise LioUnavailable(
                f"kernel LIO is not available: the running kernel ({release}) has no configfs "
                f"(not in {paths.proc_filesystems}) and loading the module failed: {why or 'no effect'}"
                f" — is /lib/modules/{release} present, or was the kernel booted without modules?")
    if not _configfs_mounted(paths):
        if not paths.configfs.is_dir():
            raise LioUnavailable(f"kernel LIO is not available: {paths.configfs} does not exist")
        result = run(["mount", "-t", "configfs", "configfs", str(paths.configfs)])
        if result.returncode != 0 and not _configfs_mounted(paths):
            raise LioUnavailable(f"kernel LIO is not available: cannot mount configfs on {paths.configfs}: "
                                 f"{(result.stderr or result.stdout).strip()}")
    for module in MODULES:
        why = _modprobe(module, paths, run)
        if why is not None:
            raise LioUnavailable(f"kernel LIO is not available: kernel module {module} cannot be loaded: {why}")
    if not (paths.configfs / "target").is_dir():
        raise LioUnavailable(f"kernel LIO is not available: {paths.configfs}/target is missing "
                             "after loading target_core_mod")
    try:
        paths.dbroot.mkdir(mode=0o755, parents=True, exist_ok=True)  # RTSRoot() insists on it
    except OSError as exc:
        raise LioUnavailable(f"cannot create rtslib's directory {paths.dbroot}: {exc.strerror}") from exc


@contextlib.contextmanager
def _lio_errors(doing: str) -> Iterator[None]:
    """The one place where rtslib / OS errors become ``IscsiError``."""
    try:
        yield
    except IscsiError:
        raise
    except Exception as exc:  # rtslib raises RTSLibError, OSError, ValueError, ...
        raise IscsiError(f"LIO: {doing} failed: {exc}") from exc


class LioAdapter:
    """One ``RTSRoot``, created at the edge; observe and execute actions.

    The constructor takes an existing root and does no I/O; ``open()`` is
    the factory that prepares the kernel first.
    """

    def __init__(self, root: Any, rtslib: Any) -> None:
        self._root = root
        self._rtslib = rtslib

    @classmethod
    def open(cls, paths: KernelPaths = KernelPaths(), run: Runner = _run) -> "LioAdapter":
        prepare_kernel(paths, run)
        with _lio_errors("opening LIO (rtslib RTSRoot)"):
            import rtslib_fb

            return cls(rtslib_fb.RTSRoot(), rtslib_fb)

    # -- reading ----------------------------------------------------------------------

    def observe(self, files: Iterable[Path] = ()) -> LioObserved:
        with _lio_errors("reading the LIO configuration"):
            return observe(self._root, files)

    def save(self) -> None:
        """Persist to rtslib's saveconfig.json (optional: the daemon re-applies at start)."""
        with _lio_errors("saving the LIO configuration"):
            self._root.save_to_file()

    # -- writing ----------------------------------------------------------------------

    def execute(self, plan: Plan, secrets: SecretReader) -> list[str]:
        """Run every action in order; returns what was done.  The caller has
        checked ``plan.refusals``; this refuses again rather than trust it."""
        if plan.refusals:
            raise IscsiError("refusing to apply a plan with refusals")
        done: list[str] = []
        for action in plan.actions:
            with _lio_errors(action.describe()):
                self._invalidate()
                self._execute(action, secrets)
            log.info("iscsi: %s", action.describe())
            done.append(action.describe())
        return done

    def _invalidate(self) -> None:
        self._root.invalidate_caches()

    def _execute(self, action: Action, secrets: SecretReader) -> None:
        r = self._rtslib
        match action:
            case CreateBackstore():
                self._create_backstore(action)
            case DeleteBackstore(plugin=plugin, name=name):
                self._delete_backstore(plugin, name)
            case CreateTarget(target=iqn):
                r.Target(self._iscsi(), iqn, mode="create")
            case DeleteTarget(target=iqn):
                self._target(iqn).delete()
            case CreateTpg(target=iqn, tpg=tag):
                r.TPG(self._target(iqn), tag, mode="create")
            case DeleteTpg(target=iqn, tpg=tag):
                r.TPG(self._target(iqn), tag, mode="lookup").delete()
            case EnableTpg(target=iqn):
                self._tpg(iqn).enable = True
            case SetTpgAttribute(target=iqn, name=name, value=value):
                self._tpg(iqn).set_attribute(name, value)
            case CreatePortal(target=iqn, portal=portal):
                r.NetworkPortal(self._tpg(iqn), portal.rtslib_ip, portal.port, mode="create")
            case DeletePortal(target=iqn, portal=portal):
                r.NetworkPortal(self._tpg(iqn), portal.rtslib_ip, portal.port, mode="lookup").delete()
            case CreateLun(target=iqn, lun=index, plugin=plugin, backstore=name):
                r.LUN(self._tpg(iqn), index, storage_object=self._storage_object(plugin, name))
            case DeleteLun(target=iqn, tpg=tag, lun=index):
                r.LUN(r.TPG(self._target(iqn), tag, mode="lookup"), index).delete()
            case CreateAcl(target=iqn, initiator=initiator):
                r.NodeACL(self._tpg(iqn), initiator, mode="create")
            case DeleteAcl(target=iqn, initiator=initiator):
                r.NodeACL(self._tpg(iqn), initiator, mode="lookup").delete()
            case CreateMappedLun(target=iqn, initiator=initiator, mapped_lun=mapped, tpg_lun=tpg_lun):
                acl = r.NodeACL(self._tpg(iqn), initiator, mode="lookup")
                r.MappedLUN(acl, mapped, tpg_lun=tpg_lun, write_protect=False)
            case DeleteMappedLun(target=iqn, initiator=initiator, mapped_lun=mapped):
                acl = r.NodeACL(self._tpg(iqn), initiator, mode="lookup")
                r.MappedLUN(acl, mapped).delete()
            case SetAclChap():
                self._set_chap(action, secrets)
            case _:
                raise IscsiError(f"unknown action {action!r}")

    def _iscsi(self) -> Any:
        return self._rtslib.FabricModule("iscsi")

    def _target(self, iqn: str) -> Any:
        return self._rtslib.Target(self._iscsi(), iqn, mode="lookup")

    def _tpg(self, iqn: str) -> Any:
        return self._rtslib.TPG(self._target(iqn), TPG_TAG, mode="lookup")

    def _storage_object(self, plugin: str, name: str) -> Any:
        # rtslib's StorageObject constructors look up when no device is given.
        if plugin == "fileio":
            return self._rtslib.FileIOStorageObject(name)
        if plugin == "block":
            return self._rtslib.BlockStorageObject(name)
        for so in self._root.storage_objects:
            if so.plugin == plugin and so.name == name:
                return so
        raise IscsiError(f"LIO: no {plugin} backstore named {name}")

    def _delete_backstore(self, plugin: str, name: str) -> None:
        so = self._storage_object(plugin, name)
        # rtslib's delete() also deletes every LUN on it, in any fabric's target.  The plan
        # deletes the appliance's own LUNs first, so any still here are someone else's.
        left = [f"{lun.parent_tpg.parent_target.wwn} tpg {lun.parent_tpg.tag} LUN {lun.lun}"
                for lun in so.attached_luns]
        if left:
            raise IscsiError(f"LIO: not deleting backstore {plugin}/{name}: it is still exported by "
                             f"{', '.join(left)}, which this plan does not remove")
        so.delete()

    def _create_backstore(self, action: CreateBackstore) -> None:
        if action.plugin == "block":
            self._rtslib.BlockStorageObject(action.name, dev=str(action.path))
            return
        assert action.size is not None
        ensure_backing_file(action.path, action.size, grow=action.file_action == "grow",
                            new=action.file_action == "create")
        self._rtslib.FileIOStorageObject(action.name, dev=str(action.path), size=action.size)

    def _set_chap(self, action: SetAclChap, secrets: SecretReader) -> None:
        acl = self._rtslib.NodeACL(self._tpg(action.target), action.initiator, mode="lookup")
        if not action.userid:
            for attr in ("chap_mutual_password", "chap_mutual_userid", "chap_password", "chap_userid"):
                setattr(acl, attr, "")
            return
        assert action.password_file is not None
        acl.chap_userid = action.userid
        acl.chap_password = secrets(action.password_file)
        if action.mutual_userid and action.mutual_password_file is not None:
            acl.chap_mutual_userid = action.mutual_userid
            acl.chap_mutual_password = secrets(action.mutual_password_file)
        else:
            acl.chap_mutual_userid = ""
            acl.chap_mutual_password = ""


def ensure_backing_file(path: Path, size: int, grow: bool = False, new: bool = False) -> str:
    """Create ``path`` sparse at ``size`` if it does not exist; never truncate.

    Returns "created", "grown" or "kept".  An existing smaller file is grown
    only with ``grow`` (the plan marks that destructive, i.e. it needed
    --allow-destroy); otherwise it is an error.  A larger file is left alone.
    ``new``: the plan promised a new file, so one found there is an error.
    """
    if _create_complete(path, size):
        return "created"
    if new:
        raise IscsiError(f"{path} appeared since the plan (which said: new sparse file); nothing exported: "
                         "plan again")
    # No O_TRUNC, ever.  O_NONBLOCK: a FIFO put there since the plan must not hang the apply.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as exc:   # ENXIO: a FIFO without a reader; EISDIR: a directory
        raise IscsiError(f"{path} is not a regular file (any more) or cannot be opened: {exc.strerror}; "
                         "nothing done") from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise IscsiError(f"{path} is not a regular file (any more): nothing done; plan again")
        current = st.st_size
        if current >= size:
            return "kept"
        if not grow:
            raise IscsiError(f"{path} is {current} bytes, smaller than the configured {size}: "
                             "growing it needs --allow-destroy")
        os.ftruncate(fd, size)       # current < size: this only extends
        os.fsync(fd)
        return "grown"
    finally:
        os.close(fd)


def _create_complete(path: Path, size: int) -> bool:
    """Create ``path`` sparse at ``size``, complete or not at all; False if it exists.

    The file is sized under a temporary name in the same directory, then hard-linked
    to ``path``, which fails rather than replace anything there.  A file system that
    refuses the size (EFBIG, EROFS, ...) leaves nothing behind, so the next plan does
    not see an empty "existing" disk.  Without hard links (vfat) it is created in place.
    """
    if os.path.lexists(path):
        return False
    try:
        fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".new", dir=path.parent)
    except OSError as exc:
        raise IscsiError(f"cannot create {path}: {exc.strerror}") from exc
    try:
        try:
            os.ftruncate(fd, size)   # a brand-new, empty file: extending it is sparse
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(temporary, path)
        except FileExistsError:
            return False
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV):
                raise
            return _create_in_place(path, size)
    except OSError as exc:
        raise IscsiError(f"cannot create {path} at {size} bytes: {exc.strerror}") from exc
    finally:
        os.unlink(temporary)   # only the temporary name this call made
    with contextlib.suppress(OSError):   # the new name itself survives a power cut
        dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return True


def _create_in_place(path: Path, size: int) -> bool:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        return False
    try:
        os.ftruncate(fd, size)
        os.fsync(fd)
    finally:
        os.close(fd)
    return True

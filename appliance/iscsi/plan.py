"""The pure planner: ``plan(desired, observed, allow_destroy) -> Plan``.

Ownership: the appliance owns backstores named ``netboot-*`` and iSCSI
targets whose IQN starts with ``<target_prefix>:``.  Nothing else is ever in
a plan.

Data safety: an action that detaches or replaces an existing LUN (host
removed, backing path / kind / size changed, a foreign LUN in an owned TPG) is
*destructive*; so is any removal or change (ACL, mapped LUN, portal, CHAP,
TPG attribute) on a target with a logged-in session, which could cut a
running host off its root disk: such actions carry the ``session`` they
would disturb, and show it.  Without ``allow_destroy`` every destructive
action yields a ``Refusal`` and the plan must not be applied (an automatic
apply uses ``Plan.split_refused``: refused hosts are left as they run).  Even with it, only LIO objects
are removed: no action ever deletes, truncates or shrinks a backing file.

Backing files (fileio):
- missing → created sparse at ``size`` (its directory must exist: a missing
  directory is often an unmounted share, so it is a conflict, not created);
- existing and exactly ``size`` → used as is;
- existing and smaller → grown (sparse, data kept) only with allow_destroy;
- existing and larger → never shrunk; exported as its first ``size`` bytes
  only with allow_destroy (the operator asked for that size explicitly);
- already backing another backstore (owned or not), or wanted by two hosts
  → conflict (two writers on one disk), refused even with allow_destroy;
  so is an owned backstore that a target the appliance does not manage
  exports (deleting the backstore would delete that LUN too).
  Files and devices are compared by identity (inode, device number, resolved
  path: ``FileObserved.identity``), never by how their path is written.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, ClassVar

from .desired import (
    LUN_INDEX,
    TPG_TAG,
    BackstoreDesired,
    ChapDesired,
    LioDesired,
    Portal,
    Secret,
    TargetDesired,
    host_of,
    owns_backstore,
)
from .observe import AclObserved, BackstoreObserved, FileObserved, LioObserved, TargetObserved, TpgObserved

__all__ = [
    "Action",
    "CreateAcl",
    "CreateBackstore",
    "CreateLun",
    "CreateMappedLun",
    "CreatePortal",
    "CreateTarget",
    "CreateTpg",
    "DeleteAcl",
    "DeleteBackstore",
    "DeleteLun",
    "DeleteMappedLun",
    "DeletePortal",
    "DeleteTarget",
    "DeleteTpg",
    "EnableTpg",
    "Plan",
    "Refusal",
    "SetAclChap",
    "SetTpgAttribute",
    "plan",
]


_NO_SECRET = Secret("")


def _while(session: str) -> str:
    return f" while {session} is logged in" if session else ""


def _size(n: int | None) -> str:
    if n is None:
        return "?"
    for unit, factor in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= factor and n % factor == 0:
            return f"{n // factor} {unit}"
    return f"{n} bytes"


@dataclass(frozen=True)
class Action:
    """One change to LIO.  ``destructive`` ones detach or replace a LUN."""

    phase: ClassVar[int] = 0
    verb: ClassVar[str] = ""

    @property
    def destructive(self) -> bool:
        return False

    def describe(self) -> str:
        raise NotImplementedError

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"action": self.verb, "destructive": self.destructive,
                               "description": self.describe()}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = str(value) if isinstance(value, (Path, Portal)) else value
        return out


# -- deletions (phase 1x) ----------------------------------------------------------------

@dataclass(frozen=True)
class DeleteMappedLun(Action):
    phase: ClassVar[int] = 10
    verb: ClassVar[str] = "delete-mapped-lun"
    target: str
    initiator: str
    mapped_lun: int
    session: str = ""

    @property
    def destructive(self) -> bool:
        return bool(self.session)

    def describe(self) -> str:
        return f"delete mapped LUN {self.mapped_lun} of ACL {self.initiator} on {self.target}{_while(self.session)}"


@dataclass(frozen=True)
class DeleteAcl(Action):
    phase: ClassVar[int] = 11
    verb: ClassVar[str] = "delete-acl"
    target: str
    initiator: str
    session: str = ""

    @property
    def destructive(self) -> bool:
        return bool(self.session)

    def describe(self) -> str:
        return f"delete ACL {self.initiator} on {self.target} (not in the configuration){_while(self.session)}"


@dataclass(frozen=True)
class DeletePortal(Action):
    phase: ClassVar[int] = 12
    verb: ClassVar[str] = "delete-portal"
    target: str
    portal: Portal
    session: str = ""

    @property
    def destructive(self) -> bool:
        return bool(self.session)

    def describe(self) -> str:
        return f"delete portal {self.portal} on {self.target}{_while(self.session)}"


@dataclass(frozen=True)
class DeleteLun(Action):
    phase: ClassVar[int] = 13
    verb: ClassVar[str] = "delete-lun"
    target: str
    tpg: int
    lun: int
    backstore: str     # "plugin/name" it exported, for the message
    reason: str
    session: str = ""

    @property
    def destructive(self) -> bool:
        return True

    def describe(self) -> str:
        return (f"delete LUN {self.lun} ({self.backstore}) of {self.target} tpg {self.tpg}: {self.reason}"
                f"{_while(self.session)}")


@dataclass(frozen=True)
class DeleteTpg(Action):
    phase: ClassVar[int] = 14
    verb: ClassVar[str] = "delete-tpg"
    target: str
    tpg: int
    has_luns: bool
    session: str = ""

    @property
    def destructive(self) -> bool:
        return self.has_luns or bool(self.session)

    def describe(self) -> str:
        return f"delete tpg {self.tpg} of {self.target} (the appliance uses tpg {TPG_TAG} only){_while(self.session)}"


@dataclass(frozen=True)
class DeleteTarget(Action):
    phase: ClassVar[int] = 15
    verb: ClassVar[str] = "delete-target"
    target: str
    has_luns: bool
    session: str = ""

    @property
    def destructive(self) -> bool:
        return self.has_luns or bool(self.session)

    def describe(self) -> str:
        return f"delete target {self.target} (no host in the configuration){_while(self.session)}"


@dataclass(frozen=True)
class DeleteBackstore(Action):
    phase: ClassVar[int] = 16
    verb: ClassVar[str] = "delete-backstore"
    plugin: str
    name: str
    path: str | None
    reason: str
    session: str = ""
    unconfigured: bool = False   # never given a device: no LUN, no data to detach

    @property
    def destructive(self) -> bool:
        return not self.unconfigured

    def describe(self) -> str:
        if self.unconfigured:
            return f"delete {self.plugin} backstore {self.name}: {self.reason}; it has no backing file or device"
        return (f"delete {self.plugin} backstore {self.name} ({self.path}): {self.reason}{_while(self.session)}; "
                "the backing data is kept")


# -- creations and fixes (phase 2x) ------------------------------------------------------

@dataclass(frozen=True)
class CreateBackstore(Action):
    """``file_action``: "create" (new sparse file), "grow" (extend a smaller
    file, sparse), "use" (existing file or device as is)."""

    phase: ClassVar[int] = 20
    verb: ClassVar[str] = "create-backstore"
    plugin: str
    name: str
    path: Path
    size: int | None
    file_action: str
    current_size: int | None = None

    @property
    def destructive(self) -> bool:
        # Growing changes an existing disk's geometry; it needs an explicit ok.
        return self.file_action == "grow"

    def describe(self) -> str:
        if self.plugin == "block":
            return f"create block backstore {self.name} on {self.path}"
        what = {"create": "new sparse file",
                "grow": f"grow the existing file from {_size(self.current_size)}",
                "use": "existing file"}[self.file_action]
        return f"create fileio backstore {self.name} on {self.path} ({_size(self.size)}, {what})"


@dataclass(frozen=True)
class CreateTarget(Action):
    phase: ClassVar[int] = 21
    verb: ClassVar[str] = "create-target"
    target: str

    def describe(self) -> str:
        return f"create target {self.target}"


@dataclass(frozen=True)
class CreateTpg(Action):
    phase: ClassVar[int] = 22
    verb: ClassVar[str] = "create-tpg"
    target: str
    tpg: int = TPG_TAG

    def describe(self) -> str:
        return f"create tpg {self.tpg} on {self.target}"


@dataclass(frozen=True)
class SetTpgAttribute(Action):
    phase: ClassVar[int] = 23
    verb: ClassVar[str] = "set-tpg-attribute"
    target: str
    name: str
    value: str
    current: str | None = None
    session: str = ""

    @property
    def destructive(self) -> bool:
        return bool(self.session)

    def describe(self) -> str:
        was = f" (was {self.current})" if self.current is not None else ""
        return f"set {self.target} tpg {TPG_TAG} attribute {self.name}={self.value}{was}{_while(self.session)}"


@dataclass(frozen=True)
class CreatePortal(Action):
    phase: ClassVar[int] = 24
    verb: ClassVar[str] = "create-portal"
    target: str
    portal: Portal

    def describe(self) -> str:
        return f"create portal {self.portal} on {self.target}"


@dataclass(frozen=True)
class CreateLun(Action):
    phase: ClassVar[int] = 25
    verb: ClassVar[str] = "create-lun"
    target: str
    lun: int
    plugin: str
    backstore: str

    def describe(self) -> str:
        return f"create LUN {self.lun} on {self.target} → {self.plugin}/{self.backstore}"


@dataclass(frozen=True)
class CreateAcl(Action):
    phase: ClassVar[int] = 26
    verb: ClassVar[str] = "create-acl"
    target: str
    initiator: str

    def describe(self) -> str:
        return f"create ACL {self.initiator} on {self.target}"


@dataclass(frozen=True)
class CreateMappedLun(Action):
    phase: ClassVar[int] = 27
    verb: ClassVar[str] = "create-mapped-lun"
    target: str
    initiator: str
    mapped_lun: int
    tpg_lun: int

    def describe(self) -> str:
        return f"map LUN {self.tpg_lun} as LUN {self.mapped_lun} for {self.initiator} on {self.target}"


@dataclass(frozen=True)
class SetAclChap(Action):
    """Carries secret *file paths* only; apply reads the values.  An empty
    ``userid`` clears CHAP on the ACL."""

    phase: ClassVar[int] = 28
    verb: ClassVar[str] = "set-acl-chap"
    target: str
    initiator: str
    userid: str
    password_file: Path | None
    mutual_userid: str = ""
    mutual_password_file: Path | None = None
    reason: str = ""
    session: str = ""

    @property
    def destructive(self) -> bool:
        return bool(self.session)

    def describe(self) -> str:
        if not self.userid:
            return f"clear CHAP of ACL {self.initiator} on {self.target}{_while(self.session)}"
        mutual = f", mutual CHAP user {self.mutual_userid}" if self.mutual_userid else ""
        why = f" ({self.reason})" if self.reason else ""
        return f"set CHAP user {self.userid}{mutual} on ACL {self.initiator} of {self.target}{why}{_while(self.session)}"


@dataclass(frozen=True)
class EnableTpg(Action):
    phase: ClassVar[int] = 29
    verb: ClassVar[str] = "enable-tpg"
    target: str

    def describe(self) -> str:
        return f"enable tpg {TPG_TAG} of {self.target}"


@dataclass(frozen=True)
class Refusal:
    """Why a plan must not be applied.  ``overridable`` ones go away with
    ``allow_destroy``; conflicts (two writers on one disk, a missing
    directory) never do."""

    subject: str
    reason: str
    overridable: bool = True

    def __str__(self) -> str:
        hint = " (needs --allow-destroy)" if self.overridable else ""
        return f"{self.subject}: {self.reason}{hint}"

    def as_json(self) -> dict[str, Any]:
        return {"subject": self.subject, "reason": self.reason, "overridable": self.overridable}


@dataclass(frozen=True)
class Plan:
    actions: tuple[Action, ...]
    refusals: tuple[Refusal, ...] = ()
    allow_destroy: bool = False

    @property
    def empty(self) -> bool:
        return not self.actions and not self.refusals

    @property
    def refused(self) -> bool:
        return bool(self.refusals)

    def split_refused(self) -> tuple["Plan", tuple[Action, ...]]:
        """What an automatic apply may do: every action of hosts without a
        refusal (a plan without refusals), and the actions it withholds —
        all of a refused host's, so its running objects stay as they are."""
        held = {host_of(r.subject) for r in self.refusals}
        withheld = tuple(a for a in self.actions if host_of(_subject(a)) in held)
        kept = tuple(a for a in self.actions if host_of(_subject(a)) not in held)
        return Plan(actions=kept, allow_destroy=self.allow_destroy), withheld

    def as_json(self) -> dict[str, Any]:
        return {"actions": [a.as_json() for a in self.actions],
                "refusals": [r.as_json() for r in self.refusals],
                "allow_destroy": self.allow_destroy,
                "applicable": not self.refusals}


# -- planning ----------------------------------------------------------------------------

def plan(desired: LioDesired, observed: LioObserved, allow_destroy: bool = False) -> Plan:
    """Actions that converge LIO from ``observed`` to ``desired``.  Pure."""
    actions: list[Action] = []
    conflicts: list[Refusal] = []
    wanted_backstores = {t.backstore.name for t in desired.targets}

    # Owned objects no host asks for any more.
    for target in observed.targets:
        if desired.owns_target(target.iqn) and desired.target(target.iqn) is None:
            actions.append(DeleteTarget(target.iqn, has_luns=any(tpg.luns for tpg in target.tpgs),
                                        session=_sessions(target)))
    for bs in observed.backstores:
        if owns_backstore(bs.name) and bs.name not in wanted_backstores:
            actions.append(_delete_backstore(bs, "no host in the configuration uses it"))

    for target in desired.targets:
        _plan_target(target, observed, actions, conflicts)
    conflicts += _shared_disks(desired, observed, wanted_backstores, allow_destroy)
    conflicts += _foreign_exports(desired, observed)

    actions.sort(key=lambda a: a.phase)  # stable: per-host order kept within a phase
    refusals = [r for r in conflicts if not (allow_destroy and r.overridable)]
    if not allow_destroy:
        refusals += [Refusal(_subject(a), a.describe()) for a in actions if a.destructive]
    return Plan(actions=tuple(actions), refusals=tuple(refusals), allow_destroy=allow_destroy)


def _subject(action: Action) -> str:
    for name in ("target", "name"):
        value = getattr(action, name, None)
        if value:
            return str(value)
    return action.verb


def _sessions(target: TargetObserved | None) -> str:
    """Who is logged in to ``target`` ("" if nobody): the initiators a change could cut off."""
    found = [a.session for tpg in (target.tpgs if target else ()) for a in tpg.acls if a.session is not None]
    return ", ".join(f"{s.initiator} ({'/'.join(s.addresses) or 'address unknown'})" for s in found)


def _plan_target(t: TargetDesired, observed: LioObserved, actions: list[Action], conflicts: list[Refusal]) -> None:
    bs = t.backstore
    target = observed.target(t.iqn)
    live = _sessions(target)
    kept_backstore = _plan_backstore(t, observed, actions, conflicts, live)

    tpg: TpgObserved | None = None
    if target is None:
        actions.append(CreateTarget(t.iqn))
    else:
        tpg = target.tpg(TPG_TAG)
        for other in target.tpgs:
            if other.tag != TPG_TAG:
                actions.append(DeleteTpg(t.iqn, other.tag, has_luns=bool(other.luns), session=live))
    if tpg is None:
        actions.append(CreateTpg(t.iqn))

    # Attributes.
    current_attrs = tpg.attribute_map if tpg else {}
    for name, value in t.attributes:
        if current_attrs.get(name) != value:
            actions.append(SetTpgAttribute(t.iqn, name, value, current_attrs.get(name), live) if tpg
                           else SetTpgAttribute(t.iqn, name, value))

    # Portals.
    have_portals = set(tpg.portals) if tpg else set()
    for portal in sorted(have_portals - set(t.portals)):
        actions.append(DeletePortal(t.iqn, portal, live))
    for portal in sorted(set(t.portals) - have_portals):
        actions.append(CreatePortal(t.iqn, portal))

    # LUNs: exactly LUN 0 → our backstore.
    live_tpg_luns: set[int] = set()
    lun0_ok = False
    for lun in (tpg.luns if tpg else ()):
        ref = f"{lun.backstore[0]}/{lun.backstore[1]}" if lun.backstore else "dangling"
        if lun.index == LUN_INDEX and kept_backstore and lun.backstore == (bs.plugin, bs.name):
            lun0_ok = True
            live_tpg_luns.add(lun.index)
        elif lun.index == LUN_INDEX and lun.backstore and lun.backstore[1] == bs.name:
            actions.append(DeleteLun(t.iqn, TPG_TAG, lun.index, ref, "its backstore is replaced", live))
        else:
            actions.append(DeleteLun(t.iqn, TPG_TAG, lun.index, ref, f"not {bs.plugin}/{bs.name} as LUN {LUN_INDEX}",
                                     live))
    if not lun0_ok:
        actions.append(CreateLun(t.iqn, LUN_INDEX, bs.plugin, bs.name))

    # ACLs: exactly one, for the host's initiator.
    acl: AclObserved | None = None
    for a in (tpg.acls if tpg else ()):
        if a.initiator.lower() == t.initiator:
            acl = a
        else:
            actions.append(DeleteAcl(t.iqn, a.initiator, live))
    if acl is None:
        actions.append(CreateAcl(t.iqn, t.initiator))
        actions.append(CreateMappedLun(t.iqn, t.initiator, LUN_INDEX, LUN_INDEX))
        if t.chap is not None:
            actions.append(_set_chap(t, t.chap, "new ACL"))
    else:
        _plan_mapped_luns(t, acl, live_tpg_luns, actions, live)
        _plan_chap(t, acl, actions, live)

    if tpg is None or not tpg.enabled:
        actions.append(EnableTpg(t.iqn))


def _plan_backstore(t: TargetDesired, observed: LioObserved, actions: list[Action],
                    conflicts: list[Refusal], live: str) -> bool:
    """Plan the host's backstore; True when the existing one is kept as is."""
    bs = t.backstore
    same_name = observed.backstore(bs.name)
    kept = next((o for o in same_name if _backstore_matches(bs, o, observed)), None)
    for o in same_name:
        if o is not kept:
            actions.append(_delete_backstore(o, _replace_reason(bs, o, observed), live))

    if kept is not None:
        return True

    if bs.plugin == "block":
        actions.append(CreateBackstore("block", bs.name, bs.path, None, "use"))
        return False

    assert bs.size is not None
    f: FileObserved | None = observed.file(bs.path)
    if f is None or not f.exists:
        if f is not None and not f.parent_exists:
            conflicts.append(Refusal(bs.name, f"directory {bs.path.parent} does not exist (share not mounted?); "
                                              "create it first", overridable=False))
        actions.append(CreateBackstore("fileio", bs.name, bs.path, bs.size, "create"))
    elif f.kind.startswith("broken symlink"):
        conflicts.append(Refusal(bs.name, f"{bs.path} is a {f.kind} (share not mounted?); "
                                          "nothing is created through it", overridable=False))
        actions.append(CreateBackstore("fileio", bs.name, bs.path, bs.size, "use"))
    elif f.kind != "file":
        conflicts.append(Refusal(bs.name, f"{bs.path} is a {f.kind or 'special file'}, not a regular file "
                                          "(use lun = {{ block = ... }} for devices)", overridable=False))
        actions.append(CreateBackstore("fileio", bs.name, bs.path, bs.size, "use", f.size))
    elif f.size is not None and f.size < bs.size:
        actions.append(CreateBackstore("fileio", bs.name, bs.path, bs.size, "grow", f.size))
    else:
        if f.size is not None and f.size > bs.size:
            # Never shrink: the file stays; LIO would see only its first `size` bytes.
            conflicts.append(Refusal(bs.name, f"{bs.path} is larger ({_size(f.size)}) than the configured "
                                              f"size {_size(bs.size)}; it is never shrunk, and only its first "
                                              f"{_size(bs.size)} would be exported"))
        actions.append(CreateBackstore("fileio", bs.name, bs.path, bs.size, "use", f.size))
    return False


def _shared_disks(desired: LioDesired, observed: LioObserved, wanted_backstores: set[str],
                  allow_destroy: bool) -> list[Refusal]:
    """Two writers on one disk: a host's file or device that already backs
    another backstore (owned or not, unless this plan removes it) or that
    another host wants too."""
    conflicts = []
    claims: list[tuple[str, str, str, bool]] = []   # (identity, backstore name, who holds it, overridable)
    for o in observed.backstores:
        if not o.path:
            continue
        if not owns_backstore(o.name):
            claims.append((observed.identity(o.path), o.name,
                           f"backstore {o.plugin}/{o.name} ({o.path}, which the appliance does not manage)", False))
        elif o.name in wanted_backstores:
            claims.append((observed.identity(o.path), o.name, f"backstore {o.plugin}/{o.name} ({o.path})", False))
        elif not allow_destroy:
            # A removed (or renamed) host's backstore stays until --allow-destroy deletes it
            # (deletions run before creations); an automatic apply keeps it.
            claims.append((observed.identity(o.path), o.name,
                           f"backstore {o.plugin}/{o.name} ({o.path}) of a host no longer configured, "
                           "kept until its removal is allowed", True))
    for t in desired.targets:
        bs = t.backstore
        identity = observed.identity(bs.path)
        holder = next(((who, overridable) for key, name, who, overridable in claims
                       if key == identity and name != bs.name), None)
        if holder is not None:
            conflicts.append(Refusal(bs.name, f"host {t.host}'s LUN {bs.path} is the same disk as {holder[0]}; "
                                              "two writers would corrupt it", overridable=holder[1]))
        claims.append((identity, bs.name, f"host {t.host}'s LUN {bs.path}", False))
    return conflicts


def _foreign_exports(desired: LioDesired, observed: LioObserved) -> list[Refusal]:
    """An owned backstore that a target the appliance does not manage exports: a second
    writer on the host's disk, and deleting the backstore would delete that LUN too
    (rtslib's ``StorageObject.delete()`` removes every LUN on it, in any target)."""
    return [Refusal(lun.backstore[1], f"backstore {lun.backstore[0]}/{lun.backstore[1]} is exported as LUN "
                                      f"{lun.index} of target {target.iqn} tpg {tpg.tag}, which the appliance "
                                      "does not manage; remove that LUN first", overridable=False)
            for target in observed.targets if not desired.owns_target(target.iqn)
            for tpg in target.tpgs for lun in tpg.luns
            if lun.backstore is not None and owns_backstore(lun.backstore[1])]


def _delete_backstore(o: BackstoreObserved, reason: str, session: str = "") -> DeleteBackstore:
    if not o.configured:
        return DeleteBackstore(o.plugin, o.name, None, "never configured (an interrupted apply made it)",
                               unconfigured=True)
    return DeleteBackstore(o.plugin, o.name, o.path, reason, session)


def _backstore_matches(bs: BackstoreDesired, o: BackstoreObserved, observed: LioObserved) -> bool:
    if o.plugin != bs.plugin or o.path is None or observed.identity(o.path) != observed.identity(bs.path):
        return False
    return bs.plugin != "fileio" or o.size == bs.size


def _replace_reason(bs: BackstoreDesired, o: BackstoreObserved, observed: LioObserved) -> str:
    if o.plugin != bs.plugin:
        return f"kind changes from {o.plugin} to {bs.plugin}"
    if o.path is None or observed.identity(o.path) != observed.identity(bs.path):
        return f"backing path changes from {o.path} to {bs.path}"
    return f"size changes from {_size(o.size)} to {_size(bs.size)}"


def _plan_mapped_luns(t: TargetDesired, acl: AclObserved, live_tpg_luns: set[int], actions: list[Action],
                      live: str) -> None:
    ok = False
    for mapped, tpg_lun, write_protect in acl.mapped_luns:
        if tpg_lun not in live_tpg_luns:
            continue   # goes away with the LUN it maps
        if mapped == LUN_INDEX and tpg_lun == LUN_INDEX and not write_protect:
            ok = True
        else:
            actions.append(DeleteMappedLun(t.iqn, acl.initiator, mapped, live))
    if not ok:
        actions.append(CreateMappedLun(t.iqn, t.initiator, LUN_INDEX, LUN_INDEX))


def _plan_chap(t: TargetDesired, acl: AclObserved, actions: list[Action], live: str) -> None:
    c = t.chap
    if c is None:
        if acl.chap_userid or acl.chap_password or acl.chap_mutual_userid or acl.chap_mutual_password:
            actions.append(SetAclChap(t.iqn, acl.initiator, "", None, reason="CHAP not configured", session=live))
        return
    reasons = []
    if acl.chap_userid != c.userid:
        reasons.append("user differs")
    if acl.chap_password != c.password:
        reasons.append("secret differs")
    if acl.chap_mutual_userid != c.mutual_userid:
        reasons.append("mutual user differs")
    if (c.mutual_password or _NO_SECRET) != acl.chap_mutual_password:
        reasons.append("mutual secret differs")
    if reasons:
        actions.append(_set_chap(t, c, ", ".join(reasons), live))


def _set_chap(t: TargetDesired, c: ChapDesired, reason: str, live: str = "") -> SetAclChap:
    return SetAclChap(t.iqn, t.initiator, c.userid, c.password_file,
                      c.mutual_userid, c.mutual_password_file, reason, live)

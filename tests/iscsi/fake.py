"""A pure stand-in for LIO: applies plan actions to ``LioObserved`` data.

Lets the unit tests check "a second plan after apply is empty" without a
kernel.  It follows rtslib's semantics where they matter: deleting a LUN
removes the mapped LUNs that point to it; deleting a backstore removes the
LUNs that export it.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Callable

from appliance.iscsi.desired import Portal, Secret
from appliance.iscsi.observe import (
    AclObserved,
    BackstoreObserved,
    FileObserved,
    LioObserved,
    LunObserved,
    TargetObserved,
    TpgObserved,
)
import importlib

p = importlib.import_module("appliance.iscsi.plan")  # the package exports the function `plan` under the same name


def _map_tpg(obs: LioObserved, iqn: str, fn: Callable[[TpgObserved], TpgObserved], tag: int = 1) -> LioObserved:
    targets = []
    for t in obs.targets:
        if t.iqn == iqn:
            t = replace(t, tpgs=tuple(fn(tpg) if tpg.tag == tag else tpg for tpg in t.tpgs))
        targets.append(t)
    return replace(obs, targets=tuple(targets))


def _map_acl(obs: LioObserved, iqn: str, initiator: str, fn: Callable[[AclObserved], AclObserved]) -> LioObserved:
    return _map_tpg(obs, iqn, lambda tpg: replace(tpg, acls=tuple(fn(a) if a.initiator == initiator else a
                                                                   for a in tpg.acls)))


def _drop_lun(tpg: TpgObserved, index: int) -> TpgObserved:
    return replace(tpg, luns=tuple(l for l in tpg.luns if l.index != index),
                   acls=tuple(replace(a, mapped_luns=tuple(m for m in a.mapped_luns if m[1] != index))
                              for a in tpg.acls))


def apply_actions(obs: LioObserved, the_plan: p.Plan, secrets: Callable[[Path], str]) -> LioObserved:
    for a in the_plan.actions:
        obs = apply_action(obs, a, secrets)
    return obs


def apply_action(obs: LioObserved, a: p.Action, secrets: Callable[[Path], str]) -> LioObserved:
    match a:
        case p.CreateBackstore():
            obs = replace(obs, backstores=obs.backstores + (BackstoreObserved(a.plugin, a.name, str(a.path), a.size),))
            if a.plugin == "fileio":
                files = tuple(f for f in obs.files if f.path != a.path)
                size = max(a.size or 0, a.current_size or 0)
                identity = obs.file(a.path).identity if obs.file(a.path) else ""
                obs = replace(obs, files=files + (FileObserved(a.path, True, "file", size, identity=identity),))
        case p.DeleteBackstore():
            obs = replace(obs, backstores=tuple(b for b in obs.backstores if (b.plugin, b.name) != (a.plugin, a.name)))
            for t in obs.targets:
                for tpg in t.tpgs:
                    for lun in tpg.luns:
                        if lun.backstore == (a.plugin, a.name):
                            obs = _map_tpg(obs, t.iqn, lambda x, i=lun.index: _drop_lun(x, i), tpg.tag)
        case p.CreateTarget():
            obs = replace(obs, targets=obs.targets + (TargetObserved(a.target, ()),))
        case p.DeleteTarget():
            obs = replace(obs, targets=tuple(t for t in obs.targets if t.iqn != a.target))
        case p.CreateTpg():
            attrs = (("authentication", "1"), ("demo_mode_write_protect", "1"), ("generate_node_acls", "0"))
            obs = replace(obs, targets=tuple(
                replace(t, tpgs=t.tpgs + (TpgObserved(a.tpg, False, attrs, (), (), ()),)) if t.iqn == a.target else t
                for t in obs.targets))
        case p.DeleteTpg():
            obs = replace(obs, targets=tuple(
                replace(t, tpgs=tuple(x for x in t.tpgs if x.tag != a.tpg)) if t.iqn == a.target else t
                for t in obs.targets))
        case p.EnableTpg():
            obs = _map_tpg(obs, a.target, lambda t: replace(t, enabled=True))
        case p.SetTpgAttribute():
            obs = _map_tpg(obs, a.target, lambda t: replace(
                t, attributes=tuple(sorted({**t.attribute_map, a.name: a.value}.items()))))
        case p.CreatePortal():
            obs = _map_tpg(obs, a.target, lambda t: replace(t, portals=tuple(sorted(t.portals + (a.portal,)))))
        case p.DeletePortal():
            obs = _map_tpg(obs, a.target, lambda t: replace(t, portals=tuple(x for x in t.portals if x != a.portal)))
        case p.CreateLun():
            obs = _map_tpg(obs, a.target, lambda t: replace(
                t, luns=t.luns + (LunObserved(a.lun, (a.plugin, a.backstore)),)))
        case p.DeleteLun():
            obs = _map_tpg(obs, a.target, lambda t: _drop_lun(t, a.lun), a.tpg)
        case p.CreateAcl():
            obs = _map_tpg(obs, a.target, lambda t: replace(t, acls=t.acls + (AclObserved(a.initiator, ()),)))
        case p.DeleteAcl():
            obs = _map_tpg(obs, a.target, lambda t: replace(t, acls=tuple(x for x in t.acls if x.initiator != a.initiator)))
        case p.CreateMappedLun():
            obs = _map_acl(obs, a.target, a.initiator, lambda x: replace(
                x, mapped_luns=tuple(sorted(x.mapped_luns + ((a.mapped_lun, a.tpg_lun, False),)))))
        case p.DeleteMappedLun():
            obs = _map_acl(obs, a.target, a.initiator, lambda x: replace(
                x, mapped_luns=tuple(m for m in x.mapped_luns if m[0] != a.mapped_lun)))
        case p.SetAclChap():
            def chap(x: AclObserved) -> AclObserved:
                if not a.userid:
                    return replace(x, chap_userid="", chap_password=Secret(""), chap_mutual_userid="",
                                   chap_mutual_password=Secret(""))
                mutual = a.mutual_userid and a.mutual_password_file is not None
                return replace(x, chap_userid=a.userid, chap_password=Secret(secrets(a.password_file)),
                               chap_mutual_userid=a.mutual_userid if mutual else "",
                               chap_mutual_password=Secret(secrets(a.mutual_password_file) if mutual else ""))
            obs = _map_acl(obs, a.target, a.initiator, chap)
        case _:
            raise AssertionError(f"fake LIO does not know {a!r}")
    return obs


__all__ = ["apply_actions", "apply_action", "Portal"]

"""What the CLI and the daemon call: plan, apply, status, format a plan.

Each function opens LIO at the edge (``LioAdapter.open()``) unless an
adapter is passed in (tests, or a caller that keeps one).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from ..config.model import Config
from ..errors import DestructiveChange, IscsiError
from ..filelock import FileLock, LockTimeout
from .desired import LioDesired, SecretReader, desired_state, owns_backstore, read_secret_file
from .lio import LioAdapter
from .plan import Action, Plan, plan

__all__ = ["ApplyReport", "format_plan", "iscsi_apply", "iscsi_plan", "iscsi_status"]


APPLY_LOCK = Path("/run/lock/netboot-iscsi.lock")
# An apply takes seconds; one still holding the lock after this is stuck (a configfs write or a
# backing file's share that hangs): the next gives up and says who holds it, instead of hanging too.
APPLY_LOCK_WAIT = 30.0


@contextlib.contextmanager
def apply_lock(path: Path, wait: float = APPLY_LOCK_WAIT) -> Iterator[None]:
    """An exclusive lock held from observe to the last action; ``IscsiError`` when another
    process holds it for ``wait`` seconds."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock.open(path, wait=wait)
    except OSError as exc:
        raise IscsiError(f"cannot open the apply lock {path}: {exc.strerror}") from exc
    try:
        lock.__enter__()
    except LockTimeout as exc:
        raise IscsiError(f"the iSCSI apply lock {path} is {exc} (another netboot iscsi apply, or netboot "
                         "serve applying, that hangs): nothing was applied") from None
    try:
        yield
    finally:
        lock.__exit__(None, None, None)


@dataclass(frozen=True)
class ApplyReport:
    """What ``iscsi_apply`` did.  ``disabled``: [iscsi] enable = false, LIO untouched.
    ``withheld``: what an automatic apply left undone (refused hosts' actions);
    ``plan.refusals`` say why."""

    done: tuple[str, ...] = ()
    plan: Plan = field(default_factory=lambda: Plan(actions=()))
    remaining: Plan | None = None      # a fresh plan after applying: empty when converged
    disabled: bool = False
    withheld: tuple[Action, ...] = ()

    @property
    def converged(self) -> bool:
        return self.remaining is None or self.remaining.empty

    def __str__(self) -> str:
        if self.disabled:
            return "iSCSI disabled ([iscsi] enable = false): LIO not touched"
        if self.withheld:
            applied = f"{len(self.done)} changes applied; " if self.done else ""
            return (f"{applied}withheld {len(self.withheld)} changes, running objects kept "
                    f"(netboot iscsi plan shows them): " + "; ".join(map(str, self.plan.refusals)))
        if not self.done:
            return "nothing to do (LIO matches the configuration)"
        tail = "" if self.converged else f"; {len(self.remaining.actions)} changes still pending"  # type: ignore[union-attr]
        return f"{len(self.done)} changes applied{tail}"

    def as_json(self) -> dict[str, Any]:
        return {"disabled": self.disabled, "applied": list(self.done), "converged": self.converged,
                "withheld": [a.as_json() for a in self.withheld],
                "plan": self.plan.as_json(),
                "remaining": self.remaining.as_json() if self.remaining is not None else None}


def _backing_paths(desired: LioDesired) -> list[Path]:
    """Every host's file or device: the planner sizes files and compares disks by identity."""
    return [t.backstore.path for t in desired.targets]


def iscsi_plan(config: Config, allow_destroy: bool = False, *, adapter: LioAdapter | None = None,
               secrets: SecretReader = read_secret_file) -> Plan:
    """The plan to converge LIO.  Raises LioUnavailable, ConfigError (secret files).
    With ``[iscsi] enable = false`` LIO is not read and the plan is empty."""
    if not config.iscsi.enable:
        return Plan(actions=())
    desired = desired_state(config, secrets)   # config problems first, before touching LIO
    adapter = adapter or LioAdapter.open()
    observed = adapter.observe(_backing_paths(desired))
    return plan(desired, observed, allow_destroy)


def iscsi_apply(config: Config, allow_destroy: bool = False, *, adapter: LioAdapter | None = None,
                secrets: SecretReader = read_secret_file, save: bool = False,
                lock_path: Path = APPLY_LOCK, lock_wait: float = APPLY_LOCK_WAIT,
                automatic: bool = False) -> ApplyReport:
    """Converge LIO.  Raises ``DestructiveChange`` (nothing applied) when the
    plan has refusals; its ``plan`` attribute holds the plan.

    ``automatic`` (the daemon): never destructive, whatever ``allow_destroy``
    says; a refused host's actions are withheld (reported in the result) and
    every other host is converged."""
    if not config.iscsi.enable:
        return ApplyReport(disabled=True)
    desired = desired_state(config, secrets)
    adapter = adapter or LioAdapter.open()
    with apply_lock(lock_path, lock_wait):   # the daemon and a CLI apply must not interleave
        return _apply(desired, adapter, secrets, allow_destroy and not automatic, save, automatic)


def _apply(desired: LioDesired, adapter: LioAdapter, secrets: SecretReader, allow_destroy: bool,
           save: bool, automatic: bool) -> ApplyReport:
    the_plan = plan(desired, adapter.observe(_backing_paths(desired)), allow_destroy)
    if the_plan.refusals and not automatic:
        exc = DestructiveChange("refused, nothing applied: " + "; ".join(map(str, the_plan.refusals)))
        exc.plan = the_plan  # type: ignore[attr-defined]
        raise exc
    applicable, withheld = the_plan.split_refused()
    if not applicable.actions:
        return ApplyReport(plan=the_plan, remaining=the_plan, withheld=withheld)
    done = adapter.execute(applicable, secrets)
    remaining = plan(desired, adapter.observe(_backing_paths(desired)), allow_destroy)
    if save:
        adapter.save()
    return ApplyReport(done=tuple(done), plan=the_plan, remaining=remaining, withheld=withheld)


def iscsi_status(config: Config, *, adapter: LioAdapter | None = None,
                 secrets: SecretReader = read_secret_file) -> dict[str, Any]:
    """JSON-able status: per host target/LUN/ACL/sessions, pending changes.  No secrets."""
    if not config.iscsi.enable:
        return {"enabled": False, "hosts": {}}
    desired = desired_state(config, secrets)
    adapter = adapter or LioAdapter.open()
    observed = adapter.observe(_backing_paths(desired))
    pending = plan(desired, observed)
    hosts: dict[str, Any] = {}
    for t in desired.targets:
        target = observed.target(t.iqn)
        tpg = target.tpg(1) if target else None
        lun = tpg.lun(0) if tpg else None
        acl = tpg.acl(t.initiator) if tpg else None
        backstores = observed.backstore(t.backstore.name)
        hosts[t.host] = {
            "target": t.iqn,
            "initiator": t.initiator,
            "target_exists": target is not None,
            "enabled": bool(tpg and tpg.enabled),
            "portals": [str(p) for p in (tpg.portals if tpg else ())],
            "backstore": {"name": t.backstore.name, "plugin": t.backstore.plugin, "path": str(t.backstore.path),
                          "size": t.backstore.size, "exists": bool(backstores)},
            "lun0": f"{lun.backstore[0]}/{lun.backstore[1]}" if lun and lun.backstore else None,
            "acl": acl is not None,
            "chap": t.chap is not None,
            "sessions": [s.as_json() for s in observed.sessions(t.iqn)],
        }
    return {
        "enabled": True,
        "hosts": hosts,
        "in_sync": pending.empty,
        "pending": [a.describe() for a in pending.actions],
        "refusals": [str(r) for r in pending.refusals],
        "unmanaged_targets": [t.iqn for t in observed.targets if not desired.owns_target(t.iqn)],
        "unmanaged_backstores": [f"{b.plugin}/{b.name}" for b in observed.backstores if not owns_backstore(b.name)],
    }


def format_plan(the_plan: Plan) -> str:
    """Human-readable plan: ``+`` create/fix, ``-`` delete, ``!`` destructive."""
    if the_plan.empty:
        return "iSCSI: nothing to do (LIO matches the configuration)"
    lines = [f"iSCSI plan: {len(the_plan.actions)} changes"]
    for a in the_plan.actions:
        mark = "!" if a.destructive else ("-" if a.verb.startswith("delete") else "+")
        lines.append(f"  {mark} {a.describe()}")
    if the_plan.refusals:
        lines.append("refused — nothing will be applied:")
        lines += [f"  {r}" for r in the_plan.refusals]
    return "\n".join(lines)

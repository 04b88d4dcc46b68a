"""``netboot iscsi plan|apply|status``: output and exit codes, for the CLI to dispatch.

Signatures: ``cmd_plan(config, args) -> int`` (likewise ``cmd_apply``,
``cmd_status``); ``args`` needs ``json`` and, for plan/apply,
``allow_destroy`` (missing attributes default to False).  Exit codes:
0 ok, 1 failure or refused plan, 2 configuration error.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from ..config.model import Config
from ..errors import ApplianceError, DestructiveChange
from .api import format_plan, iscsi_apply, iscsi_plan, iscsi_status

__all__ = ["cmd_apply", "cmd_plan", "cmd_status"]

DISABLED = "iSCSI is disabled ([iscsi] enable = false): LIO is not touched"


def _flag(args: Any, name: str) -> bool:
    return bool(getattr(args, name, False))


def _emit_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")


def _fail(command: str, exc: ApplianceError, as_json: bool) -> int:
    if as_json:
        _emit_json({"error": str(exc), "kind": type(exc).__name__})
    print(f"netboot iscsi {command}: {exc}", file=sys.stderr)
    return exc.exit_code


def cmd_plan(config: Config, args: Any) -> int:
    as_json = _flag(args, "json")
    if not config.iscsi.enable:
        _emit_json({"enabled": False, "actions": [], "refusals": []}) if as_json else print(DISABLED)
        return 0
    try:
        the_plan = iscsi_plan(config, _flag(args, "allow_destroy"))
    except ApplianceError as exc:
        return _fail("plan", exc, as_json)
    if as_json:
        _emit_json(the_plan.as_json())
    else:
        print(format_plan(the_plan))
    return 1 if the_plan.refusals else 0


def cmd_apply(config: Config, args: Any) -> int:
    as_json = _flag(args, "json")
    try:
        report = iscsi_apply(config, _flag(args, "allow_destroy"))
    except DestructiveChange as exc:
        the_plan = getattr(exc, "plan", None)
        if as_json:
            _emit_json({"error": str(exc), "kind": "DestructiveChange",
                        "plan": the_plan.as_json() if the_plan else None})
        else:
            if the_plan is not None:
                print(format_plan(the_plan))
        print("netboot iscsi apply: refused, nothing applied; re-run with --allow-destroy to make these "
              "changes (LIO objects only: backing files are never deleted or truncated)", file=sys.stderr)
        return exc.exit_code
    except ApplianceError as exc:
        return _fail("apply", exc, as_json)
    if as_json:
        _emit_json(report.as_json())
        return 0 if report.converged else 1
    if report.disabled:
        print(DISABLED)
        return 0
    for line in report.done:
        print(f"  done: {line}")
    print(f"iSCSI: {report}")
    if not report.converged:
        print("netboot iscsi apply: LIO still differs after applying:", file=sys.stderr)
        print(format_plan(report.remaining), file=sys.stderr)  # type: ignore[arg-type]
        return 1
    return 0


def cmd_status(config: Config, args: Any) -> int:
    as_json = _flag(args, "json")
    if not config.iscsi.enable:
        _emit_json({"enabled": False, "hosts": {}}) if as_json else print(DISABLED)
        return 0
    try:
        status = iscsi_status(config)
    except ApplianceError as exc:
        return _fail("status", exc, as_json)
    if as_json:
        _emit_json(status)
        return 0
    rows = [("HOST", "TARGET", "LUN0", "ACL", "CHAP", "SESSIONS")]
    for name, h in sorted(status["hosts"].items()):
        sessions = ", ".join(f"{s['initiator']}@{'/'.join(s['addresses']) or '?'}" for s in h["sessions"]) or "-"
        rows.append((name, h["target"] if h["target_exists"] else f"{h['target']} (missing)",
                     h["lun0"] or "-", "yes" if h["acl"] else "no", "yes" if h["chap"] else "no", sessions))
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())
    print("in sync" if status["in_sync"] else f"{len(status['pending'])} changes pending (netboot iscsi plan)")
    for r in status["refusals"]:
        print(f"refused: {r}")
    if status["unmanaged_targets"] or status["unmanaged_backstores"]:
        print("not managed (left alone): " + ", ".join(status["unmanaged_targets"] + status["unmanaged_backstores"]))
    return 0

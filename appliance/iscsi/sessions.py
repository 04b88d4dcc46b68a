"""Who is logged in, per target, straight from configfs (no rtslib needed).

Cheap enough for the control loop's trial confirmation and for ``status``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .observe import SessionObserved, parse_acl_info

__all__ = ["read_sessions", "read_session_list"]

ISCSI_FABRIC = Path("/sys/kernel/config/target/iscsi")


def read_session_list(fabric: Path = ISCSI_FABRIC) -> list[SessionObserved]:
    """Every logged-in session on every iSCSI target (explicit ACLs)."""
    out: list[SessionObserved] = []
    if not fabric.is_dir():
        return out
    for target in sorted(fabric.iterdir()):
        if not target.name.startswith(("iqn.", "eui.", "naa.")):
            continue   # "discovery_auth", "lio_version"
        for tpg in sorted(target.glob("tpgt_*")):
            tag = int(tpg.name.split("_", 1)[1])
            for acl in sorted((tpg / "acls").glob("*")):
                try:
                    text = (acl / "info").read_text()
                except OSError:
                    continue   # ACL deleted while we looked
                session = parse_acl_info(target.name, tag, text)
                if session is not None:
                    out.append(session)
    return out


def read_sessions(fabric: Path = ISCSI_FABRIC) -> dict[str, list[dict[str, Any]]]:
    """target IQN → sessions as JSON-able dicts (``initiator``, ``addresses``, ``state``, ``tpg``)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for s in read_session_list(fabric):
        out.setdefault(s.target_iqn, []).append(s.as_json())
    return out

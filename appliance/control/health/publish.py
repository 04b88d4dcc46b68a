"""The running daemon's ``HealthReport`` as a file, for ``netboot status`` in another process.

Written atomically (a reader never sees half a file) with the writer's PID: a
file whose process is gone (killed without cleaning up) is stale and ignored.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .model import HealthReport, from_json, to_json

HEALTH_FILE = "health.json"
# The component of a config reload the daemon rejected (it serves the one it loaded last); its
# details name the configuration file the daemon serves.
CONFIG_COMPONENT = "config"


def write_health_file(state_dir: Path, report: HealthReport, pid: int | None = None) -> None:
    """Raises OSError when the state directory cannot be written."""
    pid = os.getpid() if pid is None else pid
    path = state_dir / HEALTH_FILE
    tmp = path.with_name(f".{HEALTH_FILE}.{pid}.tmp")
    tmp.write_text(json.dumps({"pid": pid, **to_json(report)}))
    os.replace(tmp, path)


def remove_health_file(state_dir: Path) -> None:
    try:
        (state_dir / HEALTH_FILE).unlink()
    except OSError:
        pass


def read_health_file(state_dir: Path) -> HealthReport | None:
    """What a running daemon published, or None (no daemon, or it died without cleaning up)."""
    found = read_published(state_dir)
    return found[1] if found is not None else None


def read_published(state_dir: Path) -> tuple[int, HealthReport] | None:
    """(PID, report) of the daemon running on ``state_dir``, or None."""
    try:
        doc = json.loads((state_dir / HEALTH_FILE).read_text())
        pid = int(doc["pid"])
        report = from_json(doc)
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        return None
    if pid <= 0 or not Path(f"/proc/{pid}").exists():
        return None
    return pid, report


def daemon_serving(config_path: Path, state_dir: Path) -> tuple[int, HealthReport] | None:
    """(PID, health) of the running daemon whose configuration file is ``config_path``, or None."""
    running = read_published(state_dir)
    served = running[1].details.get(CONFIG_COMPONENT, {}).get("path") if running else None
    return running if served and os.path.realpath(served) == os.path.realpath(config_path) else None

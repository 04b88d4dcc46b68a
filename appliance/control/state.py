"""Persistent operator state (pins, trials, last-known-good, history) in ``state_dir``.

One JSON file written atomically (temp file, fsync, rename) under an
exclusive ``flock`` so concurrent CLI writers and the daemon serialise.  A
file that does not parse is moved aside (``state.json.corrupt-<time>``) and
reported, never silently dropped.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator, Mapping

from ..errors import StateError
from .selection import HostChoice

STATE_FILE = "state.json"
EVENTS_FILE = "events.jsonl"
LOCK_FILE = ".lock"
HISTORY_LIMIT = 200
EVENTS_MAX_BYTES = 4 << 20

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Trial:
    generation: int
    previous: int | None          # what was served when the trial began
    started: float
    kernel_served_at: float | None = None


@dataclass(frozen=True)
class HostState:
    pin: int | None = None
    trial: Trial | None = None
    last_known_good: int | None = None

    def choice(self) -> HostChoice:
        return HostChoice(pin=self.pin, trial=self.trial.generation if self.trial else None,
                          last_known_good=self.last_known_good)


@dataclass(frozen=True)
class State:
    hosts: Mapping[str, HostState] = field(default_factory=dict)
    history: tuple[dict, ...] = ()          # transitions: {time, host, event, generation, reason}

    def host(self, name: str) -> HostState:
        return self.hosts.get(name, HostState())

    def with_host(self, name: str, hs: HostState, event: str | None = None, generation: int | None = None,
                  reason: str = "", now: float | None = None) -> "State":
        hosts = dict(self.hosts)
        hosts[name] = hs
        history = self.history
        if event:
            entry = {"time": now if now is not None else time.time(), "host": name, "event": event,
                     "generation": generation, "reason": reason}
            history = (*history, entry)[-HISTORY_LIMIT:]
        return State(hosts=hosts, history=history)

    def choices(self) -> dict[str, HostChoice]:
        return {name: hs.choice() for name, hs in self.hosts.items()}


def state_to_json(state: State) -> dict:
    return {
        "version": 1,
        "hosts": {n: {k: v for k, v in asdict(hs).items() if v is not None} for n, hs in state.hosts.items()},
        "history": list(state.history),
    }


def state_from_json(doc: object) -> State:
    """Strict: anything unexpected raises ValueError (the file is then moved aside)."""
    if not isinstance(doc, dict) or doc.get("version") != 1 or not isinstance(doc.get("hosts"), dict):
        raise ValueError("not a version-1 state document")
    hosts = {}
    for name, raw in doc["hosts"].items():
        if not isinstance(raw, dict):
            raise ValueError(f"host {name!r} is not an object")
        trial = raw.get("trial")
        hosts[name] = HostState(
            pin=_opt_int(raw.get("pin")),
            trial=Trial(generation=int(trial["generation"]), previous=_opt_int(trial.get("previous")),
                        started=float(trial["started"]),
                        kernel_served_at=_opt_float(trial.get("kernel_served_at"))) if trial else None,
            last_known_good=_opt_int(raw.get("last_known_good")),
        )
    history = doc.get("history", [])
    if not isinstance(history, list):
        raise ValueError("history is not a list")
    return State(hosts=hosts, history=tuple(h for h in history if isinstance(h, dict)))


def _opt_int(v: object) -> int | None:
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int):
        raise ValueError(f"{v!r} is not a generation number")
    return v


def _opt_float(v: object) -> float | None:
    return None if v is None else float(v)  # type: ignore[arg-type]


class _Corrupt(Exception):
    pass


class StateStore:
    """The state directory: ``load()``, ``update(fn)`` under the lock, boot events."""

    def __init__(self, state_dir: Path) -> None:
        self.dir = state_dir
        self.path = state_dir / STATE_FILE
        self.events_path = state_dir / EVENTS_FILE

    def ensure_dir(self) -> None:
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StateError(f"cannot create state directory {self.dir}: {exc.strerror}") from exc

    @contextmanager
    def locked(self) -> Iterator[None]:
        self.ensure_dir()
        try:
            fd = os.open(self.dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StateError(f"cannot open lock in {self.dir}: {exc.strerror}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def load(self) -> State:
        """Read the state; a corrupt file is moved aside under the lock."""
        try:
            return self._read()
        except _Corrupt:
            with self.locked():
                return self._read_or_set_aside()

    def _read(self) -> State:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return State()
        except OSError as exc:
            raise StateError(f"cannot read {self.path}: {exc.strerror}") from exc
        try:
            return state_from_json(json.loads(data))
        except (ValueError, KeyError, TypeError) as exc:
            raise _Corrupt(str(exc)) from exc

    def reload(self, fallback: State) -> State:
        """Re-read the state for a running daemon.

        A corrupt file is set aside and replaced by ``fallback`` (the last
        state known to be valid), so pins and trials survive a bad edit.
        """
        try:
            return self._read()
        except _Corrupt:
            with self.locked():
                try:
                    return self._read()
                except _Corrupt as exc:
                    self._set_aside(exc)
                    self.save(fallback)
                    return fallback

    def _read_or_set_aside(self) -> State:
        """Caller holds the lock."""
        try:
            return self._read()
        except _Corrupt as exc:
            self._set_aside(exc)
            return State()

    def _set_aside(self, why: _Corrupt) -> Path:
        """Caller holds the lock.  Never overwrites an earlier corrupt file."""
        base = f"{STATE_FILE}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
        aside = self.path.with_name(base)
        n = 1
        while os.path.lexists(aside):
            aside = self.path.with_name(f"{base}-{n}")
            n += 1
        try:
            os.replace(self.path, aside)
        except OSError as exc:
            raise StateError(f"{self.path} is corrupt ({why}) and cannot be set aside: {exc.strerror}") from exc
        log.error("state file %s is corrupt (%s): set aside as %s", self.path, why, aside)
        return aside

    def problem(self) -> str | None:
        """Why the current state file is unreadable, without touching it (for ``check``)."""
        try:
            self._read()
        except _Corrupt as exc:
            return f"{self.path} is corrupt ({exc}); the daemon will set it aside"
        except StateError as exc:
            return str(exc)
        return None

    def corrupt_files(self) -> list[Path]:
        try:
            return sorted(self.dir.glob(f"{STATE_FILE}.corrupt-*"))
        except OSError:
            return []

    def save(self, state: State) -> None:
        self.ensure_dir()
        tmp = self.path.with_name(f".{STATE_FILE}.{os.getpid()}.tmp")
        data = json.dumps(state_to_json(state), indent=1, sort_keys=True).encode()
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
            dfd = os.open(self.dir, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        except OSError as exc:
            raise StateError(f"cannot write {self.path}: {exc.strerror}") from exc

    def update(self, change: "callable[[State], State]") -> State:
        """Read-modify-write under the lock."""
        with self.locked():
            new = change(self._read_or_set_aside())
            self.save(new)
            return new

    def append_event(self, event: dict) -> None:
        """Boot events: one JSON line each, the file rotated once past a few MiB."""
        self.ensure_dir()
        line = (json.dumps(event, sort_keys=True) + "\n").encode()
        try:
            if self.events_path.exists() and self.events_path.stat().st_size > EVENTS_MAX_BYTES:
                os.replace(self.events_path, self.events_path.with_suffix(".jsonl.1"))
            fd = os.open(self.events_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            try:
                os.write(fd, line)
            finally:
                os.close(fd)
        except OSError:
            pass  # boot events are informational; never fail a transfer over them

    def recent_events(self, host: str | None = None, limit: int = 10) -> list[dict]:
        try:
            with open(self.events_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                size = f.tell()
                f.seek(max(0, size - 256 * 1024))
                lines = f.read().splitlines()
        except OSError:
            return []
        out = []
        for raw in reversed(lines):
            try:
                ev = json.loads(raw)
            except ValueError:
                continue
            if host is None or ev.get("host") == host:
                out.append(ev)
                if len(out) >= limit:
                    break
        return out[::-1]

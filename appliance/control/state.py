"""Persistent operator state (pins, trials, last-known-good, history) in ``state_dir``.

One JSON file written atomically (temp file, fsync, rename) under an
exclusive ``flock`` so concurrent CLI writers and the daemon serialise; every
write also refreshes ``state.json.last-good``, a second copy a damaged
``state.json`` can be rebuilt from.  A file that does not decode is never
written over: readers and writers refuse (``StateCorrupt``) after keeping a
copy of its bytes (``state.json.corrupt-<time>``), until the operator runs
``netboot state repair``.
"""

from __future__ import annotations

import json
import logging
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, NamedTuple

from ..errors import StateCorrupt, StateError
from ..filelock import FileLock, LockTimeout
from .state_codec import MAX_STATE_BYTES, Salvage, StateFormatError, decode_state, encode_state, salvage_state
from .state_model import HISTORY_LIMIT, HostState, State, Trial

__all__ = ["HISTORY_LIMIT", "HostState", "Readable", "State", "StateStore", "Trial"]

STATE_FILE = "state.json"
LAST_GOOD_FILE = "state.json.last-good"
CORRUPT_PREFIX = "state.json.corrupt-"
EVENTS_FILE = "events.jsonl"
LOCK_FILE = ".lock"
# Writes hold the lock for milliseconds: a lock taken this long belongs to a hung process.
LOCK_WAIT = 10.0
EVENTS_MAX_BYTES = 4 << 20

log = logging.getLogger(__name__)


class Readable(NamedTuple):
    """What a damaged state file still tells, completed from the last good copy.

    ``sources`` maps each host to where its entry came from: ``file``,
    ``last-good`` (unreadable or cut off in the file) or ``file+last-good``
    (some fields from each).
    """

    state: State
    salvage: Salvage
    sources: dict[str, str]
    last_good: bool          # a valid last-good copy was there


def merge_with_last_good(salvage: Salvage, last_good: State | None) -> Readable:
    """Pure: fields read from the damaged file win; what it lost comes from the last good copy."""
    hosts = dict(salvage.state.hosts)
    sources = {name: "file" for name in hosts}
    if last_good is not None:
        for name, good in last_good.hosts.items():
            if name in salvage.unreadable_hosts:
                read = hosts.get(name, HostState())
                hosts[name] = HostState(
                    pin=read.pin if read.pin is not None else good.pin,
                    trial=read.trial if read.trial is not None else good.trial,
                    last_known_good=read.last_known_good if read.last_known_good is not None else good.last_known_good)
                sources[name] = "file+last-good" if read != HostState() else "last-good"
            elif name not in hosts and not salvage.complete:
                hosts[name] = good
                sources[name] = "last-good"
    history = salvage.state.history or (last_good.history if last_good is not None else ())
    return Readable(State(hosts=hosts, history=history), salvage, sources, last_good is not None)


class StateStore:
    """The state directory: ``load()``, ``update(fn)`` under the lock, boot events."""

    def __init__(self, state_dir: Path, lock_wait: float = LOCK_WAIT) -> None:
        self.dir = state_dir
        self.lock_wait = lock_wait
        self.path = state_dir / STATE_FILE
        self.last_good_path = state_dir / LAST_GOOD_FILE
        self.events_path = state_dir / EVENTS_FILE

    def ensure_dir(self) -> None:
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            raise StateError(f"state directory {self.dir} is not a directory (server.state_dir)") from None
        except OSError as exc:
            raise StateError(f"cannot create state directory {self.dir}: {exc.strerror}") from exc

    @contextmanager
    def locked(self) -> Iterator[None]:
        self.ensure_dir()
        path = self.dir / LOCK_FILE
        try:
            lock = FileLock.open(path, 0o644, wait=self.lock_wait)
        except OSError as exc:
            raise StateError(f"cannot open lock in {self.dir}: {exc.strerror}") from exc
        try:
            lock.__enter__()
        except LockTimeout as exc:
            raise StateError(f"the state lock {path} is {exc} (a hung netboot command?): nothing was changed"
                             + ("" if exc.holder else f"; see who holds it: fuser -v {path}")) from None
        try:
            yield
        finally:
            lock.__exit__(None, None, None)

    # -- reading -------------------------------------------------------------------------

    def load(self) -> State:
        """The state; ``StateCorrupt`` (after keeping a copy) when the file does not decode."""
        data = self._read_bytes(self.path)
        if data is None:
            return State()
        try:
            return decode_state(data)
        except StateFormatError as exc:
            with self.locked():
                raise self._corrupt(data, exc) from None

    def _read_bytes(self, path: Path) -> bytes | None:
        try:
            with open(path, "rb") as f:
                return f.read(MAX_STATE_BYTES + 1)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StateError(f"cannot read {path}: {exc.strerror}") from exc

    def _corrupt(self, data: bytes, why: StateFormatError) -> StateCorrupt:
        """Caller holds the lock."""
        try:
            copy, copy_error = self._preserve(data), None
        except OSError as exc:
            copy, copy_error = None, exc.strerror
        return StateCorrupt(self.path, str(why), copy, copy_error)

    def _preserve(self, data: bytes) -> Path:
        """Keep the damaged bytes as ``state.json.corrupt-<time>`` (once per distinct content)."""
        for existing in self.corrupt_files():
            try:
                if existing.stat().st_size == len(data) and existing.read_bytes() == data:
                    return existing
            except OSError:
                continue
        base = f"{CORRUPT_PREFIX}{time.strftime('%Y%m%dT%H%M%S')}"
        tmp = self.dir / f".{base}.{os.getpid()}.tmp"
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        try:
            n = 0
            while True:
                target = self.dir / (base if n == 0 else f"{base}-{n}")
                try:
                    os.link(tmp, target)         # never replaces an earlier copy
                    break
                except FileExistsError:
                    n += 1
        finally:
            os.unlink(tmp)
        return target

    def problem(self) -> str | None:
        """Why the state file is unusable, without writing anything (for ``check``)."""
        try:
            data = self._read_bytes(self.path)
            if data is not None:
                decode_state(data)
        except StateFormatError as exc:
            return (f"{self.path} is corrupt ({exc}); every command refuses until "
                    "'netboot state repair' (see 'netboot state show')")
        except StateError as exc:
            return str(exc)
        return None

    def readable(self) -> Readable:
        """Everything that can be read from the state file and the last good copy (writes nothing)."""
        data = self._read_bytes(self.path)
        salvage = salvage_state(data) if data is not None else Salvage(State())
        last_good = None
        try:
            raw = self._read_bytes(self.last_good_path)
            last_good = decode_state(raw) if raw is not None else None
        except (StateFormatError, StateError):
            pass
        return merge_with_last_good(salvage, last_good)

    def corrupt_files(self) -> list[Path]:
        try:
            return sorted(self.dir.glob(f"{CORRUPT_PREFIX}*"))
        except OSError:
            return []

    # -- writing -------------------------------------------------------------------------

    def save(self, state: State) -> None:
        self.ensure_dir()
        data = encode_state(state)
        for path in (self.path, self.last_good_path):
            self._write_atomically(path, data)

    def _write_atomically(self, path: Path, data: bytes) -> None:
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
            dfd = os.open(self.dir, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        except OSError as exc:
            raise StateError(f"cannot write {path}: {exc.strerror}") from exc

    def update(self, change: Callable[[State], State]) -> State:
        """Read-modify-write under the lock; a corrupt file is refused, never written over."""
        with self.locked():
            data = self._read_bytes(self.path)
            try:
                state = decode_state(data) if data is not None else State()
            except StateFormatError as exc:
                raise self._corrupt(data, exc) from None
            new = change(state)
            self.save(new)
            return new

    def repair(self) -> tuple[Readable, Path] | None:
        """Replace a corrupt file by what can be read (kept aside first); None when it was fine."""
        with self.locked():
            data = self._read_bytes(self.path)
            if data is None:
                return None
            try:
                decode_state(data)
                return None
            except StateFormatError:
                pass
            try:
                copy = self._preserve(data)
            except OSError as exc:
                raise StateError(f"cannot keep a copy of {self.path} in {self.dir}: {exc.strerror}; "
                                 "nothing was changed") from exc
            readable = self.readable()
            self.save(readable.state)
            return readable, copy

    def append_event(self, event: dict) -> None:
        """Boot events: one JSON line each, the file rotated once past a few MiB.

        Raises StateError when the line cannot be written (the caller counts and reports it).
        """
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
        except OSError as exc:
            raise StateError(f"cannot append to {self.events_path}: {exc.strerror}") from exc

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
            except (ValueError, RecursionError):
                continue
            if not _is_event(ev):       # a damaged line: skipped, as one that is not JSON
                continue
            if host is None or ev.get("host") == host:
                out.append(ev)
                if len(out) >= limit:
                    break
        return out[::-1]


def _is_event(ev: object) -> bool:
    """A boot event as ``append_event`` writes it: an object whose time, if any, is a Unix time
    (a number ``time.localtime`` takes: not NaN, not beyond the year 5000)."""
    if not isinstance(ev, dict):
        return False
    at = ev.get("time")
    return at is None or (isinstance(at, (int, float)) and not isinstance(at, bool) and 0 <= at < 1e11)

"""Path containment: every file served must resolve inside an allowed root."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Callable, NamedTuple

from ..errors import GenerationError, PathEscapesStore


class StoreRoots(NamedTuple):
    """The directories served files may live in (``store_dir`` and firmware paths).

    Containment is decided on resolved paths component by component
    (``Path.is_relative_to``), never by string prefix, so ``/nix/store-evil``
    is not inside ``/nix/store``.
    """

    roots: tuple[Path, ...]

    @classmethod
    def of(cls, *paths: Path) -> "StoreRoots":
        return cls(tuple(Path(os.path.realpath(p)) for p in paths))

    def resolve(self, path: Path | str) -> Path:
        """Resolve symlinks and check the result lies inside a root."""
        if "\0" in str(path):
            raise PathEscapesStore(f"{path!r} contains a NUL byte")
        try:
            real = Path(os.path.realpath(path, strict=True))
        except OSError as exc:
            what = ("is a symlink loop" if exc.errno == errno.ELOOP
                    else "is dangling (does not exist)" if os.path.lexists(path) else "does not exist")
            raise GenerationError(f"{shown_path(path)} {what}") from None
        for root in self.roots:
            if real == root or real.is_relative_to(root):
                return real
        raise PathEscapesStore(f"{shown_path(path)} resolves to {shown_path(real)}, "
                               f"outside {', '.join(map(str, self.roots))}")


def shown_path(path: Path | str) -> str:
    """A path as an error line names it: quoted only when it holds a newline or another control
    character (file names in a store path may), so every problem stays one line."""
    text = str(path)
    return text if text.isprintable() else repr(text)


class StoreCache:
    """Memo of reads of immutable store paths, owned by one long-running process.

    Store paths never change once written, so a valid generation read through
    a link with the same target, or a listing of a store directory, can be
    reused.  Invalid generations are never cached: they may be half-copied.
    """

    def __init__(self, max_entries: int = 4096) -> None:
        self.max_entries = max_entries
        self._generations: dict[tuple[str, str], object] = {}
        self._listings: dict[str, tuple] = {}

    def generation(self, link: Path, number: int, read: Callable[[], object],
                   present: Callable[[object], bool] = lambda hit: True) -> object:
        """``read()``'s valid result memoised by the link's target, while ``present(hit)``: a
        store path can be collected under a link that still names it."""
        try:
            key = (str(link), f"{number}:{os.readlink(link)}")
        except OSError:
            return read()
        hit = self._generations.get(key)
        if hit is not None and not present(hit):
            del self._generations[key]
            hit = None
        if hit is None:
            hit = read()
            if getattr(hit, "valid", False):
                self._bounded(self._generations)[key] = hit
        return hit

    def listing(self, directory: Path, read: Callable[[], tuple]) -> tuple:
        key = str(directory)
        hit = self._listings.get(key)
        if hit is None:
            hit = read()
            self._bounded(self._listings)[key] = hit
        return hit

    def _bounded(self, table: dict) -> dict:
        if len(table) >= self.max_entries:
            table.clear()
        return table


def atomic_symlink(target: str | Path, path: Path) -> None:
    """Point ``path`` at ``target`` in one rename: readers see the old link or the new one."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.unlink()
    except FileNotFoundError:
        pass
    os.symlink(target, tmp)
    os.replace(tmp, path)

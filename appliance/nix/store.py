"""Path containment: every file served must resolve inside an allowed root."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import GenerationError, PathEscapesStore


@dataclass(frozen=True)
class StoreRoots:
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
            kind = "a symlink loop" if exc.errno == 40 else "dangling (does not exist)"
            raise GenerationError(f"{path} is {kind}") from None
        for root in self.roots:
            if real == root or real.is_relative_to(root):
                return real
        raise PathEscapesStore(f"{path} resolves to {real}, outside {', '.join(map(str, self.roots))}")

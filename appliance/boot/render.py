"""Render a host's boot tree (pure): its boot style's files, as one ``BootTree``."""

from __future__ import annotations

from .styles.base import BootInputs
from .tree import BootTree


def render_tree(inputs: BootInputs) -> BootTree:
    selected = inputs.selected
    return BootTree(host=inputs.host.name, generation=selected.number if selected else None,
                    files=inputs.host.boot.render(inputs))


__all__ = ["BootInputs", "render_tree"]

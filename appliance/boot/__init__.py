"""Boot trees: the virtual TFTP file tree of one host, a pure function of its inputs.

``render_tree(BootInputs) -> BootTree`` is pure and asks the host's boot
style (``styles/``, one module per style) for the files; ``gather.py`` reads the file
system (firmware listing, dtbs) to build ``BootInputs``.
"""

from .gather import gather_inputs, list_files
from .render import BootInputs, render_tree
from .styles import STYLES, BootStyle, style_named
from .tree import BootTree, Generated, Source, StoreFile
from .uimage import uimage_script

__all__ = [
    "BootInputs",
    "BootStyle",
    "BootTree",
    "Generated",
    "STYLES",
    "Source",
    "StoreFile",
    "gather_inputs",
    "list_files",
    "render_tree",
    "style_named",
    "uimage_script",
]

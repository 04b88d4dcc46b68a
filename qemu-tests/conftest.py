"""pytest over qemu-tests/: make the ``lab`` package importable."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

"""pytest over qemu-tests/: make the ``lab`` package and the shared ``tests.helpers`` importable."""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(HERE.parent))

"""What makes two LUN paths the same disk, however they are written.

``luns/a.img``, ``luns/../luns/a.img``, a path through a symlinked directory
and a hard link are one file; ``/dev/sdb`` and its ``/dev/disk/by-id`` link
are one device.  Two writers on one disk corrupt it, so paths are compared
by what they resolve to, never as strings.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

__all__ = ["backing_identity"]


def backing_identity(path: Path | str) -> str:
    """A key equal for every name of one backing file or device.

    - a block device (any node or link to it): its device number;
    - an existing file: its file system and inode (hard links included);
    - anything that cannot be looked at (not created yet): the fully
      resolved path, symlinked directories followed.
    """
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return f"path {os.path.realpath(path)}"
    if stat.S_ISBLK(st.st_mode):
        return f"block device {os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
    return f"inode {st.st_dev}:{st.st_ino}"

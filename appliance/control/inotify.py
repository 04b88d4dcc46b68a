"""A minimal inotify binding (ctypes): watch directories, read event names.

Small enough to keep in-tree rather than add a dependency; only what the
control loop needs: non-blocking fd for ``select``, watch descriptors mapped
back to directories.
"""

from __future__ import annotations

import ctypes
import os
import struct
from pathlib import Path
from typing import Iterable

IN_MODIFY = 0x002
IN_ATTRIB = 0x004
IN_CLOSE_WRITE = 0x008
IN_MOVED_FROM = 0x040
IN_MOVED_TO = 0x080
IN_CREATE = 0x100
IN_DELETE = 0x200
IN_DELETE_SELF = 0x400
IN_MOVE_SELF = 0x800
IN_Q_OVERFLOW = 0x4000
IN_IGNORED = 0x8000
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC

DIR_CHANGES = IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_CLOSE_WRITE | IN_ATTRIB | IN_DELETE_SELF | IN_MOVE_SELF

_EVENT = struct.Struct("iIII")


class Inotify:
    def __init__(self) -> None:
        # The C library the interpreter already links (dlopen(NULL)): ctypes.util.find_library
        # would run ldconfig in a subprocess, at every start.
        self._libc = ctypes.CDLL(None, use_errno=True)
        fd = self._libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1 failed")
        self.fd = fd
        self._dirs: dict[int, Path] = {}

    def watch_only(self, directories: Iterable[Path], mask: int = DIR_CHANGES) -> list[Path]:
        """Watch exactly ``directories``; return those that do not exist (yet).

        Directories already watched keep their watch descriptor, so events
        queued for them and not read yet still name their directory: removing
        and re-adding every watch would orphan those events, and an edit made
        just then would be lost.
        """
        kept: dict[int, Path] = {}
        missing = []
        for directory in directories:
            wd = self._libc.inotify_add_watch(self.fd, os.fsencode(directory), mask)
            if wd < 0:
                missing.append(directory)
            else:
                kept[wd] = directory
        for wd in set(self._dirs) - set(kept):
            self._libc.inotify_rm_watch(self.fd, wd)
        self._dirs = kept
        return missing

    def read(self) -> list[tuple[Path | None, str, int]]:
        """Pending events as (directory, name, mask); (None, "", IN_Q_OVERFLOW) on overflow."""
        try:
            data = os.read(self.fd, 65536)
        except BlockingIOError:
            return []
        out = []
        offset = 0
        while offset + _EVENT.size <= len(data):
            wd, mask, _cookie, length = _EVENT.unpack_from(data, offset)
            name = data[offset + _EVENT.size: offset + _EVENT.size + length].rstrip(b"\0")
            offset += _EVENT.size + length
            if mask & IN_IGNORED:
                self._dirs.pop(wd, None)
                continue
            out.append((self._dirs.get(wd), os.fsdecode(name), mask))
        return out

    def close(self) -> None:
        os.close(self.fd)

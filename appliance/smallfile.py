"""Reading a small file whose path someone else chose: a CHAP secret, a toplevel's text file.

The path may name the wrong thing by mistake (a disk image, a FIFO) or on purpose, so the
file is opened without blocking and never read past its bound."""

from __future__ import annotations

import os
import stat


class NotRegularFile(ValueError):
    """The path names a FIFO, a device, a directory: no file to read."""


class FileTooLarge(ValueError):
    """The file holds more than the reader's bound."""


def read_small_file(path: str | os.PathLike, limit: int, *, follow: bool = True) -> bytes:
    """The bytes of the regular file ``path`` if it holds at most ``limit`` bytes.

    ``O_NONBLOCK``: opening a FIFO does not wait for a writer.  At most ``limit + 1`` bytes
    are read, so a disk image named by mistake is not read into memory.  ``follow=False``
    refuses a symlink as the last component (``O_NOFOLLOW``).  Raises ``NotRegularFile``,
    ``FileTooLarge``, or the ``OSError`` of the open."""
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW)
    fd = os.open(path, flags)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise NotRegularFile(path)
        data = b""
        while len(data) <= limit:
            chunk = os.read(fd, limit + 1 - len(data))
            if not chunk:
                break
            data += chunk
    finally:
        os.close(fd)
    if len(data) > limit:
        raise FileTooLarge(path)
    return data

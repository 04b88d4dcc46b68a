"""Log lines for events a network peer can repeat as fast as it likes.

Servers count such events per datagram or request; their log lines go through
a ``LogThrottle``: one line per kind of event per ``interval``, the next one
saying how many were held back.  Keys must come from the configuration and
fixed outcomes, never from what a peer sends, so the table stays small.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable

__all__ = ["LogThrottle"]


class LogThrottle:
    """``throttle(key, level, message, *args)`` logs to ``logger`` unless ``key`` was logged
    less than ``interval`` seconds ago.  Safe to call from several threads."""

    def __init__(self, logger: logging.Logger, interval: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.logger = logger
        self.interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: dict[Hashable, tuple[float, int]] = {}     # key → (when last logged, held back since)

    def __call__(self, key: Hashable, level: int, message: str, *args: object, exc_info: bool = False) -> None:
        now = self._clock()
        with self._lock:
            last = self._keys.get(key)
            if last is not None and now - last[0] < self.interval:
                self._keys[key] = (last[0], last[1] + 1)
                return
            self._keys[key] = (now, 0)
        if last is not None and last[1]:
            message += f" ({last[1]} more like it since the last such line)"
        self.logger.log(level, message, *args, exc_info=exc_info)

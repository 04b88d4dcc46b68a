"""Log lines for events a network peer can repeat as fast as it likes.

Servers count such events per datagram or request; their log lines go through
a ``LogThrottle``: one line per kind of event per ``interval``, the next one
saying how many were held back.  Keys must come from the configuration and
fixed outcomes, never from what a peer sends, so the table stays small.  Should
a caller break that rule anyway, the table is still bounded: past ``max_keys``
kinds logged within one interval, new kinds share one line per interval.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable

__all__ = ["LogThrottle"]

_OVERFLOW = object()      # the key every new kind shares while the table is full


class LogThrottle:
    """``throttle(key, level, message, *args)`` logs to ``logger`` unless ``key`` was logged
    less than ``interval`` seconds ago.  Safe to call from several threads."""

    def __init__(self, logger: logging.Logger, interval: float = 60.0,
                 clock: Callable[[], float] = time.monotonic, max_keys: int = 1024) -> None:
        self.logger = logger
        self.interval = interval
        self.max_keys = max_keys
        self._clock = clock
        self._lock = threading.Lock()
        # key → (when last logged, held back since), oldest line first
        self._keys: dict[Hashable, tuple[float, int]] = {}

    def __call__(self, key: Hashable, level: int, message: str, *args: object, exc_info: bool = False) -> None:
        now = self._clock()
        with self._lock:
            last = self._keys.get(key)
            if last is None and len(self._keys) >= self.max_keys:
                self._expire(now)
                if len(self._keys) >= self.max_keys:
                    key = _OVERFLOW
                    last = self._keys.get(key)
            if last is not None and now - last[0] < self.interval:
                self._keys[key] = (last[0], last[1] + 1)
                return
            self._keys.pop(key, None)        # re-inserted last: the table stays ordered by time
            self._keys[key] = (now, 0)
        if last is not None and last[1]:
            message += f" ({last[1]} more like it since the last such line)"
        self.logger.log(level, message, *args, exc_info=exc_info)

    def _expire(self, now: float) -> None:
        """Forget kinds last logged an interval ago or more: their next line goes out anyway,
        without the count held back."""
        while self._keys:
            oldest = next(iter(self._keys))
            if now - self._keys[oldest][0] < self.interval:
                return
            del self._keys[oldest]

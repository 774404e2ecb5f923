"""Latest-frame-wins hand-over from the subscriber callback to the inference thread.

The callback only stores a reference (never decodes, never waits); the worker takes the newest message.
A message replaced before the worker took it counts as dropped. Memory stays bounded at one message.
"""

from __future__ import annotations

import threading
from typing import Any, Optional, Tuple


class LatestFrameSlot:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: Optional[Tuple[Any, float]] = None
        self._closed = False
        self.received = 0
        self.dropped = 0

    def put(self, item: Any, arrival: float) -> None:
        with self._cond:
            if self._item is not None:
                self.dropped += 1
            self._item = (item, arrival)
            self.received += 1
            self._cond.notify()

    def take(self, timeout: float) -> Optional[Tuple[Any, float]]:
        """The newest (item, arrival time), or None after ``timeout`` s or when closed."""
        with self._cond:
            if self._item is None and not self._closed:
                self._cond.wait(timeout)
            item, self._item = self._item, None
            return item

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

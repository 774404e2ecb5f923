"""Per-stage wall-clock accounting (decode, preprocess, depth net, pose net, points, publish) for
diagnostics and benchmarks. Thread-safe; keeps running sums, not samples, so memory stays flat."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from typing import Dict, Iterator


class StageTimer:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sum: Dict[str, float] = {}
        self._count: Dict[str, int] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - t0)

    def add(self, name: str, seconds: float) -> None:
        with self._lock:
            self._sum[name] = self._sum.get(name, 0.0) + seconds
            self._count[name] = self._count.get(name, 0) + 1

    def means(self) -> Dict[str, float]:
        with self._lock:
            return {k: self._sum[k] / self._count[k] for k in self._sum}

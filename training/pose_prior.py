"""The two-view pose prior of a training run: which frame pairs get one, whether the run uses it, and its cache.

This module owns the step between ``two_view`` (the geometry of one pair of frames) and ``dataset.TripletDataset``
(which hands each sample its prior): for every frame pair that the training triplets use, the relative motion
T_j_j+1 from two-view geometry on the region the networks see, and the decision to use it.

- ``--pose-prior on`` computes every pair; ``off`` none.
- ``--pose-prior auto`` (the default) first looks at up to ``AUTO_PROBE_PAIRS`` pairs spread over the recording.
  Where under ``AUTO_MIN_COVERAGE`` of them have an estimate, the camera moves too little between frames for
  two-view geometry (and what it does accept is unreliable, docs/research.md), so the prior is not used; otherwise
  every pair is computed and the prior is used.
- The estimates are kept in ``<out>/two_view_prior.npz``, keyed by what they depend on (the sequence's frames, its
  crop and camera), so that ``--resume`` and a stuck-run restart do not compute them again.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

__all__ = ["PRIOR_MODES", "AUTO_PROBE_PAIRS", "AUTO_MIN_COVERAGE", "PriorDecision", "decide_prior", "probe_pairs",
           "PriorCache", "sequence_key", "compute_pairs", "PRIOR_CACHE_FILE"]

PRIOR_MODES = ("auto", "on", "off")
# Pairs looked at before ``auto`` decides: enough to tell 3 in 59 (the demo street) from 59 in 59 (1 m a frame)
# with room to spare, few enough to cost a second or two at a 640x480 camera.
AUTO_PROBE_PAIRS = 48
AUTO_MIN_COVERAGE = 0.5
PRIOR_CACHE_FILE = "two_view_prior.npz"   # in the run's --out

Pair = Tuple[int, int]   # (sequence, first frame j): the pair (j, j + 1)


@dataclass(frozen=True)
class PriorDecision:
    """Whether a run uses the two-view pose prior, and the evidence.

    >>> d = decide_prior("auto", known=3, looked_at=48, total=59)
    >>> d.used, d.reason
    (False, 'auto: 3 of 48 frame pairs looked at have a geometric estimate (under half): too little motion between frames for two-view geometry')
    >>> decide_prior("auto", known=40, looked_at=48, total=59).used
    True
    """

    mode: str
    used: bool
    known: int        # pairs with an estimate
    looked_at: int    # pairs computed
    total: int        # pairs the training triplets use
    reason: str

    def to_json(self) -> Dict[str, Any]:
        return asdict(self)


def decide_prior(mode: str, known: int, looked_at: int, total: int) -> PriorDecision:
    """The decision for ``mode`` once ``looked_at`` of the ``total`` pairs have been computed, ``known`` with an
    estimate (for ``on``, every pair; for ``auto``, the probe)."""
    if mode not in PRIOR_MODES:
        raise ValueError(f"pose prior mode must be one of {PRIOR_MODES}, got {mode!r}")
    if mode == "off":
        return PriorDecision(mode, False, 0, 0, total, "off (--pose-prior off)")
    share = known / looked_at if looked_at else 0.0
    if mode == "on":
        return PriorDecision(mode, known > 0, known, looked_at, total,
                             f"on: {known} of {looked_at} training frame pairs have a geometric estimate")
    if looked_at == 0 or share < AUTO_MIN_COVERAGE:
        return PriorDecision(mode, False, known, looked_at, total,
                             f"auto: {known} of {looked_at} frame pairs looked at have a geometric estimate (under half): "
                             "too little motion between frames for two-view geometry")
    return PriorDecision(mode, True, known, looked_at, total,
                         f"auto: {known} of {looked_at} frame pairs looked at have a geometric estimate")


def probe_pairs(pairs: Sequence[Pair], count: int = AUTO_PROBE_PAIRS) -> List[Pair]:
    """Up to ``count`` of ``pairs``, spread evenly over them (the whole recording, not its first seconds).

    >>> probe_pairs([(0, j) for j in range(10)], 3)
    [(0, 0), (0, 4), (0, 9)]
    """
    ordered = sorted(pairs)
    if len(ordered) <= count:
        return ordered
    picks = np.unique(np.round(np.linspace(0, len(ordered) - 1, count)).astype(int))
    return [ordered[i] for i in picks]


class PriorCache:
    """Two-view estimates of a run's frame pairs, on disk (``<out>/two_view_prior.npz``).

    Each sequence's estimates are stored under a key of what they depend on (``sequence_key``); an estimate is
    (4, 4) float32, NaN where the geometry refused the pair. A missing, unreadable or foreign file is an empty cache.

    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "two_view_prior.npz"
    >>> cache = PriorCache(path)
    >>> cache.put("seq-a", 3, np.eye(4, dtype=np.float32))
    >>> cache.save()
    >>> PriorCache(path).get("seq-a", 3).tolist() == np.eye(4).tolist(), PriorCache(path).get("seq-a", 4)
    (True, None)
    """

    def __init__(self, path: Optional[Path]):
        self.path = path
        self._pairs: Dict[str, Dict[int, np.ndarray]] = {}
        self.loaded = 0
        self.note = ""
        if path is not None and path.is_file():
            self._load(path)

    def _load(self, path: Path) -> None:
        try:
            with np.load(path, allow_pickle=False) as f:
                for name in f.files:
                    key, _, j = name.rpartition("/")
                    value = np.asarray(f[name], np.float32)
                    if value.shape != (4, 4) or not key:
                        raise ValueError(f"entry {name!r} of shape {value.shape}")
                    self._pairs.setdefault(key, {})[int(j)] = value
                    self.loaded += 1
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
            self._pairs, self.loaded = {}, 0
            self.note = f"{path}: not a readable cache ({exc}); computing the estimates again"

    def get(self, key: str, j: int) -> Optional[np.ndarray]:
        return self._pairs.get(key, {}).get(j)

    def put(self, key: str, j: int, motion: np.ndarray) -> None:
        self._pairs.setdefault(key, {})[j] = np.asarray(motion, np.float32)

    def save(self) -> None:
        """Written whole and renamed into place: a run stopped mid-write leaves the previous file. A cache that cannot
        be written (disk full) is not a reason to stop training: ``note`` says so and the estimates stay in memory."""
        if self.path is None:
            return
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp.npz")
        arrays: Dict[str, Any] = {f"{key}/{j}": m for key, pairs in self._pairs.items() for j, m in pairs.items()}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            np.savez(tmp, **arrays)
            os.replace(tmp, self.path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            self.note = f"{self.path}: the two-view estimates could not be saved ({exc}); they are computed again next time"


def sequence_key(name: str, frames: int, first_stamp: int, last_stamp: int, crop: Sequence[int], K: np.ndarray) -> str:
    """What a sequence's two-view estimates depend on, as a short digest: its frames (count and time span), the crop
    the networks see and its camera matrix.

    >>> a = sequence_key("bag:/cam", 60, 0, 10, (0, 0, 96, 320), np.eye(3))
    >>> a == sequence_key("bag:/cam", 60, 0, 10, (0, 0, 96, 320), np.eye(3)), a == sequence_key("bag:/cam", 61, 0, 10, (0, 0, 96, 320), np.eye(3))
    (True, False)
    """
    text = json.dumps([name, int(frames), int(first_stamp), int(last_stamp), [int(v) for v in crop],
                       np.round(np.asarray(K, np.float64), 6).tolist()])
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def compute_pairs(pairs: Sequence[Pair], estimate: Callable[[Pair], np.ndarray], keys: Dict[int, str],
                  cache: PriorCache, bar: Any = None, threads: int = 0) -> Dict[Pair, np.ndarray]:
    """``estimate`` of each pair, from the cache where it has it (and into the cache where not), on ``threads``
    threads (0: one per core, at most 8). OpenCV's tracking and RANSAC release the GIL and draw from a fixed seed per
    call, so the estimates do not depend on the threads.

    >>> cache = PriorCache(None)
    >>> found = compute_pairs([(0, 1), (0, 2)], lambda p: np.full((4, 4), p[1], np.float32), {0: "a"}, cache)
    >>> [float(found[p][0, 0]) for p in sorted(found)], float(cache.get("a", 2)[0, 0])
    ([1.0, 2.0], 2.0)
    """
    out: Dict[Pair, np.ndarray] = {}
    missing = []
    for k, j in pairs:
        found = cache.get(keys[k], j)
        if found is None:
            missing.append((k, j))
        else:
            out[(k, j)] = found
            if bar is not None:
                bar.update(1)
    workers = threads or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for (k, j), motion in zip(missing, pool.map(estimate, missing)):
            cache.put(keys[k], j, motion)
            out[(k, j)] = motion
            if bar is not None:
                bar.update(1)
    return out

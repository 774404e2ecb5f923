"""What every benchmark mode shares: latency statistics and the camera frames it times (generated or from a bag)."""

from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import numpy as np


def stats_ms(values_s: Sequence[float]) -> Dict[str, float]:
    """min, mean, p50, p99, max (and std) in milliseconds.

    >>> stats_ms([0.001, 0.003])["mean"]
    2.0
    """
    v = np.asarray(values_s, np.float64) * 1000.0
    if v.size == 0:
        return {}
    return {"min": float(v.min()), "mean": float(v.mean()), "p50": float(np.percentile(v, 50)),
            "p99": float(np.percentile(v, 99)), "max": float(v.max()), "std": float(v.std())}


def generated_frames(width: int, height: int, count: int, seed: int = 0) -> Tuple[List[np.ndarray], np.ndarray]:
    """Rendered street frames (RGB uint8) and their intrinsics."""
    from ...core.synthetic import SceneConfig, SyntheticSequence, TrajectoryConfig

    seq = SyntheticSequence(SceneConfig(seed=seed), TrajectoryConfig(num_frames=count, fps=10.0), width, height)
    return [seq.frame(i)[1] for i in range(count)], seq.K


def bag_frames(path: str, topic: str, info_topic: str, count: int) -> Tuple[List[np.ndarray], np.ndarray]:
    """The first ``count`` frames of ``topic`` in the bag at ``path`` (RGB uint8) and K from ``info_topic``."""
    from ros2_monodepth_training.evaluate import read_ground_truth

    frames, K = read_ground_truth([path], topic, None, None, info_topic=info_topic)
    return [f.rgb for f in frames[:count]], K

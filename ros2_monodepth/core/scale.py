"""Metric scale for monocular depth: one factor applied to depth, points and odometry translation alike.

Modes:
  relative       1.0: depth as the network gives it;
  fixed          a user multiplier;
  stereo         weights trained on stereo pairs: the baseline factor (5.4 for the KITTI Monodepth2 models);
  camera_height  fit the ground plane in the lower image and scale so the camera sits at its known height,
                 smoothed over time (exponential moving average on log-scale).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np

SCALE_MODES = ("relative", "fixed", "stereo", "camera_height")


@dataclass
class PlaneFit:
    """Plane n . p + d = 0 with |n| = 1 and d > 0 (camera on the positive side): d is the camera's height."""

    normal: np.ndarray
    d: float
    inlier_ratio: float


def fit_ground_plane(points: np.ndarray, expected_up: np.ndarray, rng: np.random.Generator,
                     hypotheses: int = 64, inlier_rel: float = 0.03, max_tilt_deg: float = 30.0) -> Optional[PlaneFit]:
    """Robust plane fit (vectorised RANSAC + least-squares refit) to camera-frame points.

    ``expected_up`` is the unit 'up' direction in the camera frame (from the camera mount); planes tilted
    more than ``max_tilt_deg`` from it are rejected. Inlier threshold is relative to the median depth so it
    works at any (unknown) scale.

    Shapes: points (N, 3), expected_up (3,) -> PlaneFit or None.
    """
    pts = points[np.isfinite(points).all(axis=1)]
    if len(pts) < 50:
        return None
    if len(pts) > 4000:
        pts = pts[rng.choice(len(pts), 4000, replace=False)]
    idx = rng.integers(0, len(pts), size=(hypotheses, 3))
    a, b, c = pts[idx[:, 0]], pts[idx[:, 1]], pts[idx[:, 2]]
    n = np.cross(b - a, c - a)
    norm = np.linalg.norm(n, axis=1)
    ok = norm > 1e-12
    if not ok.any():
        return None
    n = n[ok] / norm[ok, None]
    a = a[ok]
    # Orient normals to point 'up', then keep only near-horizontal planes.
    flip = (n @ expected_up) < 0
    n[flip] *= -1
    cos_tilt = n @ expected_up
    horizontal = cos_tilt > math.cos(math.radians(max_tilt_deg))
    if not horizontal.any():
        return None
    n, a = n[horizontal], a[horizontal]
    d = -(n * a).sum(axis=1)
    thresh = inlier_rel * float(np.median(pts[:, 2]))
    residual = np.abs(pts @ n.T + d[None, :])  # (N, H)
    counts = (residual < thresh).sum(axis=0)
    best = int(np.argmax(counts))
    inliers = pts[residual[:, best] < thresh]
    if len(inliers) < 30:
        return None
    centroid = inliers.mean(axis=0)
    _, _, vt = np.linalg.svd(inliers - centroid, full_matrices=False)
    normal = vt[2]
    if normal @ expected_up < 0:
        normal = -normal
    if normal @ expected_up < math.cos(math.radians(max_tilt_deg)):
        return None
    dist = -float(normal @ centroid)
    # The ground is below the camera: the camera is on the 'up' side, so n.0 + d = d > 0.
    if dist <= 0:
        return None
    return PlaneFit(normal, dist, len(inliers) / len(pts))


class ScaleEstimator:
    """Holds the current scale and updates it per frame (only ``camera_height`` looks at the depth)."""

    def __init__(self, mode: str, factor: float = 1.0, stereo_scale: float = 5.4, camera_height: float = 1.0,
                 expected_up: Tuple[float, float, float] = (0.0, -1.0, 0.0), smoothing: float = 0.9,
                 ground_region: float = 0.4, min_inlier_ratio: float = 0.3, seed: int = 0):
        if mode not in SCALE_MODES:
            raise ValueError(f"scale_mode must be one of {SCALE_MODES}, got '{mode}'")
        self.mode = mode
        self.factor = factor
        self.stereo_scale = stereo_scale
        self.camera_height = camera_height
        up = np.asarray(expected_up, np.float64)
        self.expected_up = up / np.linalg.norm(up)
        self.smoothing = smoothing
        self.ground_region = ground_region
        self.min_inlier_ratio = min_inlier_ratio
        self._rng = np.random.default_rng(seed)
        self._log_scale: Optional[float] = None

    @property
    def scale(self) -> float:
        if self.mode == "relative":
            return 1.0
        if self.mode == "fixed":
            return self.factor
        if self.mode == "stereo":
            return self.stereo_scale * self.factor
        return math.exp(self._log_scale) if self._log_scale is not None else 1.0

    @property
    def ready(self) -> bool:
        """False while camera_height mode has not yet seen a ground plane (scale is then 1.0)."""
        return self.mode != "camera_height" or self._log_scale is not None

    def update(self, points_unscaled: np.ndarray) -> float:
        """Feed the frame's camera-frame points (H, W, 3) at network scale; returns the scale to apply."""
        if self.mode != "camera_height":
            return self.scale
        h = points_unscaled.shape[0]
        lower = points_unscaled[int(h * (1.0 - self.ground_region)):].reshape(-1, 3)
        fit = fit_ground_plane(lower, self.expected_up, self._rng)
        if fit is None or fit.inlier_ratio < self.min_inlier_ratio:
            return self.scale
        log_s = math.log(self.camera_height / fit.d)
        if self._log_scale is None:
            self._log_scale = log_s
        else:
            self._log_scale = self.smoothing * self._log_scale + (1.0 - self.smoothing) * log_s
        return self.scale

"""Metric scale for monocular depth: one factor applied to depth, points and odometry translation alike.

Modes (``scale_mode``):
  auto           the default: chosen once the checkpoint and inputs are known (``choose_scale_mode``), in this order:
                 a metric checkpoint as it is; stereo-trained weights by their baseline factor; the robot's live
                 odometry when an odometry topic is given; the ground plane when the camera's height is known;
                 else relative;
  checkpoint     the networks give metres (trained with velocity supervision or a real stereo baseline): 1.0;
  relative       1.0: depth as the network gives it, in arbitrary units;
  fixed          a user multiplier;
  stereo         weights trained on stereo pairs: the baseline factor (5.4 for the KITTI Monodepth2 models);
  camera_height  fit the ground plane in the lower image and scale so the camera sits at its known height,
                 smoothed over time (exponential moving average on log-scale);
  odometry       the robot's measured motion (wheel odometry, VIO, GNSS) against the pose network's translation
                 over a sliding window of frame pairs, outliers rejected, pairs without enough motion skipped
                 (``MotionScale``).
"""

from __future__ import annotations

import bisect
import math
import threading
from collections import deque
from dataclasses import dataclass
from typing import Deque, List, Optional, Sequence, Tuple

import numpy as np

SCALE_MODES = ("auto", "relative", "fixed", "stereo", "camera_height", "odometry", "checkpoint")


@dataclass
class ScaleChoice:
    """The scale mode that runs and why (what ``auto`` resolved to, or that it was asked for)."""

    mode: str
    reason: str


def choose_scale_mode(requested: str, checkpoint_metric: bool = False, checkpoint_scale_source: str = "",
                      checkpoint_stereo: bool = False, live_odometry: str = "", camera_height_from: str = "") -> ScaleChoice:
    """Resolve ``scale_mode``. ``live_odometry``: the odometry topic the node listens to ('' = none);
    ``camera_height_from``: where a known camera height comes from ('' = unknown).

    >>> choose_scale_mode("auto", checkpoint_metric=True, checkpoint_scale_source="velocity supervision").mode
    'checkpoint'
    >>> choose_scale_mode("auto", live_odometry="/odom").mode
    'odometry'
    >>> choose_scale_mode("auto").mode
    'relative'
    """
    if requested != "auto":
        return ScaleChoice(requested, "scale_mode parameter")
    if checkpoint_metric:
        return ScaleChoice("checkpoint", f"the checkpoint is metric ({checkpoint_scale_source or 'its metadata says so'})")
    if checkpoint_stereo:
        return ScaleChoice("stereo", "stereo-trained checkpoint: its baseline factor")
    if live_odometry:
        return ScaleChoice("odometry", f"the robot's odometry on {live_odometry} against the pose network's motion")
    if camera_height_from:
        return ScaleChoice("camera_height", f"ground plane and the camera height from {camera_height_from}")
    return ScaleChoice("relative", "nothing gives the scale: depth is in the network's arbitrary units (train with "
                                   "--odometry-topic, set odometry_topic, or give camera_height)")


class OdometryError(ValueError):
    """An odometry message that is not a pose; ``field`` and ``value`` say what is wrong."""

    def __init__(self, field: str, value: object, reason: str):
        super().__init__(f"{field} = {value}: {reason}")
        self.field, self.value = field, value


class MotionScale:
    """Scale from the robot's measured motion: the distance the camera travelled between two frames (from odometry
    of the robot's base, moved onto the camera with T_base_cam) over the pose network's translation length for the
    same pair, robustly combined over the last ``window`` pairs that moved at least ``min_motion`` metres.

    Odometry and frames arrive on different threads and in any order: a frame pair waits (at most ``max_wait`` s of
    odometry time) until odometry covers its later stamp. Thread-safe.

    >>> m = MotionScale(T_base_cam=np.eye(4), min_pairs=1)
    >>> for k in range(5):
    ...     m.add_odometry(0.1 * k, np.array([0.2 * k, 0.0, 0.0]), np.array([0.0, 0.0, 0.0, 1.0]))
    >>> m.add_prediction(0.1, 0.2, 0.05)     # the network says 0.05, the robot moved 0.2 m
    >>> round(m.scale, 3), m.ready
    (4.0, True)
    """

    def __init__(self, T_base_cam: np.ndarray, window: int = 30, min_motion: float = 0.05, min_pairs: int = 5,
                 max_gap: float = 0.5, max_wait: float = 2.0, history_s: float = 30.0):
        self.window, self.min_motion, self.min_pairs = window, min_motion, min_pairs
        self.max_gap, self.max_wait, self.history_s = max_gap, max_wait, history_s
        self.mount_t = np.asarray(T_base_cam, np.float64)[:3, 3].copy()
        self._lock = threading.Lock()
        self._odom_t: List[float] = []
        self._odom_p: List[np.ndarray] = []           # camera positions in the odometry frame
        self._pending: Deque[Tuple[float, float, float]] = deque(maxlen=256)   # (t0, t1, predicted length)
        self._pairs: Deque[Tuple[float, float]] = deque(maxlen=window)         # (measured, predicted)
        self._scale: Optional[float] = None
        self.pairs_used = 0
        self.pairs_rejected = 0
        self.pairs_slow = 0

    def configure(self, window: int, min_motion: float) -> None:
        with self._lock:
            self.min_motion = min_motion
            if window != self.window:
                self.window = window
                self._pairs = deque(self._pairs, maxlen=window)

    def set_mount(self, T_base_cam: np.ndarray) -> None:
        with self._lock:
            self.mount_t = np.asarray(T_base_cam, np.float64)[:3, 3].copy()
            self._odom_t.clear()
            self._odom_p.clear()

    def add_odometry(self, stamp: float, position: Sequence[float], quaternion_xyzw: Sequence[float]) -> None:
        """One odometry pose of the robot's base (position (3,), orientation as x, y, z, w) at ``stamp`` seconds.
        OdometryError (naming the field) when it is not a pose: NaN, or a quaternion far from unit length."""
        from .geometry import quaternion_to_matrix

        p, q = np.asarray(position, np.float64), np.asarray(quaternion_xyzw, np.float64)
        if not np.all(np.isfinite(p)):
            raise OdometryError("pose.pose.position", p.round(4).tolist(), "not finite")
        norm = float(np.linalg.norm(q)) if np.all(np.isfinite(q)) else float("nan")
        if not abs(norm - 1.0) <= 0.1:
            raise OdometryError("pose.pose.orientation", q.round(4).tolist(), f"not a unit quaternion (norm {norm:.3g})")
        R = quaternion_to_matrix(q / norm)
        camera = p + R @ self.mount_t
        with self._lock:
            if self._odom_t and stamp <= self._odom_t[-1]:
                if stamp < self._odom_t[-1] - self.history_s:   # time went back (bag replayed): start again
                    self._odom_t.clear()
                    self._odom_p.clear()
                else:
                    return                                          # duplicate or out of order: keep the first
            self._odom_t.append(stamp)
            self._odom_p.append(camera)
            while self._odom_t and self._odom_t[0] < stamp - self.history_s:
                self._odom_t.pop(0)
                self._odom_p.pop(0)
            self._resolve()

    def add_prediction(self, t0: float, t1: float, predicted_length: float) -> None:
        """The pose network's (unscaled) translation length between frames stamped ``t0`` and ``t1``."""
        with self._lock:
            self._pending.append((t0, t1, float(predicted_length)))
            self._resolve()

    def _position(self, t: float) -> Optional[np.ndarray]:
        i = bisect.bisect_left(self._odom_t, t)
        if i < len(self._odom_t) and self._odom_t[i] == t:
            return self._odom_p[i]
        if i == 0 or i == len(self._odom_t) or self._odom_t[i] - self._odom_t[i - 1] > self.max_gap:
            return None
        w = (t - self._odom_t[i - 1]) / (self._odom_t[i] - self._odom_t[i - 1])
        return (1 - w) * self._odom_p[i - 1] + w * self._odom_p[i]

    def _resolve(self) -> None:
        newest = self._odom_t[-1] if self._odom_t else -math.inf
        changed = False
        while self._pending:
            t0, t1, predicted = self._pending[0]
            if t1 > newest and t1 - newest < self.max_wait:
                break                      # odometry has not reached this pair yet: wait for it
            self._pending.popleft()
            p0, p1 = self._position(t0), self._position(t1)
            if p0 is None or p1 is None:
                continue                   # not covered
            measured = float(np.linalg.norm(p1 - p0))
            if measured < self.min_motion or predicted <= 1e-9:
                self.pairs_slow += 1       # standing still: no scale information, only noise
                continue
            self._pairs.append((measured, predicted))
            changed = True
        if changed:
            self._estimate()

    def _estimate(self) -> None:
        pairs = np.array(self._pairs)
        log_ratio = np.log(pairs[:, 0] / pairs[:, 1])
        centre = float(np.median(log_ratio))
        spread = max(1.4826 * float(np.median(np.abs(log_ratio - centre))), 0.05)
        keep = np.abs(log_ratio - centre) <= 3.0 * spread
        self.pairs_rejected = int((~keep).sum())
        self.pairs_used = int(keep.sum())
        if self.pairs_used >= self.min_pairs:
            # a ratio of sums: long pairs (less relative noise) count more than short ones
            self._scale = float(pairs[keep, 0].sum() / pairs[keep, 1].sum())

    @property
    def ready(self) -> bool:
        return self._scale is not None

    @property
    def scale(self) -> float:
        return self._scale if self._scale is not None else 1.0


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
    """Holds the current scale and updates it per frame (``camera_height`` looks at the depth, ``odometry`` at the
    robot's motion through ``motion``). ``mode`` is a resolved mode, not 'auto'."""

    def __init__(self, mode: str, factor: float = 1.0, stereo_scale: float = 5.4, camera_height: float = 1.0,
                 expected_up: Tuple[float, float, float] = (0.0, -1.0, 0.0), smoothing: float = 0.9,
                 ground_region: float = 0.4, min_inlier_ratio: float = 0.3, seed: int = 0,
                 motion: Optional[MotionScale] = None, reason: str = ""):
        if mode not in SCALE_MODES or mode == "auto":
            raise ValueError(f"scale mode must be one of {SCALE_MODES[1:]}, got '{mode}'")
        self.mode = mode
        self.reason = reason
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
        self.motion = motion if motion is not None else (MotionScale(np.eye(4)) if mode == "odometry" else None)

    @property
    def scale(self) -> float:
        if self.mode in ("relative", "checkpoint"):
            return 1.0
        if self.mode == "fixed":
            return self.factor
        if self.mode == "stereo":
            return self.stereo_scale * self.factor
        if self.mode == "odometry":
            assert self.motion is not None
            return self.motion.scale
        return math.exp(self._log_scale) if self._log_scale is not None else 1.0

    @property
    def ready(self) -> bool:
        """False while camera_height mode has not yet seen a ground plane, or odometry mode enough motion (the
        scale is then 1.0)."""
        if self.mode == "odometry":
            assert self.motion is not None
            return self.motion.ready
        return self.mode != "camera_height" or self._log_scale is not None

    @property
    def metric(self) -> bool:
        """Whether the scaled output is in metres."""
        return self.mode != "relative" and self.ready

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

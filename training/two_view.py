"""Classical two-view geometry between training frames: the relative rotation and the direction of travel.

This module owns the geometric estimate that issue 23's pose prior is built on: from two frames of one camera and
its intrinsics K, tracked corners (Shi-Tomasi corners followed by pyramidal Lucas-Kanade flow, checked by tracking
back), the essential matrix by RANSAC and its decomposition give the motion between them up to scale. It has no
torch and no ROS imports; training, benchmarks and tests read it alike.

Conventions (REP 103 optical frame: x right, y down, z forward): :class:`TwoViewMotion` describes the pose of the
second camera in the first camera's frame, ``T_first_second``; ``direction`` is its unit translation, so a camera
that drives forward has ``direction`` close to (0, 0, 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import cv2
import numpy as np

__all__ = ["MIN_INLIER_SHARE", "MIN_PARALLAX_PX", "TwoViewMotion", "motion_from_points", "relative_motion", "rotation_angle", "direction_angle"]


# Below half the tracked corners agreeing, the estimate is mostly noise: measured on the synthetic street at 0.1 m a
# frame (median inlier share 0.11, direction wrong by 32 degrees in the median) against 1 m a frame (0.91, 4 degrees).
MIN_INLIER_SHARE = 0.5
# Parallax (px) below which the translation direction is not trusted.
MIN_PARALLAX_PX = 2.0


@dataclass(frozen=True)
class TwoViewMotion:
    """The pose of the second camera in the first camera's frame, up to scale.

    ``rotation`` is R_first_second (3, 3); ``direction`` the unit translation t_first_second (3,); ``inliers`` the
    correspondences that agree with the essential matrix, of ``matches``."""

    rotation: np.ndarray
    direction: np.ndarray
    inliers: int
    matches: int

    @property
    def inlier_share(self) -> float:
        return self.inliers / max(1, self.matches)


def rotation_angle(rotation: np.ndarray) -> float:
    """The angle (rad) of a rotation matrix.

    >>> round(rotation_angle(cv2.Rodrigues(np.array([0.0, 0.1, 0.0]))[0]), 6)
    0.1
    """
    r = np.asarray(rotation, np.float64)
    if r.shape != (3, 3):
        raise ValueError(f"rotation must be (3, 3), got {r.shape}")
    return float(np.arccos(np.clip((np.trace(r) - 1.0) / 2.0, -1.0, 1.0)))


def direction_angle(a: np.ndarray, b: np.ndarray) -> float:
    """The angle (rad) between two translation directions; nan when either is (close to) zero.

    >>> round(direction_angle(np.array([0.0, 0.0, 2.0]), np.array([0.0, 1.0, 1.0])), 4)
    0.7854
    """
    a, b = np.asarray(a, np.float64).reshape(3), np.asarray(b, np.float64).reshape(3)
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na < 1e-12 or nb < 1e-12:
        return float("nan")
    return float(np.arccos(np.clip(a @ b / (na * nb), -1.0, 1.0)))


def motion_from_points(first: np.ndarray, second: np.ndarray, K: np.ndarray, min_inliers: int = 20,
                       min_inlier_share: float = MIN_INLIER_SHARE, min_parallax_px: float = MIN_PARALLAX_PX,
                       ransac_threshold_px: float = 1.0, seed: int = 0) -> Optional[TwoViewMotion]:
    """The motion between two views from matched pixels ``first[i] <-> second[i]`` (N, 2); None when there are
    too few correspondences, too few agree (``min_inliers``, ``min_inlier_share``) or, once the rotation is taken
    out, the inliers move by less than ``min_parallax_px`` in the median (no parallax: any direction fits).

    >>> rng = np.random.default_rng(0)
    >>> K = np.array([[200.0, 0, 160], [0, 200.0, 48], [0, 0, 1]])
    >>> points = np.c_[rng.uniform(-4, 4, 200), rng.uniform(-1, 1, 200), rng.uniform(2, 12, 200)]
    >>> R_12 = cv2.Rodrigues(np.array([0.0, 0.05, 0.0]))[0]; t_12 = np.array([0.1, 0.0, 1.0])
    >>> in_second = (points - t_12) @ R_12            # X_second = R_12^T (X_first - t_12)
    >>> project = lambda X: (X @ K.T)[:, :2] / X[:, 2:]
    >>> motion = motion_from_points(project(points), project(in_second), K)
    >>> bool(rotation_angle(motion.rotation.T @ R_12) < 1e-3), bool(direction_angle(motion.direction, t_12) < 1e-2)
    (True, True)
    >>> motion_from_points(project(points), project(points), K) is None     # a camera that did not move
    True
    """
    p1 = np.asarray(first, np.float64).reshape(-1, 2)
    p2 = np.asarray(second, np.float64).reshape(-1, 2)
    if p1.shape != p2.shape:
        raise ValueError(f"first and second must hold the same number of points, got {p1.shape} and {p2.shape}")
    K = np.asarray(K, np.float64)
    if K.shape != (3, 3):
        raise ValueError(f"K must be (3, 3), got {K.shape}")
    if len(p1) < max(8, min_inliers):
        return None
    if np.median(np.linalg.norm(p2 - p1, axis=1)) < min_parallax_px / 4:
        return None   # the points did not move: no rotation and no parallax, and degenerate for the solver below
    cv2.setRNGSeed(seed)
    try:
        E, mask = cv2.findEssentialMat(p1, p2, K, method=cv2.RANSAC, prob=0.999, threshold=ransac_threshold_px)
    except cv2.error:
        return None   # the five-point solver refused the sample (degenerate configurations, e.g. all points equal)
    if E is None or E.shape != (3, 3) or mask is None:
        return None  # several solutions (E stacked) or none: not one answer to give
    inliers, R_21, t_21, _ = cv2.recoverPose(E, p1, p2, K, mask=mask.copy())
    if inliers < max(min_inliers, min_inlier_share * len(p1)):
        return None
    # the translation direction is only as good as the parallax it rests on: what is left of the flow once the
    # rotation is taken out (where a pure rotation would move each inlier, K R K^-1 x)
    used = mask[:, 0] > 0
    rotated = cv2.perspectiveTransform(p1[used].reshape(-1, 1, 2), K @ R_21 @ np.linalg.inv(K)).reshape(-1, 2)
    if np.median(np.linalg.norm(p2[used] - rotated, axis=1)) < min_parallax_px:
        return None
    # OpenCV's R, t map first-camera points into the second camera (T_second_first); the pose of the second
    # camera in the first is its inverse
    rotation = R_21.T
    direction = (-R_21.T @ t_21).reshape(3)
    return TwoViewMotion(rotation, direction / np.linalg.norm(direction), int(inliers), int(len(p1)))


def relative_motion(first: np.ndarray, second: np.ndarray, K: np.ndarray, max_corners: int = 600,
                    min_inliers: int = 20, min_inlier_share: float = MIN_INLIER_SHARE) -> Optional[TwoViewMotion]:
    """The motion between two frames (H, W, 3) RGB or (H, W) grey uint8 of one camera with intrinsics ``K``;
    None where the geometry cannot say (too little texture, no parallax, a degenerate scene).

    Corners of the first frame are followed into the second with pyramidal Lucas-Kanade flow and back again; only
    those that return within half a pixel are used."""
    g1, g2 = _grey(first), _grey(second)
    if g1.shape != g2.shape:
        raise ValueError(f"the two frames differ in size: {g1.shape} and {g2.shape}")
    corners = cv2.goodFeaturesToTrack(g1, maxCorners=max_corners, qualityLevel=0.005, minDistance=5, blockSize=5)
    if corners is None or len(corners) < 8:
        return None
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 30, 0.01)
    forward, ok_f, _ = cv2.calcOpticalFlowPyrLK(g1, g2, corners, None, winSize=(21, 21), maxLevel=4, criteria=criteria)
    back, ok_b, _ = cv2.calcOpticalFlowPyrLK(g2, g1, forward, None, winSize=(21, 21), maxLevel=4, criteria=criteria)
    h, w = g1.shape
    inside = (forward[:, 0, 0] >= 0) & (forward[:, 0, 0] < w) & (forward[:, 0, 1] >= 0) & (forward[:, 0, 1] < h)
    good = (ok_f[:, 0] == 1) & (ok_b[:, 0] == 1) & inside & (np.linalg.norm(back - corners, axis=2)[:, 0] < 0.5)
    return motion_from_points(corners[good, 0], forward[good, 0], K, min_inliers=min_inliers,
                              min_inlier_share=min_inlier_share)


def _grey(frame: np.ndarray) -> np.ndarray:
    image = np.asarray(frame)
    if image.dtype != np.uint8:
        raise ValueError(f"frames must be uint8, got {image.dtype}")
    if image.ndim == 3 and image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    if image.ndim == 2:
        return image
    raise ValueError(f"frames must be (H, W, 3) or (H, W), got {image.shape}")

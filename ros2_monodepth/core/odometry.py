"""Visual odometry by chaining the pose network's frame-to-frame motion.

Frames: the network measures the camera (optical frame) motion ``T_c0_c1``; with the mount ``T_base_cam``
the base moves by ``T_b0_b1 = T_base_cam @ T_c0_c1 @ inv(T_base_cam)``, and the odometry pose
``T_odom_base`` is the product of these, starting at identity (REP 105: odom is continuous, starts where
the robot starts). Twist is expressed in the base frame (nav_msgs/Odometry's child frame).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from .geometry import matrix_to_rotvec, se3_inverse


@dataclass
class OdometryStep:
    """Result of one update."""

    T_odom_base: np.ndarray
    linear: np.ndarray = field(default_factory=lambda: np.zeros(3))   # m/s in base frame
    angular: np.ndarray = field(default_factory=lambda: np.zeros(3))  # rad/s in base frame
    integrated: bool = False   # False: first frame of a chain (no motion measured)
    reset_reason: str = ""     # why the chain was restarted, empty if it was not


class OdometryIntegrator:
    """Integrates scaled relative camera motions; restarts the chain on time jumps.

    * stamp going backwards (e.g. a bag replayed from its start): pose back to identity, chain restarted;
    * gap longer than ``max_gap_s``: chain restarted (no motion integrated over the gap), pose kept.
    """

    def __init__(self, T_base_cam: np.ndarray, max_gap_s: float = 1.0):
        self.T_base_cam = np.asarray(T_base_cam, np.float64)
        self.T_cam_base = se3_inverse(self.T_base_cam)
        self.max_gap_s = max_gap_s
        self.T_odom_base = np.eye(4)
        self.last_stamp: Optional[float] = None

    def check_stamp(self, stamp: float) -> str:
        """'' if ``stamp`` can be chained to the previous frame, else the reason it cannot."""
        if self.last_stamp is None:
            return "first frame"
        if stamp <= self.last_stamp:
            return f"stamp went backwards ({stamp:.3f} s after {self.last_stamp:.3f} s)"
        if stamp - self.last_stamp > self.max_gap_s:
            return f"gap of {stamp - self.last_stamp:.3f} s exceeds max_frame_gap {self.max_gap_s:.3f} s"
        return ""

    def start(self, stamp: float, reason: str) -> OdometryStep:
        """Begin a new chain at this frame."""
        if self.last_stamp is not None and stamp <= self.last_stamp:
            self.T_odom_base = np.eye(4)
        self.last_stamp = stamp
        return OdometryStep(self.T_odom_base.copy(), reset_reason=reason)

    def update(self, stamp: float, T_c0_c1: np.ndarray, scale: float) -> OdometryStep:
        """Integrate the camera motion between the previous frame and this one (``check_stamp`` was '')."""
        assert self.last_stamp is not None
        dt = stamp - self.last_stamp
        T = np.array(T_c0_c1, np.float64, copy=True)
        T[:3, 3] *= scale
        T_b0_b1 = self.T_base_cam @ T @ self.T_cam_base
        self.T_odom_base = self.T_odom_base @ T_b0_b1
        # Keep the rotation orthonormal over long runs.
        u, _, vt = np.linalg.svd(self.T_odom_base[:3, :3])
        self.T_odom_base[:3, :3] = u @ vt
        self.last_stamp = stamp
        linear = T_b0_b1[:3, 3] / dt
        angular = matrix_to_rotvec(T_b0_b1[:3, :3]) / dt
        return OdometryStep(self.T_odom_base.copy(), linear, angular, integrated=True)

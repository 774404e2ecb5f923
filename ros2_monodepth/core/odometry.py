"""Visual odometry by chaining the pose network's frame-to-frame motion, and the rule for which frame stamps it
trusts.

Frames: the network measures the camera (optical frame) motion ``T_c0_c1``; with the mount ``T_base_cam``
the base moves by ``T_b0_b1 = T_base_cam @ T_c0_c1 @ inv(T_base_cam)``, and the odometry pose
``T_odom_base`` is the product of these, starting at identity (REP 105: odom is continuous, starts where
the robot starts). Twist is expressed in the base frame (nav_msgs/Odometry's child frame).

Stamps (``StampGate``): REP 105 requires odom to be continuous, so one bad stamp must never move the pose. A frame
whose stamp is zero, not after the last accepted one, or far ahead of the clock is dropped and the pose kept. A
jump in time beyond ``jump_threshold`` (a replayed bag, a simulator reset, a camera restarted after a long pause)
is believed only when ``confirm_frames`` consecutive frames agree with the new time line, as tf2 clears its buffer
when ROS time jumps back: then a jump back restarts the chain at the origin, and a jump forward restarts it where
the robot is.
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


@dataclass(frozen=True)
class StampDecision:
    """What to do with a frame of a given stamp: ``accept`` it or drop it (``reason`` says why); when accepted,
    whether the odometry chain restarts (``restart`` names why) and whether at the origin (``reset``)."""

    accept: bool
    reason: str = ""
    restart: str = ""
    reset: bool = False
    kind: str = ""             # short category for counting: 'zero', 'not after last', 'ahead of clock', 'unconfirmed jump'


class StampGate:
    """Which frame stamps to trust (module docstring). Not thread-safe: one caller, the worker.

    >>> gate = StampGate(jump_threshold=5.0, confirm_frames=3, max_lead=0.0)
    >>> gate.check(100.0).accept, gate.check(100.1).accept, gate.check(100.1).reason
    (True, True, 'stamp 100.100 s is not after the last accepted 100.100 s (duplicate or out of order)')
    >>> [gate.check(t).accept for t in (9999.0, 100.2)]      # one stamp far ahead, then the time line goes on
    [False, True]
    """

    def __init__(self, jump_threshold: float = 5.0, confirm_frames: int = 3, max_lead: float = 10.0):
        self.jump_threshold = jump_threshold
        self.confirm_frames = max(1, int(confirm_frames))
        self.max_lead = max_lead          # seconds a stamp may be ahead of the clock (0: not checked)
        self.last: Optional[float] = None
        self._candidate: Optional[float] = None   # newest stamp of a time line that is not confirmed yet
        self._candidate_count = 0

    def check(self, stamp: float, clock_now: Optional[float] = None) -> StampDecision:
        """Decide for a frame stamped ``stamp`` (seconds); ``clock_now`` is the node's clock (None or 0: unknown)."""
        if not np.isfinite(stamp) or stamp <= 0.0:
            return StampDecision(False, f"stamp {stamp} is not set (zero or negative): the camera driver did not stamp "
                                        "the frame", kind="zero")
        if self.max_lead > 0 and clock_now and stamp > clock_now + self.max_lead:
            return StampDecision(False, f"stamp {stamp:.3f} s is {stamp - clock_now:.1f} s ahead of the node's clock "
                                        f"(more than max_stamp_lead {self.max_lead:g} s)", kind="ahead of clock")
        last = self.last
        if last is None:
            return self._accept(stamp, "first frame")
        if last < stamp <= last + self.jump_threshold:
            self._candidate, self._candidate_count = None, 0
            return self._accept(stamp)
        if last - self.jump_threshold <= stamp <= last:
            return StampDecision(False, f"stamp {stamp:.3f} s is not after the last accepted {last:.3f} s "
                                        "(duplicate or out of order)", kind="not after last")
        # beyond the threshold, back or forward: a new time line, believed once confirmed
        if self._candidate is not None and self._candidate < stamp <= self._candidate + self.jump_threshold:
            self._candidate_count += 1
        else:
            self._candidate_count = 1
        self._candidate = stamp
        direction = "back" if stamp < last else "forward"
        if self._candidate_count < self.confirm_frames:
            return StampDecision(False, f"stamp {stamp:.3f} s jumps {direction} {abs(stamp - last):.3f} s from the last "
                                        f"accepted {last:.3f} s; dropped until {self.confirm_frames} frames in a row "
                                        f"confirm the jump ({self._candidate_count} so far)", kind="unconfirmed jump")
        self._candidate, self._candidate_count = None, 0
        return self._accept(stamp, f"time jumped {direction} by {abs(stamp - last):.3f} s (confirmed by "
                                   f"{self.confirm_frames} frames)", reset=direction == "back")

    def _accept(self, stamp: float, restart: str = "", reset: bool = False) -> StampDecision:
        self.last = stamp
        return StampDecision(True, restart=restart, reset=reset)


class OdometryIntegrator:
    """Integrates scaled relative camera motions. Which frames are chained is decided by the caller (``StampGate``
    and the pipeline); the integrator restarts the chain on request, and itself on a gap longer than
    ``max_gap_s`` (no motion integrated over the gap, pose kept)."""

    def __init__(self, T_base_cam: np.ndarray, max_gap_s: float = 1.0):
        self.T_base_cam = np.asarray(T_base_cam, np.float64)
        self.T_cam_base = se3_inverse(self.T_base_cam)
        self.max_gap_s = max_gap_s
        self.T_odom_base = np.eye(4)
        self.last_stamp: Optional[float] = None

    def set_mount(self, T_base_cam: np.ndarray) -> None:
        """A new camera mount (for example found on /tf_static); the chain continues from the current pose."""
        self.T_base_cam = np.asarray(T_base_cam, np.float64)
        self.T_cam_base = se3_inverse(self.T_base_cam)

    def gap(self, stamp: float) -> str:
        """'' when ``stamp`` can be chained to the previous frame, else why not (first frame, gap too long)."""
        if self.last_stamp is None:
            return "first frame"
        if stamp - self.last_stamp > self.max_gap_s:
            return f"gap of {stamp - self.last_stamp:.3f} s exceeds max_frame_gap {self.max_gap_s:.3f} s"
        return ""

    def start(self, stamp: float, reason: str, reset: bool = False) -> OdometryStep:
        """Begin a new chain at this frame: at the origin when ``reset`` (time went back), else where the robot is."""
        if reset:
            self.T_odom_base = np.eye(4)
        self.last_stamp = stamp
        return OdometryStep(self.T_odom_base.copy(), reset_reason=reason)

    def update(self, stamp: float, T_c0_c1: np.ndarray, scale: float) -> OdometryStep:
        """Integrate the camera motion between the previous frame and this one (``gap`` was '')."""
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

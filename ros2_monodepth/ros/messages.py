"""Small builders for the standard messages the node publishes (CameraInfo, Odometry, TF, diagnostics)."""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np
from geometry_msgs.msg import TransformStamped
from nav_msgs.msg import Odometry
from sensor_msgs.msg import CameraInfo

from ..core.geometry import matrix_to_quaternion


def camera_info_msg(header: Any, K: np.ndarray, width: int, height: int, distortion_model: str = "plumb_bob",
                    roi: Optional[Tuple[int, int, int, int]] = None) -> CameraInfo:
    """CameraInfo for a rectified image of the given size (D zero, R identity, P = [K | 0]); ``roi`` (y0, x0, h, w)
    is the region of valid pixels (the part of the camera image the network saw), None for the whole image."""
    msg = CameraInfo()
    if roi is not None:
        msg.roi.y_offset, msg.roi.x_offset, msg.roi.height, msg.roi.width = (int(v) for v in roi)
    msg.header = header
    msg.width, msg.height = int(width), int(height)
    msg.distortion_model = distortion_model
    msg.d = [0.0] * 5
    msg.k = [float(x) for x in np.asarray(K, np.float64).ravel()]
    msg.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    P = np.zeros((3, 4))
    P[:, :3] = K
    msg.p = [float(x) for x in P.ravel()]
    return msg


def transform_msg(header: Any, child_frame: str, T: np.ndarray) -> TransformStamped:
    t = TransformStamped()
    t.header = header
    t.child_frame_id = child_frame
    t.transform.translation.x, t.transform.translation.y, t.transform.translation.z = (float(v) for v in T[:3, 3])
    q = matrix_to_quaternion(T[:3, :3])
    t.transform.rotation.x, t.transform.rotation.y, t.transform.rotation.z, t.transform.rotation.w = (float(v) for v in q)
    return t


def odometry_msg(header: Any, child_frame: str, T: np.ndarray, linear: np.ndarray, angular: np.ndarray,
                 pose_var: Sequence[float], twist_var: Sequence[float]) -> Odometry:
    msg = Odometry()
    msg.header = header
    msg.child_frame_id = child_frame
    p = msg.pose.pose
    p.position.x, p.position.y, p.position.z = (float(v) for v in T[:3, 3])
    q = matrix_to_quaternion(T[:3, :3])
    p.orientation.x, p.orientation.y, p.orientation.z, p.orientation.w = (float(v) for v in q)
    msg.pose.covariance = [float(v) for v in np.diag(np.asarray(pose_var, np.float64)).ravel()]
    tw = msg.twist.twist
    tw.linear.x, tw.linear.y, tw.linear.z = (float(v) for v in linear)
    tw.angular.x, tw.angular.y, tw.angular.z = (float(v) for v in angular)
    msg.twist.covariance = [float(v) for v in np.diag(np.asarray(twist_var, np.float64)).ravel()]
    return msg


def diagnostic_status(name: str, hardware_id: str, level: int, message: str, values: Dict[str, Any]) -> Any:
    from diagnostic_msgs.msg import DiagnosticStatus, KeyValue

    status = DiagnosticStatus()
    status.level = bytes([level]) if isinstance(DiagnosticStatus().level, bytes) else level
    status.name = name
    status.hardware_id = hardware_id
    status.message = message
    status.values = [KeyValue(key=k, value=str(v)) for k, v in values.items()]
    return status

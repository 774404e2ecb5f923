"""Camera geometry as small composable torch/numpy functions (kornia style; shapes in docstrings).

Conventions (REP 103 optical frame): x right, y down, z forward. ``K`` is the 3x3 pinhole matrix.
A transform ``T_a_b`` is the pose of frame b expressed in frame a: it maps points in b's coordinates into
a's (p_a = T_a_b @ p_b).

Owns: disparity <-> depth, axis-angle -> rotation, pose-network parameters -> 4x4, back-projection and
projection, intrinsics scaling, and SE(3) helpers used by odometry.
"""

from __future__ import annotations

from typing import Tuple

import numpy as np
import torch

from .intrinsics import scale_intrinsics  # noqa: F401  (numpy only, kept torch-free for the model contract)


def disp_to_depth(disp: torch.Tensor, min_depth: float, max_depth: float) -> Tuple[torch.Tensor, torch.Tensor]:
    """Map the network's sigmoid output to (scaled disparity, depth), as in Monodepth2.

    disp in [0, 1] -> scaled_disp in [1/max_depth, 1/min_depth]; depth = 1 / scaled_disp.

    Shapes: any -> (same, same).
    """
    min_disp = 1.0 / max_depth
    max_disp = 1.0 / min_depth
    scaled = min_disp + (max_disp - min_disp) * disp
    return scaled, 1.0 / scaled


def axis_angle_to_matrix(axis_angle: torch.Tensor) -> torch.Tensor:
    """Rodrigues' formula.

    Shapes: (B, 3) -> (B, 3, 3).
    """
    angle = torch.linalg.norm(axis_angle, dim=-1, keepdim=True)  # (B, 1)
    axis = axis_angle / angle.clamp_min(1e-7)
    x, y, z = axis.unbind(-1)
    c = torch.cos(angle)[..., 0]
    s = torch.sin(angle)[..., 0]
    C = 1.0 - c
    rot = torch.stack(
        [
            x * x * C + c, x * y * C - z * s, x * z * C + y * s,
            y * x * C + z * s, y * y * C + c, y * z * C - x * s,
            z * x * C - y * s, z * y * C + x * s, z * z * C + c,
        ],
        dim=-1,
    )
    return rot.reshape(axis_angle.shape[:-1] + (3, 3))


def pose_params_to_matrix(axis_angle: torch.Tensor, translation: torch.Tensor, invert: bool = False) -> torch.Tensor:
    """Pose-network parameters -> 4x4 transform [R | t] (or its inverse when ``invert``).

    For a frame pair (a, b) fed in temporal order the Monodepth2 pose network's non-inverted output is
    ``T_b_a``: it carries points in a's camera coordinates into b's (used to warp a's pixels into b).

    Shapes: (B, 3), (B, 3) -> (B, 4, 4).
    """
    rot = axis_angle_to_matrix(axis_angle)
    t = translation.unsqueeze(-1)
    if invert:
        rot = rot.transpose(-1, -2)
        t = -(rot @ t)
    # Built by concatenation (no in-place writes) so that the ONNX graph stays plain.
    top = torch.cat([rot, t], dim=-1)  # (B, 3, 4)
    bottom = torch.zeros_like(top[..., :1, :])
    bottom = torch.cat([bottom[..., :3], torch.ones_like(bottom[..., 3:])], dim=-1)
    return torch.cat([top, bottom], dim=-2)


def pixel_grid(height: int, width: int, device: torch.device | None = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Homogeneous pixel centres' coordinates (u, v, 1) with u = column, v = row.

    Shapes: -> (3, H*W).
    """
    v, u = torch.meshgrid(
        torch.arange(height, device=device, dtype=dtype), torch.arange(width, device=device, dtype=dtype), indexing="ij"
    )
    return torch.stack([u.reshape(-1), v.reshape(-1), torch.ones_like(u).reshape(-1)], 0)


def backproject(depth: torch.Tensor, inv_K: torch.Tensor) -> torch.Tensor:
    """Lift every pixel to a 3D point in its camera frame.

    Shapes: depth (B, 1, H, W), inv_K (B, 3, 3) -> points (B, 3, H*W).
    """
    b, _, h, w = depth.shape
    grid = pixel_grid(h, w, depth.device, depth.dtype)
    rays = inv_K @ grid.unsqueeze(0)  # (B, 3, HW)
    return rays * depth.reshape(b, 1, h * w)


def project(points: torch.Tensor, K: torch.Tensor, T: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Transform points by ``T`` then project with ``K``.

    Shapes: points (B, 3, N), K (B, 3, 3), T (B, 4, 4) -> pixel coordinates (B, 2, N).
    """
    p = T[:, :3, :3] @ points + T[:, :3, 3:]
    uvw = K @ p
    return uvw[:, :2] / (uvw[:, 2:3] + eps)


# ---- numpy SE(3) helpers (odometry) ----

def se3_inverse(T: np.ndarray) -> np.ndarray:
    """Inverse of a rigid transform. Shapes: (4, 4) -> (4, 4)."""
    out = np.eye(4, dtype=T.dtype)
    R = T[:3, :3]
    out[:3, :3] = R.T
    out[:3, 3] = -R.T @ T[:3, 3]
    return out


def rpy_to_matrix(roll: float, pitch: float, yaw: float) -> np.ndarray:
    """Fixed-axis roll (x), pitch (y), yaw (z) as in REP 103 / URDF: R = Rz(yaw) Ry(pitch) Rx(roll).

    Shapes: -> (3, 3).
    """
    cr, sr = np.cos(roll), np.sin(roll)
    cp, sp = np.cos(pitch), np.sin(pitch)
    cy, sy = np.cos(yaw), np.sin(yaw)
    return np.array(
        [
            [cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr],
            [sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr],
            [-sp, cp * sr, cp * cr],
        ]
    )


def matrix_to_quaternion(R: np.ndarray) -> np.ndarray:
    """Rotation matrix -> unit quaternion (x, y, z, w), w >= 0. Shapes: (3, 3) -> (4,)."""
    m = R
    tr = m[0, 0] + m[1, 1] + m[2, 2]
    if tr > 0:
        s = np.sqrt(tr + 1.0) * 2
        q = [(m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s, 0.25 * s]
    elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
        s = np.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2]) * 2
        q = [0.25 * s, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s, (m[2, 1] - m[1, 2]) / s]
    elif m[1, 1] > m[2, 2]:
        s = np.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2]) * 2
        q = [(m[0, 1] + m[1, 0]) / s, 0.25 * s, (m[1, 2] + m[2, 1]) / s, (m[0, 2] - m[2, 0]) / s]
    else:
        s = np.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1]) * 2
        q = [(m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, 0.25 * s, (m[1, 0] - m[0, 1]) / s]
    qa = np.asarray(q, dtype=np.float64)
    qa /= np.linalg.norm(qa)
    return qa if qa[3] >= 0 else -qa


def quaternion_to_matrix(q: np.ndarray) -> np.ndarray:
    """Unit quaternion (x, y, z, w) -> rotation matrix (normalised first). Shapes: (4,) -> (3, 3).

    >>> np.allclose(quaternion_to_matrix(matrix_to_quaternion(rpy_to_matrix(0.1, 0.2, 0.3))), rpy_to_matrix(0.1, 0.2, 0.3))
    True
    """
    x, y, z, w = np.asarray(q, np.float64) / np.linalg.norm(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def matrix_to_rotvec(R: np.ndarray) -> np.ndarray:
    """Rotation matrix -> axis * angle (rad). Shapes: (3, 3) -> (3,)."""
    q = matrix_to_quaternion(R)
    s = np.linalg.norm(q[:3])
    if s < 1e-12:
        return np.zeros(3)
    angle = 2.0 * np.arctan2(s, q[3])
    return q[:3] / s * angle

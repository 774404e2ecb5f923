"""Depth image -> 3D points in the camera optical frame (vectorised; rays cached per intrinsics and size)."""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np


class RayGrid:
    """Unit-depth rays (x/z, y/z) for every ``stride``-th pixel of an image, cached for a K and size.

    Shapes: ``points(depth)``: (H, W) -> (ceil(H/s), ceil(W/s), 3) float32, NaN where depth is invalid.
    """

    def __init__(self) -> None:
        self._key: Optional[Tuple] = None
        self._rays: Optional[np.ndarray] = None

    def rays(self, K: np.ndarray, height: int, width: int, stride: int) -> np.ndarray:
        key = (tuple(np.round(np.asarray(K, np.float64).ravel(), 9)), height, width, stride)
        if key != self._key:
            fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
            u = (np.arange(0, width, stride, dtype=np.float64) - cx) / fx
            v = (np.arange(0, height, stride, dtype=np.float64) - cy) / fy
            rays = np.empty((v.size, u.size, 2), np.float32)
            rays[..., 0] = u[None, :]
            rays[..., 1] = v[:, None]
            self._rays, self._key = rays, key
        assert self._rays is not None
        return self._rays

    def points(self, depth: np.ndarray, K: np.ndarray, stride: int = 1) -> np.ndarray:
        h, w = depth.shape
        rays = self.rays(K, h, w, stride)
        z = depth[::stride, ::stride]
        out = np.empty(z.shape + (3,), np.float32)
        np.multiply(rays[..., 0], z, out=out[..., 0])
        np.multiply(rays[..., 1], z, out=out[..., 1])
        out[..., 2] = z
        return out


def pack_rgb_float(rgb: np.ndarray) -> np.ndarray:
    """PCL's packed colour: 0x00RRGGBB as uint32 bits viewed as float32 (what RViz reads from 'rgb').

    Shapes: (..., 3) uint8 RGB -> (...) float32.
    """
    rgb = rgb.astype(np.uint32)
    packed = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    return packed.view(np.float32)


def unpack_rgb_float(packed: np.ndarray) -> np.ndarray:
    """Inverse of ``pack_rgb_float``. Shapes: (...) float32 -> (..., 3) uint8 RGB."""
    bits = np.ascontiguousarray(packed, np.float32).view(np.uint32)
    return np.stack([(bits >> 16) & 255, (bits >> 8) & 255, bits & 255], -1).astype(np.uint8)


def write_ply(path: str, points: np.ndarray, colors: Optional[np.ndarray] = None) -> int:
    """Write finite points as a binary little-endian PLY (readable by CloudCompare, MeshLab, Open3D).

    Shapes: points (..., 3), colors (..., 3) uint8 or None. Returns the number of points written.
    """
    p = points.reshape(-1, 3)
    keep = np.isfinite(p).all(axis=1)
    p = p[keep].astype("<f4")
    fields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")]
    if colors is not None:
        fields += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
    rec = np.empty(len(p), dtype=fields)
    rec["x"], rec["y"], rec["z"] = p[:, 0], p[:, 1], p[:, 2]
    props = "property float x\nproperty float y\nproperty float z\n"
    if colors is not None:
        c = colors.reshape(-1, 3)[keep]
        rec["red"], rec["green"], rec["blue"] = c[:, 0], c[:, 1], c[:, 2]
        props += "property uchar red\nproperty uchar green\nproperty uchar blue\n"
    header = f"ply\nformat binary_little_endian 1.0\nelement vertex {len(p)}\n{props}end_header\n"
    with open(path, "wb") as f:
        f.write(header.encode("ascii"))
        f.write(rec.tobytes())
    return len(p)

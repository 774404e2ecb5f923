"""sensor_msgs/PointCloud2 from numpy (what sensor_msgs_py.point_cloud2.create_cloud does, vectorised).

sensor_msgs_py is not installable outside a ROS install; the byte layout here is the standard one:
little-endian float32 fields packed at ``point_step``, rows of ``row_step`` bytes.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
from sensor_msgs.msg import PointCloud2, PointField

from ..core.pointcloud import unpack_rgb_float
from .image_messages import bytes_to_uint8_array


def build_cloud(header: Any, xyz: np.ndarray, rgb_packed: Optional[np.ndarray] = None) -> PointCloud2:
    """Organised cloud from (H, W, 3) float32 points (NaN = no point) and optional (H, W) packed rgb.

    ``is_dense`` is True only when every point is finite.
    """
    h, w = xyz.shape[:2]
    fields = [PointField(name=n, offset=4 * i, datatype=PointField.FLOAT32, count=1) for i, n in enumerate("xyz")]
    channels = 3
    if rgb_packed is not None:
        fields.append(PointField(name="rgb", offset=12, datatype=PointField.FLOAT32, count=1))
        channels = 4
    buf = np.empty((h, w, channels), "<f4")
    buf[..., :3] = xyz
    if rgb_packed is not None:
        buf[..., 3] = rgb_packed
    msg = PointCloud2()
    msg.header = header
    msg.height, msg.width = int(h), int(w)
    msg.fields = fields
    msg.is_bigendian = False
    msg.point_step = 4 * channels
    msg.row_step = msg.point_step * int(w)
    msg.is_dense = bool(np.isfinite(xyz).all())
    msg.data = bytes_to_uint8_array(buf)
    return msg


def cloud_field(msg: PointCloud2, name: str) -> np.ndarray:
    """One float32 field as (height, width), read at its offset (for tests and tools)."""
    offsets = {f.name: f.offset for f in msg.fields}
    if name not in offsets:
        raise ValueError(f"cloud has no field '{name}' (fields: {list(offsets)})")
    raw = np.frombuffer(msg.data, np.uint8).reshape(msg.height, msg.row_step)[:, : msg.width * msg.point_step]
    raw = raw.reshape(msg.height, msg.width, msg.point_step)
    o = offsets[name]
    return np.ascontiguousarray(raw[..., o:o + 4]).view("<f4")[..., 0]


def cloud_to_numpy(msg: PointCloud2) -> np.ndarray:
    """Read x, y, z back as (height, width, 3) float32."""
    return np.stack([cloud_field(msg, n) for n in "xyz"], axis=-1)


def cloud_colors(msg: PointCloud2) -> Optional[np.ndarray]:
    """Packed 'rgb' back as (height, width, 3) uint8 RGB, or None when the cloud has no colour."""
    if not any(f.name == "rgb" for f in msg.fields):
        return None
    return unpack_rgb_float(cloud_field(msg, "rgb"))

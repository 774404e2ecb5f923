"""sensor_msgs/PointCloud2 from numpy (what sensor_msgs_py.point_cloud2.create_cloud does, vectorised).

sensor_msgs_py is not installable outside a ROS install; the byte layout here is the standard one:
little-endian float32 fields packed at ``point_step``, rows of ``row_step`` bytes.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
from sensor_msgs.msg import PointCloud2, PointField

from .image_conversions import bytes_to_uint8_array


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


def cloud_to_numpy(msg: PointCloud2) -> np.ndarray:
    """Read x, y, z back as (height, width, 3) float32 (for tests and tools)."""
    names = [f.name for f in msg.fields]
    offsets = {f.name: f.offset for f in msg.fields}
    raw = np.frombuffer(msg.data, np.uint8).reshape(msg.height, msg.row_step)[:, : msg.width * msg.point_step]
    raw = np.ascontiguousarray(raw).reshape(msg.height, msg.width, msg.point_step)
    out = np.empty((msg.height, msg.width, 3), np.float32)
    for i, n in enumerate("xyz"):
        if n not in names:
            raise ValueError(f"cloud has no field '{n}' (fields: {names})")
        o = offsets[n]
        out[..., i] = raw[..., o:o + 4].copy().view("<f4")[..., 0]
    return out

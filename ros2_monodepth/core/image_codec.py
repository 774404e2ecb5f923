"""sensor_msgs/Image and CompressedImage fields -> numpy, matching cv_bridge's behaviour for the encodings used
here.

cv_bridge is not installable outside a ROS install, so this module does what the node, training and the tools
need of it: validation of width/height/step/data length, row padding (``step`` > width * channels), big-endian
multi-byte data, and zero-copy views where the layout allows. Only numpy and OpenCV: the functions work on any
object with the message's fields (rclpy messages, rosbags messages). Filling messages is the ROS adapter's
(``ros/image_messages.py``).

    >>> from types import SimpleNamespace
    >>> msg = SimpleNamespace(encoding="mono8", height=2, width=3, step=3, is_bigendian=0, data=bytes(range(6)))
    >>> image_to_numpy(msg).tolist()
    [[0, 1, 2], [3, 4, 5]]
"""

from __future__ import annotations

from typing import Any, Dict, Tuple

import cv2
import numpy as np

# encoding -> (numpy dtype, channels)
ENCODINGS: Dict[str, Tuple[np.dtype, int]] = {
    "rgb8": (np.dtype(np.uint8), 3),
    "bgr8": (np.dtype(np.uint8), 3),
    "rgba8": (np.dtype(np.uint8), 4),
    "bgra8": (np.dtype(np.uint8), 4),
    "mono8": (np.dtype(np.uint8), 1),
    "mono16": (np.dtype(np.uint16), 1),
    "16UC1": (np.dtype(np.uint16), 1),
    "32FC1": (np.dtype(np.float32), 1),
}
# What the node accepts as camera input.
CAMERA_ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8")


class ImageFormatError(ValueError):
    """A message that cannot be converted; ``field`` and ``value`` name what is wrong."""

    def __init__(self, field: str, value: Any, reason: str):
        super().__init__(f"{field}={value!r}: {reason}")
        self.field = field
        self.value = value
        self.reason = reason


def image_to_numpy(msg: Any, allowed: Tuple[str, ...] = tuple(ENCODINGS)) -> np.ndarray:
    """Image message -> (H, W) or (H, W, C) array in the message's encoding and channel order.

    Returns a view into ``msg.data`` when rows are unpadded and the byte order is native; otherwise a copy.
    Raises ImageFormatError naming the field at fault.
    """
    enc = msg.encoding
    if enc not in allowed or enc not in ENCODINGS:
        raise ImageFormatError("encoding", enc, f"unsupported; expected one of {', '.join(allowed)}")
    dtype, channels = ENCODINGS[enc]
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    if h <= 0 or w <= 0:
        raise ImageFormatError("height" if h <= 0 else "width", h if h <= 0 else w, "image has zero size")
    row_bytes = w * channels * dtype.itemsize
    if step < row_bytes:
        raise ImageFormatError("step", step, f"smaller than width*channels*bytes = {row_bytes}")
    buf = np.frombuffer(msg.data, np.uint8)
    if buf.size != step * h:
        raise ImageFormatError("data", f"{buf.size} bytes", f"expected step*height = {step * h}")
    rows = buf.reshape(h, step)[:, :row_bytes]
    dt = dtype.newbyteorder(">" if msg.is_bigendian else "<") if dtype.itemsize > 1 else dtype
    if step != row_bytes:
        rows = np.ascontiguousarray(rows)
    out = rows.view(dt).reshape((h, w, channels) if channels > 1 else (h, w))
    if dt.byteorder not in ("=", "|") and dt != dtype.newbyteorder("="):
        out = out.astype(dtype.newbyteorder("="))
    return out


def to_rgb8(image: np.ndarray, encoding: str, want: str = "rgb") -> np.ndarray:
    """Any camera encoding -> contiguous (H, W, 3) uint8 in ``want`` order ('rgb' or 'bgr')."""
    if encoding == "mono8":
        return np.ascontiguousarray(np.repeat(image[:, :, None], 3, axis=2))
    src_bgr = encoding.startswith("bgr")
    if image.shape[2] == 4:
        image = image[:, :, :3]
    if src_bgr != (want == "bgr"):
        return np.ascontiguousarray(image[:, :, ::-1])
    return np.ascontiguousarray(image)


def decode_compressed(msg: Any, want: str = "rgb") -> np.ndarray:
    """CompressedImage (jpeg/png) -> (H, W, 3) uint8 in ``want`` order."""
    fmt = (msg.format or "").lower()
    if fmt and not any(k in fmt for k in ("jpeg", "jpg", "png")):
        raise ImageFormatError("format", msg.format, "only jpeg and png are decoded")
    buf = np.frombuffer(msg.data, np.uint8)
    if buf.size == 0:
        raise ImageFormatError("data", "0 bytes", "empty compressed image")
    bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if bgr is None:
        raise ImageFormatError("data", f"{buf.size} bytes", "could not be decoded as jpeg/png")
    return bgr if want == "bgr" else np.ascontiguousarray(bgr[:, :, ::-1])

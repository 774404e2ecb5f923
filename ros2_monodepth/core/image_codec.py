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

from typing import Any, Dict, Optional, Tuple

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


def compressed_format(msg: Any) -> str:
    """The image format of a CompressedImage ('jpeg' or 'png'), or ImageFormatError naming what it is instead.

    image_transport writes ``format`` as e.g. 'jpeg', 'rgb8; jpeg compressed bgr8' or, for depth images,
    '16UC1; compressedDepth png': a compressedDepth image is a depth map (its data starts with a header before the
    PNG), not a camera frame.
    """
    fmt = (msg.format or "").lower()
    if "compresseddepth" in fmt:
        raise ImageFormatError("format", msg.format, "a compressedDepth image is a depth map (image_transport's "
                               "compressed_depth), not a camera image: subscribe this node to the camera's image topic")
    if not fmt or "jpeg" in fmt or "jpg" in fmt:
        return "jpeg" if fmt else ""
    if "png" in fmt:
        return "png"
    raise ImageFormatError("format", msg.format, "only jpeg and png are decoded")


def compressed_image_size(data: Any) -> Optional[Tuple[int, int]]:
    """(width, height) from a PNG or JPEG header without decoding the image, or None when the header is not one.

    >>> import cv2, numpy as np
    >>> compressed_image_size(cv2.imencode(".png", np.zeros((3, 5), np.uint8))[1].tobytes())
    (5, 3)
    """
    buf = bytes(memoryview(data)[:65536])   # a JPEG's frame header comes after its tables, well inside 64 KB
    if buf[:8] == b"\x89PNG\r\n\x1a\n" and len(buf) >= 24 and buf[12:16] == b"IHDR":
        return int.from_bytes(buf[16:20], "big"), int.from_bytes(buf[20:24], "big")
    if buf[:2] != b"\xff\xd8":
        return None
    i = 2
    while i + 9 < len(buf):
        if buf[i] != 0xFF:
            i += 1
            continue
        marker = buf[i + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7 or marker == 0xFF:
            i += 1 if marker == 0xFF else 2
            continue
        length = int.from_bytes(buf[i + 2:i + 4], "big")
        # start-of-frame markers C0..CF, except DHT (C4), JPG (C8) and DAC (CC), carry height then width
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            return int.from_bytes(buf[i + 7:i + 9], "big"), int.from_bytes(buf[i + 5:i + 7], "big")
        i += 2 + length
    return None


def decode_compressed(msg: Any, want: str = "rgb") -> np.ndarray:
    """CompressedImage (jpeg/png) -> (H, W, 3) uint8 in ``want`` order."""
    compressed_format(msg)
    buf = np.frombuffer(msg.data, np.uint8)
    if buf.size == 0:
        raise ImageFormatError("data", "0 bytes", "empty compressed image")
    bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if bgr is None:
        raise ImageFormatError("data", f"{buf.size} bytes", "could not be decoded as jpeg/png")
    return bgr if want == "bgr" else np.ascontiguousarray(bgr[:, :, ::-1])

"""Playing a camera recording to the node as ``ros2 bag play`` would: every image (raw or compressed) and camera_info
message exactly as recorded (the serialized bytes: encoding, size, stamps, frame ids), each image after its
camera_info (the one with its stamp, else the last before it), at the recorded pace (a real-time factor) or one frame at a time as fast as the
node takes them. Used by ``bench node --bag`` and the demo; reads the bag with rosbags (no ROS install needed).

A recording shorter than the run is played again from its start with its stamps moved forward by its own length
each time (patched in the header of every message), so that time never jumps back for the node; the first pass is
the recording as it is.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Optional, Sequence, Tuple

import numpy as np

from ..core.bags import IMAGE_TYPES, BagError, decode_rgb, header_stamp_ns, open_bags, require_topic


def with_stamp_shift(raw: bytes, shift_ns: int) -> bytes:
    """``raw`` with its header stamp moved by ``shift_ns``."""
    if not shift_ns:
        return raw
    t = header_stamp_ns(raw) + shift_ns
    buf = bytearray(raw)
    struct.pack_into("<iI" if raw[1] == 1 else ">iI", buf, 4, t // 1_000_000_000, t % 1_000_000_000)
    return bytes(buf)


@dataclass
class RecordedFrame:
    """One camera frame: its image message and its camera_info (serialized), and when."""

    log_time_ns: int          # when the recorder received it
    stamp_ns: int             # its header stamp
    image: bytes
    info: Optional[bytes]


class BagPlayer:
    """The camera messages of one recording, ready to publish (``frames``, ``msgtype``), with the first
    ``keep_decoded`` frames also decoded to RGB (for timings without ROS and pictures), the recorded encoding
    (or compressed format) and image size (H, W).

    >>> player = BagPlayer(["street_bag"], "/camera/image_raw", "/camera/camera_info")   # doctest: +SKIP
    >>> image_bytes, info_bytes, stamp_ns = player.frame(0)                               # doctest: +SKIP
    """

    def __init__(self, bags: Sequence[str | Path], image_topic: str, info_topic: Optional[str], max_frames: int = 0,
                 keep_decoded: int = 30):
        self.image_topic, self.info_topic = image_topic, info_topic
        paths = [Path(b) for b in bags]
        self.frames: List[RecordedFrame] = []
        self._decoded: List[np.ndarray] = []
        self.encoding, self.size = "", (0, 0)
        with open_bags(paths) as reader:
            image_conns = require_topic(reader, image_topic, IMAGE_TYPES, paths)
            self.msgtype: str = image_conns[0].msgtype
            info_conns = [c for c in reader.connections if c.topic == info_topic] if info_topic else []
            # a driver publishes camera_info and image together, in either order: an image is paired with the
            # camera_info of the same stamp wherever it was recorded, else with the last one before it
            infos = ({header_stamp_ns(raw): bytes(raw) for _, _, raw in reader.messages(connections=info_conns)}
                     if info_conns else {})   # (rosbags reads every topic when given no connections)
            last_info: Optional[bytes] = None
            for conn, log_time, raw in reader.messages(connections=image_conns + info_conns):
                if conn.topic == info_topic:
                    last_info = bytes(raw)
                    continue
                stamp = header_stamp_ns(raw)
                self.frames.append(RecordedFrame(int(log_time), stamp, bytes(raw), infos.get(stamp, last_info)))
                if len(self._decoded) < keep_decoded:
                    msg = reader.deserialize(raw, conn.msgtype)
                    if not self.encoding:
                        self.encoding = msg.format if self.compressed else msg.encoding
                    try:
                        self._decoded.append(decode_rgb(msg, conn.msgtype))
                        self.size = self._decoded[-1].shape[:2]
                    except ValueError:   # ImageFormatError too: played as recorded, only not decoded here
                        pass
                if max_frames and len(self.frames) >= max_frames:
                    break
        if not self.frames:
            raise BagError(f"no frames on '{image_topic}' in {', '.join(map(str, paths))}")
        stamps = [f.stamp_ns for f in self.frames]
        spacing = (stamps[-1] - stamps[0]) // max(1, len(stamps) - 1)
        self.span_ns = stamps[-1] - stamps[0] + max(spacing, 1)   # what a loop moves the stamps by

    @property
    def compressed(self) -> bool:
        return self.msgtype.endswith("CompressedImage")

    def decoded(self, count: int) -> List[np.ndarray]:
        """Up to ``count`` of the first frames as RGB uint8 (those that decode)."""
        return self._decoded[:count]

    def frame(self, i: int) -> Tuple[bytes, Optional[bytes], int]:
        """(image bytes, camera_info bytes, stamp ns) of play-out frame ``i``: pass ``i // len(frames)`` of the
        recording, stamps shifted by that many recording lengths."""
        loop, k = divmod(i, len(self.frames))
        f = self.frames[k]
        shift = loop * self.span_ns
        info = with_stamp_shift(f.info, shift) if f.info is not None else None
        return with_stamp_shift(f.image, shift), info, f.stamp_ns + shift

    def delay_s(self, i: int) -> float:
        """Recorded time between play-out frames ``i - 1`` and ``i`` (seconds, 0 for the first of a pass)."""
        k = i % len(self.frames)
        if k == 0:
            return 0.0
        return max(0.0, (self.frames[k].log_time_ns - self.frames[k - 1].log_time_ns) / 1e9)

    def publishers(self, node: Any, namespace: str, qos: Any) -> Tuple[Any, Any]:
        """rclpy publishers for the node's inputs in ``namespace``: image (or image/compressed) and camera_info."""
        from sensor_msgs.msg import CameraInfo, CompressedImage, Image

        kind = CompressedImage if self.compressed else Image
        image = node.create_publisher(kind, f"{namespace}/image/compressed" if self.compressed else f"{namespace}/image", qos)
        return image, node.create_publisher(CameraInfo, f"{namespace}/camera_info", qos)

"""Camera frames from ROS 2 bags (sqlite3 .db3 or .mcap, one or many) with ``rosbags``: no ROS runtime.

Owns: finding the image topic, decoding sensor_msgs/Image and CompressedImage to RGB uint8, resizing,
and clear errors for a missing topic (listing what the bag has) or an empty bag. Unreadable frames are
skipped and counted. Used by training, evaluation, int8 calibration (``ros2-monodepth-export``) and the
benchmark; ``rosbags`` is imported inside the functions, so importing this module costs nothing.
"""

from __future__ import annotations

import contextlib
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, Optional, Sequence, Tuple

import cv2
import numpy as np

from .image_codec import CAMERA_ENCODINGS, ImageFormatError, decode_compressed, image_to_numpy, to_rgb8

IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")


class BagError(ValueError):
    """A bag that cannot give what was asked (no such topic, no messages)."""


@dataclass
class FrameStats:
    read: int = 0
    skipped: int = 0
    reasons: Dict[str, int] = field(default_factory=dict)

    def skip(self, reason: str) -> None:
        self.skipped += 1
        self.reasons[reason] = self.reasons.get(reason, 0) + 1


REPAIR_HINT = ("a recording cut short? `mcap recover IN.mcap -o OUT.mcap` (the mcap CLI) repairs a truncated MCAP file, "
               "`ros2 bag reindex BAG` recreates a missing metadata.yaml")


@contextlib.contextmanager
def open_bags(paths: Sequence[str | Path]) -> Iterator[Any]:
    """rosbags' AnyReader over ``paths``, with every way a bag can fail to open or read (missing, not a bag folder,
    no metadata.yaml, truncated, unknown storage) turned into a BagError naming the bag and what to do."""
    from rosbags.highlevel import AnyReader

    bag_paths = [Path(p) for p in paths]
    missing = [str(p) for p in bag_paths if not p.exists()]
    if missing:
        raise BagError(f"no such bag: {', '.join(missing)}")
    where = ", ".join(map(str, bag_paths))
    try:
        reader = AnyReader(bag_paths)
        reader.open()
    except BagError:
        raise
    except Exception as exc:   # rosbags raises its own errors, FileNotFoundError, KeyError, struct errors...
        raise BagError(f"cannot open {where}: {type(exc).__name__}: {exc} ({REPAIR_HINT})") from exc
    try:
        yield reader
    except (BagError, ImageFormatError):
        raise
    except Exception as exc:
        if type(exc).__module__.startswith("rosbags") or isinstance(exc, (OSError, EOFError)):
            raise BagError(f"reading {where} failed: {type(exc).__name__}: {exc} ({REPAIR_HINT})") from exc
        raise
    finally:
        reader.close()


def list_topics(paths: Sequence[str | Path]) -> Dict[str, Tuple[str, int]]:
    """{topic: (message type, count)} over all bags."""
    out: Dict[str, Tuple[str, int]] = {}
    with open_bags(paths) as reader:
        for c in reader.connections:
            prev = out.get(c.topic, (c.msgtype, 0))
            out[c.topic] = (c.msgtype, prev[1] + c.msgcount)
    return out


def stamp_ns(msg) -> int:
    """header.stamp of a deserialized message in nanoseconds."""
    return int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)


def header_stamp_ns(raw: bytes) -> int:
    """The header stamp (ns) of a serialized message that starts with std_msgs/Header, read without deserializing
    (CDR: 4-byte encapsulation, then int32 sec and uint32 nanosec).

    >>> header_stamp_ns(bytes([0, 1, 0, 0]) + (3).to_bytes(4, "little") + (5).to_bytes(4, "little"))
    3000000005
    """
    sec, nanosec = struct.unpack_from("<iI" if raw[1] == 1 else ">iI", raw, 4)
    return sec * 1_000_000_000 + nanosec


def header_frame_id(raw: bytes) -> str:
    """The header frame_id of a serialized message that starts with std_msgs/Header (after the stamp: uint32 length
    including the terminating NUL, then the characters)."""
    (n,) = struct.unpack_from("<I" if raw[1] == 1 else ">I", raw, 12)
    return bytes(raw[16:16 + max(0, n - 1)]).decode("utf-8", "replace")


def decode_rgb(msg, msgtype: str) -> np.ndarray:
    """A deserialized Image / CompressedImage -> RGB uint8 (H, W, 3); raises ImageFormatError / ValueError."""
    if msgtype.endswith("CompressedImage"):
        return decode_compressed(msg, "rgb")
    return to_rgb8(image_to_numpy(msg, CAMERA_ENCODINGS), msg.encoding, "rgb")


def require_topic(reader, topic: str, types: Sequence[str], paths: Sequence[str | Path]) -> list:
    """The connections of ``topic`` in an open AnyReader, or a BagError that says what is wrong: the topic is
    missing (listing what the bag has), carries another type, or has no messages."""
    conns = [c for c in reader.connections if c.topic == topic]
    where = ", ".join(map(str, paths))
    if not conns:
        kinds = {c.topic: c.msgtype for c in reader.connections}
        have = ", ".join(f"{t} ({kind})" for t, kind in kinds.items()) or "no topics at all"
        raise BagError(f"topic '{topic}' is not in {where}; the bag has: {have}")
    if conns[0].msgtype not in types:
        raise BagError(f"topic '{topic}' carries {conns[0].msgtype}, expected one of {tuple(types)}")
    if sum(c.msgcount for c in conns) == 0:
        raise BagError(f"topic '{topic}' has no messages in {where}")
    return conns


def iter_frames(paths: Sequence[str | Path], topic: str, size: Optional[Tuple[int, int]] = None,
                stats: Optional[FrameStats] = None, stride: int = 1) -> Iterator[Tuple[int, np.ndarray]]:
    """Yield (stamp_ns from the header, RGB uint8 (H, W, 3)) for every ``stride``-th frame of ``topic``.

    ``size`` (H, W) resizes each frame (area interpolation). Frames that fail to decode are skipped and
    counted in ``stats``.
    """
    stats = stats if stats is not None else FrameStats()
    bag_paths = [Path(p) for p in paths]
    with open_bags(bag_paths) as reader:
        conns = require_topic(reader, topic, IMAGE_TYPES, bag_paths)
        for i, (conn, _, raw) in enumerate(reader.messages(connections=conns)):
            if i % stride:
                continue
            try:
                msg = reader.deserialize(raw, conn.msgtype)
                rgb = decode_rgb(msg, conn.msgtype)
            except (ImageFormatError, ValueError, KeyError) as exc:
                stats.skip(skip_reason(exc))
                continue
            if size is not None and rgb.shape[:2] != tuple(size):
                rgb = cv2.resize(rgb, (size[1], size[0]), interpolation=cv2.INTER_AREA)
            stats.read += 1
            yield stamp_ns(msg), rgb


def skip_reason(exc: Exception) -> str:
    """How an unreadable frame is counted in FrameStats: the error type, and the field when known."""
    return type(exc).__name__ + (f" ({exc.field})" if isinstance(exc, ImageFormatError) else "")


"""Training samples from ROS 2 bags: frame index, triplets, time split, and the torch Dataset.

Owns, in order of use:
- ``index_frames``: one pass over the bags (rosbags, no ROS runtime) that keeps the *serialized* camera
  messages of the frames to train on: every ``stride``-th frame or at most ``fps`` frames per second, minus
  frames where the camera did not move (mean absolute difference of small blurred grey thumbnails below a
  threshold). Decoding to full images happens later, in DataLoader workers.
- segments: consecutive frames further apart in time than ``gap_factor`` x the median spacing (a
  dropped stretch, or two bags) start a new segment; ``make_triplets`` never crosses one.
- ``split_by_time``: validation is a contiguous time range (the last fraction, or given seconds), and
  triplets that touch it are kept out of training.
- ``TripletDataset``: (t-1, t, t+1) decoded, cropped to the training aspect ratio, resized, with the
  intrinsics adjusted; colour jitter and horizontal flip as in Monodepth2, seeded per sample so that a run is
  reproducible whatever the number of workers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from ros2_monodepth.core.bags import IMAGE_TYPES, BagError, FrameStats, decode_rgb, open_bags, require_topic, skip_reason, stamp_ns
from ros2_monodepth.core.geometry import scale_intrinsics
from ros2_monodepth.core.image_codec import ImageFormatError

THUMB_WIDTH = 64


@dataclass
class IndexOptions:
    topic: str = "/camera/image_raw"
    camera_info_topic: Optional[str] = "/camera/camera_info"
    # fx, fy, cx, cy at the bag's image size; overrides camera_info when given
    intrinsics: Optional[Tuple[float, float, float, float]] = None
    right_topic: Optional[str] = None           # stereo: the right camera (same size, rectified)
    right_camera_info_topic: Optional[str] = None
    stride: int = 1
    fps: float = 0.0                            # > 0: keep frames at most this often (after stride)
    # mean |difference| of blurred 64-px-wide grey thumbnails, grey levels (0..255); 0 keeps every frame.
    # 0.1 m of travel at 10 Hz changes them by about 0.7; sensor noise by well under 0.3.
    static_threshold: float = 0.3
    gap_factor: float = 2.5


@dataclass
class FrameIndex:
    """Kept frames in time order: stamps (ns), serialized messages, segment ids, and the camera."""

    msgtype: str
    stamps: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    raw: List[bytes] = field(default_factory=list)
    segments: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    right_raw: List[bytes] = field(default_factory=list)
    right_msgtype: str = ""
    K: np.ndarray = field(default_factory=lambda: np.eye(3))
    size: Tuple[int, int] = (0, 0)              # (H, W) of the bag's images
    baseline: float = 0.0                       # metres, from the right camera_info P
    stats: FrameStats = field(default_factory=FrameStats)
    considered: int = 0                         # frames after stride / fps, before the static check
    static_skipped: int = 0


def _thumbnail(rgb: np.ndarray) -> np.ndarray:
    h, w = rgb.shape[:2]
    small = cv2.resize(rgb, (THUMB_WIDTH, max(1, round(h * THUMB_WIDTH / w))), interpolation=cv2.INTER_AREA)
    grey = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY).astype(np.float32)
    return cv2.GaussianBlur(grey, (3, 3), 0)


def _info_K(msg) -> Tuple[np.ndarray, Tuple[int, int], float]:
    K = np.asarray(msg.k, np.float64).reshape(3, 3)
    P = np.asarray(msg.p, np.float64).reshape(3, 4)
    baseline = -P[0, 3] / P[0, 0] if P[0, 0] else 0.0
    return K, (int(msg.height), int(msg.width)), float(baseline)


def index_frames(paths: Sequence[str | Path], opts: IndexOptions, progress: bool = False) -> FrameIndex:
    """Read the bags once and keep the frames to train on (see the module docstring)."""
    from tqdm import tqdm

    bag_paths = [Path(p) for p in paths]
    with open_bags(bag_paths) as reader:
        def need(topic: str, types: Tuple[str, ...]) -> list:
            return require_topic(reader, topic, types, bag_paths)

        image_conns = need(opts.topic, IMAGE_TYPES)
        index = FrameIndex(msgtype=image_conns[0].msgtype)
        right_conns = need(opts.right_topic, IMAGE_TYPES) if opts.right_topic else []
        index.right_msgtype = right_conns[0].msgtype if right_conns else ""
        info_conns = []
        if opts.intrinsics is None:
            if not opts.camera_info_topic:
                raise BagError("no intrinsics: give a camera_info topic or --intrinsics fx fy cx cy")
            info_conns = need(opts.camera_info_topic, ("sensor_msgs/msg/CameraInfo",))
        right_info_conns = need(opts.right_camera_info_topic, ("sensor_msgs/msg/CameraInfo",)) if opts.right_camera_info_topic else []

        K = None
        for conn, _, raw in (reader.messages(connections=info_conns) if info_conns else ()):
            K, info_size, _ = _info_K(reader.deserialize(raw, conn.msgtype))
            if K[0, 0] > 0:
                break
        if opts.intrinsics is None and (K is None or K[0, 0] <= 0):
            raise BagError(f"camera_info on '{opts.camera_info_topic}' has no valid K (k[0] = 0): give --intrinsics")
        for conn, _, raw in (reader.messages(connections=right_info_conns) if right_info_conns else ()):
            index.baseline = _info_K(reader.deserialize(raw, conn.msgtype))[2]
            break
        if opts.right_topic and index.baseline <= 0:
            raise BagError(f"stereo needs a baseline: P[3] of '{opts.right_camera_info_topic}' must be -fx * baseline < 0")

        right_by_stamp: Dict[int, bytes] = {}
        for conn, _, raw in (reader.messages(connections=right_conns) if right_conns else ()):
            right_by_stamp[stamp_ns(reader.deserialize(raw, conn.msgtype))] = raw

        stamps: List[int] = []
        last_thumb: Optional[np.ndarray] = None
        last_kept_ns: Optional[int] = None
        all_stamps: List[int] = []
        kept_raw_pos: List[int] = []
        total = sum(c.msgcount for c in image_conns)
        for i, (conn, _, raw) in enumerate(tqdm(reader.messages(connections=image_conns), total=total,
                                                desc="indexing", unit="frame", disable=not progress)):
            if i % max(1, opts.stride):
                continue
            try:
                msg = reader.deserialize(raw, conn.msgtype)
                stamp = stamp_ns(msg)
                rgb = decode_rgb(msg, conn.msgtype)
            except (ImageFormatError, ValueError, KeyError) as exc:
                index.stats.skip(skip_reason(exc))
                continue
            if opts.fps > 0 and last_kept_ns is not None and stamp - last_kept_ns < 0.95e9 / opts.fps:
                continue
            last_kept_ns = stamp
            index.considered += 1
            all_stamps.append(stamp)
            if index.size == (0, 0):
                index.size = rgb.shape[:2]
            elif rgb.shape[:2] != index.size:
                index.stats.skip("size changed")
                continue
            if opts.right_topic and stamp not in right_by_stamp:
                index.stats.skip("no right frame with this stamp")
                continue
            thumb = _thumbnail(rgb)
            if opts.static_threshold > 0 and last_thumb is not None and \
                    float(np.abs(thumb - last_thumb).mean()) < opts.static_threshold:
                index.static_skipped += 1
                continue
            last_thumb = thumb
            index.stats.read += 1
            stamps.append(stamp)
            index.raw.append(raw)
            kept_raw_pos.append(len(all_stamps) - 1)
            if opts.right_topic:
                index.right_raw.append(right_by_stamp[stamp])
    if not index.raw:
        raise BagError(f"no usable frames on '{opts.topic}' (read {index.considered}, static {index.static_skipped}, "
                       f"unreadable {index.stats.skipped}: {index.stats.reasons})")
    # Segments come from the spacing of the *considered* frames, so that skipping static frames does not
    # split a segment but a real hole in the recording does.
    t = np.asarray(all_stamps, np.int64)
    order_ok = np.all(np.diff(t) > 0) if len(t) > 1 else True
    dt = np.diff(t)
    median = float(np.median(dt[dt > 0])) if np.any(dt > 0) else 1.0
    breaks = np.concatenate([[0], ((dt > opts.gap_factor * median) | (dt <= 0)).astype(np.int64)])
    seg_all = np.cumsum(breaks)
    index.segments = seg_all[np.asarray(kept_raw_pos, np.int64)]
    index.stamps = np.asarray(stamps, np.int64)
    if not order_ok:
        index.stats.reasons["stamps not increasing (new segment)"] = int(np.sum(dt <= 0))
    if opts.intrinsics is not None:
        fx, fy, cx, cy = opts.intrinsics
        index.K = np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], np.float64)
    else:
        assert K is not None   # checked when camera_info was read
        if info_size != index.size and info_size[0] > 0:
            K = scale_intrinsics(K, index.size[1] / info_size[1], index.size[0] / info_size[0])
        index.K = K
    return index


def make_triplets(index: FrameIndex) -> np.ndarray:
    """Centre positions i with i-1 and i+1 in the same segment. Shapes: -> (N,) int64."""
    seg = index.segments
    if len(seg) < 3:
        return np.zeros(0, np.int64)
    centre = np.arange(1, len(seg) - 1)
    ok = (seg[centre - 1] == seg[centre]) & (seg[centre + 1] == seg[centre])
    return centre[ok]


def split_by_time(index: FrameIndex, centres: np.ndarray, val_fraction: float = 0.1,
                  val_range: Optional[Tuple[float, float]] = None) -> Tuple[np.ndarray, np.ndarray]:
    """(train centres, validation centres): validation is one time range, seconds from the first frame.

    Default range: the last ``val_fraction`` of the recording's time span. A triplet with any frame inside
    the range is validation; triplets that touch it from outside are dropped from both.
    """
    t = (index.stamps - index.stamps[0]) / 1e9
    if val_range is None:
        span = float(t[-1]) if len(t) else 0.0
        val_range = (span * (1.0 - val_fraction), math.inf) if val_fraction > 0 else (math.inf, math.inf)
    lo, hi = val_range
    inside = (t >= lo) & (t <= hi)
    c = centres
    all_in = inside[c - 1] & inside[c] & inside[c + 1]
    any_in = inside[c - 1] | inside[c] | inside[c + 1]
    return c[~any_in], c[all_in]


@dataclass
class ResizePlan:
    """Crop (to the training aspect ratio) then resize, and the matching intrinsics."""

    crop: Tuple[int, int, int, int]   # y0, x0, h, w in the source image
    out_size: Tuple[int, int]         # (H, W)
    K: np.ndarray                     # at the output size

    @classmethod
    def make(cls, src_size: Tuple[int, int], out_size: Tuple[int, int], K: np.ndarray, crop: str = "center") -> "ResizePlan":
        H, W = src_size
        oh, ow = out_size
        if crop == "none":
            y0, x0, ch, cw = 0, 0, H, W
        else:
            target = ow / oh
            if W / H > target:   # too wide: crop columns
                ch, cw = H, int(round(H * target))
            else:
                ch, cw = int(round(W / target)), W
            x0 = (W - cw) // 2
            y0 = {"center": (H - ch) // 2, "bottom": H - ch, "top": 0}[crop]
        Kc = np.asarray(K, np.float64).copy()
        Kc[0, 2] -= x0
        Kc[1, 2] -= y0
        return cls((y0, x0, ch, cw), (oh, ow), scale_intrinsics(Kc, ow / cw, oh / ch))

    def apply(self, rgb: np.ndarray) -> np.ndarray:
        y0, x0, ch, cw = self.crop
        rgb = rgb[y0:y0 + ch, x0:x0 + cw]
        if rgb.shape[:2] != self.out_size:
            rgb = cv2.resize(rgb, (self.out_size[1], self.out_size[0]), interpolation=cv2.INTER_AREA)
        return rgb


@dataclass
class Augmentation:
    """Monodepth2's: colour jitter (brightness, contrast, saturation 0.2; hue 0.1) and flip, each p = 0.5."""

    enabled: bool = True
    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.2
    hue: float = 0.1

    def jitter(self, frames: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Same jitter for every frame of a sample. Shapes: (F, H, W, 3) float32 in [0, 1] -> same."""
        b = rng.uniform(1 - self.brightness, 1 + self.brightness)
        c = rng.uniform(1 - self.contrast, 1 + self.contrast)
        s = rng.uniform(1 - self.saturation, 1 + self.saturation)
        h = rng.uniform(-self.hue, self.hue)
        out = np.clip(frames * b, 0, 1)
        grey_mean = (out @ np.array([0.299, 0.587, 0.114], np.float32)).mean(axis=(1, 2), keepdims=True)[..., None]
        out = np.clip((out - grey_mean) * c + grey_mean, 0, 1)
        grey = (out @ np.array([0.299, 0.587, 0.114], np.float32))[..., None]
        out = np.clip((out - grey) * s + grey, 0, 1)
        if abs(h) > 1e-6:
            shifted = []
            for f in out:
                hsv = cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2HSV)
                hsv[..., 0] = (hsv[..., 0] + h * 360.0) % 360.0
                shifted.append(cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB))
            out = np.clip(np.stack(shifted), 0, 1)
        return out.astype(np.float32)


class _Decoder:
    """Deserializes and decodes stored messages; built lazily in each worker process."""

    _store = None

    @classmethod
    def rgb(cls, raw: bytes, msgtype: str) -> np.ndarray:
        if cls._store is None:
            from rosbags.typesys import Stores, get_typestore
            cls._store = get_typestore(Stores.ROS2_JAZZY)
        return decode_rgb(cls._store.deserialize_cdr(raw, msgtype), msgtype)


class TripletDataset(Dataset):
    """Samples around the centre positions given.

    ``__getitem__(i)`` or ``__getitem__((i, seed))`` (seed picks the augmentation; see ``SampleOrder``) ->
      images   (3, 3, H, W) float32 in [0, 1], frames t-1, t, t+1, as the loss sees them
      aug      (3, 3, H, W) the same after colour jitter (what the networks see)
      K        (3, 3) float32 at (H, W)
      stereo, stereo_aug (3, H, W) and T_stereo (4, 4) (right <- left camera) when the index has a right camera
      centre   int
    """

    def __init__(self, index: FrameIndex, centres: np.ndarray, size: Tuple[int, int], crop: str = "center",
                 augmentation: Optional[Augmentation] = None):
        self.index = index
        self.centres = np.asarray(centres, np.int64)
        self.plan = ResizePlan.make(index.size, size, index.K, crop)
        self.aug = augmentation or Augmentation(enabled=False)

    def __len__(self) -> int:
        return len(self.centres)

    def __getitem__(self, item) -> Dict[str, torch.Tensor]:
        i, seed = item if isinstance(item, tuple) else (item, None)
        c = int(self.centres[i])
        ix = self.index
        frames = [self.plan.apply(_Decoder.rgb(ix.raw[j], ix.msgtype)) for j in (c - 1, c, c + 1)]
        stereo = bool(ix.right_raw)
        if stereo:
            frames.append(self.plan.apply(_Decoder.rgb(ix.right_raw[c], ix.right_msgtype)))
        arr = np.stack(frames).astype(np.float32) / 255.0
        K = self.plan.K.copy()
        baseline = ix.baseline
        aug = arr
        if self.aug.enabled and seed is not None:
            rng = np.random.default_rng(seed)
            if rng.random() < 0.5:
                aug = self.aug.jitter(arr, rng)
            if rng.random() < 0.5:
                arr, aug = arr[:, :, ::-1], aug[:, :, ::-1]
                K[0, 2] = self.plan.out_size[1] - 1 - K[0, 2]
                baseline = -baseline   # a mirrored rig has the right camera on the left
        to_t = lambda a: torch.from_numpy(np.ascontiguousarray(a.transpose(0, 3, 1, 2)))  # noqa: E731
        out = {"images": to_t(arr[:3]), "aug": to_t(aug[:3]), "K": torch.from_numpy(K.astype(np.float32)),
               "centre": torch.tensor(c)}
        if stereo:
            T = torch.eye(4)
            T[0, 3] = -baseline   # points in the left camera -> right camera: x_r = x_l - baseline
            out.update(stereo=to_t(arr[3:])[0], stereo_aug=to_t(aug[3:])[0], T_stereo=T)
        return out


class SampleOrder(torch.utils.data.Sampler):
    """Deterministic, resumable, rank-sharded sample order: yields (index, augmentation seed).

    Epoch e's order is a permutation seeded by (seed, e); rank r of w takes every w-th entry; the first
    ``start`` entries of the rank's share are skipped (resume mid-epoch without decoding them).
    """

    def __init__(self, length: int, seed: int, rank: int = 0, world_size: int = 1, shuffle: bool = True):
        self.length, self.seed, self.rank, self.world = length, seed, rank, world_size
        self.shuffle = shuffle
        self.epoch, self.start = 0, 0

    def set_position(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def per_rank(self) -> int:
        return self.length // self.world   # equal shares keep DDP ranks in step

    def __len__(self) -> int:
        return max(0, self.per_rank() - self.start)

    def __iter__(self):
        g = np.random.default_rng([self.seed, self.epoch])
        order = g.permutation(self.length) if self.shuffle else np.arange(self.length)
        mine = order[self.rank::self.world][: self.per_rank()]
        seeds = g.integers(0, 2**31 - 1, size=self.length)[self.rank::self.world]
        for k in range(self.start, len(mine)):
            yield int(mine[k]), int(seeds[k])

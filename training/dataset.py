"""Training samples from ROS 2 bags: sequences, triplets, time split, and the torch Dataset.

Owns, in order of use:
- ``index_frames``: one pass over each bag (rosbags, no ROS runtime). Every (bag, image topic) is a *sequence* with
  its own camera: intrinsics from its own camera_info (the image topic's sibling, as image_transport pairs them),
  its own image size, its own time line. A sequence keeps the *serialized* camera messages of the frames to train
  on: every ``stride``-th frame or at most ``fps`` frames per second, minus frames where the camera did not move
  (mean absolute difference of small blurred grey thumbnails below a threshold). Decoding happens later, in
  DataLoader workers. A sequence that cannot be used (topic absent, no intrinsics, no frame) is kept with the
  reason, for the summary; only when no sequence is usable is it an error, naming each and why.
- segments: within a sequence, consecutive frames further apart in time than ``gap_factor`` x the median spacing
  (a dropped stretch) start a new segment; ``make_triplets`` never crosses a segment or a sequence, whatever the
  stamps of different recordings.
- ``split_by_time``: in each sequence, validation is a contiguous time range (its last fraction, or given seconds
  from its first frame), and triplets that touch it are kept out of training.
- ``TripletDataset``: (t-1, t, t+1) decoded, cropped to the training aspect ratio and resized *per camera*, with
  that camera's intrinsics adjusted; colour jitter and horizontal flip as in Monodepth2, seeded per sample so that
  a run is reproducible whatever the number of workers.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from ros2_monodepth.core.bags import IMAGE_TYPES, BagError, FrameStats, decode_rgb, open_bags, skip_reason, stamp_ns
from ros2_monodepth.core.geometry import scale_intrinsics
from ros2_monodepth.core.image_codec import ImageFormatError
from ros2_monodepth.core.model_contract import CropResize

if TYPE_CHECKING:
    from .pose_prior import PriorDecision

THUMB_WIDTH = 64


def sibling_camera_info(image_topic: str) -> str:
    """The camera_info topic beside an image topic, as image_transport pairs them: /cam/image_raw ->
    /cam/camera_info, /cam/image_raw/compressed -> /cam/camera_info.

    >>> sibling_camera_info("/front/image_rect/compressed")
    '/front/camera_info'
    """
    topic = image_topic.rstrip("/")
    for transport in ("/compressed", "/compressedDepth", "/theora"):
        if topic.endswith(transport):
            topic = topic[: -len(transport)]
    return topic.rsplit("/", 1)[0] + "/camera_info" if "/" in topic.strip("/") else "/camera_info"


@dataclass
class IndexOptions:
    topics: Tuple[str, ...] = ("/camera/image_raw",)
    # camera_info topic of each image topic, in the same order; () = each image topic's sibling
    camera_info_topics: Tuple[str, ...] = ()
    # fx, fy, cx, cy at the bag's image size; overrides camera_info when given (every camera)
    intrinsics: Optional[Tuple[float, float, float, float]] = None
    right_topic: Optional[str] = None           # stereo: the right camera (same size, rectified)
    right_camera_info_topic: Optional[str] = None
    stride: int = 1
    fps: float = 0.0                            # > 0: keep frames at most this often (after stride)
    # mean |difference| of blurred 64-px-wide grey thumbnails, grey levels (0..255); 0 keeps every frame.
    # 0.1 m of travel at 10 Hz changes them by about 0.7; sensor noise by well under 0.3.
    static_threshold: float = 0.3
    gap_factor: float = 2.5

    def info_topics(self) -> Tuple[str, ...]:
        if self.camera_info_topics:
            if len(self.camera_info_topics) != len(self.topics):
                raise BagError(f"{len(self.topics)} image topics but {len(self.camera_info_topics)} camera_info topics: "
                               "give one --camera-info-topic per --topic, in the same order (or none: each image topic's "
                               "sibling camera_info is used)")
            return tuple(self.camera_info_topics)
        return tuple(sibling_camera_info(t) for t in self.topics)


@dataclass
class FrameSequence:
    """One camera in one recording: kept frames in time order (stamps ns, serialized messages, segment ids), its
    intrinsics and image size, and what was dropped and why. ``unusable`` says why the whole sequence is (or '')."""

    name: str
    bag: str
    topic: str
    msgtype: str = ""
    stamps: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    raw: List[bytes] = field(default_factory=list)
    segments: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    right_raw: List[bytes] = field(default_factory=list)
    right_msgtype: str = ""
    K: np.ndarray = field(default_factory=lambda: np.eye(3))
    size: Tuple[int, int] = (0, 0)              # (H, W) of this camera's images
    baseline: float = 0.0                       # metres, from the right camera_info P
    stats: FrameStats = field(default_factory=FrameStats)
    considered: int = 0                         # frames after stride / fps, before the static check
    static_skipped: int = 0
    unusable: str = ""
    # metres travelled by the camera between consecutive kept frames (NaN where not covered); set by
    # ``odometry_source.attach_travel`` for velocity supervision, None without an odometry source
    travel: Optional[np.ndarray] = None
    travel_source: str = ""

    def __len__(self) -> int:
        return len(self.raw)


@dataclass
class FrameIndex:
    """Every sequence of the recordings given, usable or not."""

    sequences: List[FrameSequence] = field(default_factory=list)

    @property
    def usable(self) -> List[FrameSequence]:
        return [s for s in self.sequences if not s.unusable]

    def summary(self, triplets: Optional[Tuple[np.ndarray, np.ndarray]] = None) -> List[Dict[str, Any]]:
        """One row per sequence: size, frames, what was dropped and why, segments, train/val triplets."""
        rows = []
        for i, s in enumerate(self.sequences):
            row: Dict[str, Any] = {"sequence": s.name, "size": f"{s.size[1]}x{s.size[0]}" if s.size[0] else "-",
                                   "frames considered": s.considered, "kept": len(s), "static": s.static_skipped,
                                   "unreadable": s.stats.skipped, "reasons": dict(s.stats.reasons),
                                   "segments": int(s.segments.max()) + 1 if len(s.segments) else 0}
            if triplets is not None:
                row["train triplets"] = int((triplets[0][:, 0] == i).sum()) if len(triplets[0]) else 0
                row["val triplets"] = int((triplets[1][:, 0] == i).sum()) if len(triplets[1]) else 0
            if s.travel is not None:
                row["odometry coverage"] = f"{np.isfinite(s.travel).mean():.0%} ({s.travel_source})"
            if s.unusable:
                row["unusable"] = s.unusable
            rows.append(row)
        return rows


@dataclass
class DataSummary:
    """What a training run's data is: printed at the start, summary.json's ``data``, evidence for the verdict.

    >>> DataSummary([{"frames considered": 100, "static": 30}], 60, 6, (96, 320), "as given", {}).static_frame_share
    0.3
    """

    sequences: List[Dict[str, Any]]            # FrameIndex.summary rows
    train_triplets: int
    val_triplets: int
    network_size: Tuple[int, int]              # (height, width) chosen for this run
    network_size_reason: str
    K_train: Dict[str, List[List[float]]]      # per sequence: K at the network size, after its crop
    odometry: Optional[Dict[str, str]] = None  # per sequence, what the odometry gave (velocity supervision only)
    velocity_coverage: float = 0.0             # share of the training frame pairs with a known distance
    odometry_source: str = ""
    median_travel: float = 0.0                 # metres a frame, median over the training pairs with a known distance
    translation_gain: float = 1.0              # the pose network's training-only translation gain (PoseDecoder)
    pose_prior: Optional["PriorDecision"] = None   # whether the two-view pose prior is used, and why

    @property
    def static_frame_share(self) -> float:
        considered = sum(int(r.get("frames considered", 0)) for r in self.sequences)
        static = sum(int(r.get("static", 0)) for r in self.sequences)
        return round(static / considered, 3) if considered else 0.0

    def to_json(self) -> Dict[str, Any]:
        out = asdict(self)
        if self.odometry is None:
            for key in ("odometry", "velocity_coverage", "odometry_source", "median_travel"):
                out.pop(key)
        return out


def format_summary(rows: List[Dict[str, Any]]) -> str:
    """The per-sequence summary as lines of text (printed at the start of training)."""
    lines = []
    for r in rows:
        if "unusable" in r:
            lines.append(f"  {r['sequence']}: not used: {r['unusable']}")
            continue
        dropped = ", ".join(f"{n} {k}" for k, n in r["reasons"].items())
        lines.append(f"  {r['sequence']}: {r['size']}, {r['kept']} of {r['frames considered']} frames kept "
                     f"({r['static']} static" + (f", {dropped}" if dropped else "") + f"), {r['segments']} segment(s)"
                     + (f", {r['train triplets']} train / {r['val triplets']} validation triplets" if "train triplets" in r else "")
                     + (f", odometry {r['odometry coverage']}" if "odometry coverage" in r else ""))
    return "\n".join(lines)


def _thumbnail(rgb: np.ndarray) -> np.ndarray:
    h, w = rgb.shape[:2]
    small = cv2.resize(rgb, (THUMB_WIDTH, max(1, round(h * THUMB_WIDTH / w))), interpolation=cv2.INTER_AREA)
    grey = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY).astype(np.float32)
    return cv2.GaussianBlur(grey, (3, 3), 0)


def _info_K(msg: Any) -> Tuple[np.ndarray, Tuple[int, int], float]:
    K = np.asarray(msg.k, np.float64).reshape(3, 3)
    P = np.asarray(msg.p, np.float64).reshape(3, 4)
    baseline = -P[0, 3] / P[0, 0] if P[0, 0] else 0.0
    return K, (int(msg.height), int(msg.width)), float(baseline)


def index_frames(paths: Sequence[str | Path], opts: IndexOptions, progress: bool = False) -> FrameIndex:
    """Read each bag once and keep the frames of every (bag, image topic) sequence (module docstring). BagError only
    when no sequence is usable, naming each and why."""
    bag_paths = [Path(p) for p in paths]
    missing = [str(p) for p in bag_paths if not p.exists()]
    if missing:
        raise BagError(f"no such bag: {', '.join(missing)}")
    info_topics = opts.info_topics()
    if opts.right_topic and len(opts.topics) != 1:
        raise BagError("stereo (--right-topic) needs exactly one left image topic")
    index = FrameIndex()
    for bag in bag_paths:
        index.sequences += _index_bag(bag, opts, info_topics, progress)
    if not index.usable:
        raise BagError("no usable frames in " + ", ".join(map(str, bag_paths)) + ":\n"
                       + "\n".join(f"  {s.name}: {s.unusable}" for s in index.sequences))
    return index


def _index_bag(bag: Path, opts: IndexOptions, info_topics: Tuple[str, ...], progress: bool) -> List[FrameSequence]:
    from tqdm import tqdm

    sequences = [FrameSequence(f"{bag.name}:{topic}", str(bag), topic) for topic in opts.topics]
    with open_bags([bag]) as reader:
        by_topic: Dict[str, list] = {}
        for c in reader.connections:
            by_topic.setdefault(c.topic, []).append(c)
        have = ", ".join(f"{t} ({conns[0].msgtype})" for t, conns in sorted(by_topic.items())) or "no topics at all"
        wanted: Dict[str, FrameSequence] = {}
        for seq, info_topic in zip(sequences, info_topics):
            conns = by_topic.get(seq.topic, [])
            if not conns:
                seq.unusable = f"topic '{seq.topic}' is not in this bag; it has: {have}"
                continue
            if conns[0].msgtype not in IMAGE_TYPES:
                seq.unusable = f"topic '{seq.topic}' carries {conns[0].msgtype}, not an image"
                continue
            if sum(c.msgcount for c in conns) == 0:
                seq.unusable = f"topic '{seq.topic}' has no messages"
                continue
            seq.msgtype = conns[0].msgtype
            if opts.intrinsics is None:
                K, info_size = _first_K(reader, by_topic.get(info_topic, []))
                if K is None:
                    seq.unusable = (f"no camera_info with a valid K on '{info_topic}' (give --camera-info-topic, or "
                                    "--intrinsics FX FY CX CY)")
                    continue
                seq.K, seq.size = K, info_size      # size: camera_info's until the first frame says otherwise
            else:
                fx, fy, cx, cy = opts.intrinsics
                seq.K = np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], np.float64)
            wanted[seq.topic] = seq
        right_by_stamp: Dict[int, bytes] = {}
        if opts.right_topic and wanted:
            right_conns = by_topic.get(opts.right_topic, [])
            seq = next(iter(wanted.values()))
            if not right_conns:
                seq.unusable = f"stereo: right topic '{opts.right_topic}' is not in this bag"
                wanted.clear()
            else:
                seq.right_msgtype = right_conns[0].msgtype
                right_info = by_topic.get(opts.right_camera_info_topic or "", [])
                for conn, _, raw in (reader.messages(connections=right_info) if right_info else ()):
                    seq.baseline = _info_K(reader.deserialize(raw, conn.msgtype))[2]
                    break
                if seq.baseline <= 0:
                    seq.unusable = (f"stereo needs a baseline: P[3] of '{opts.right_camera_info_topic}' must be "
                                    "-fx * baseline < 0")
                    wanted.clear()
                for conn, _, raw in reader.messages(connections=right_conns):
                    right_by_stamp[stamp_ns(reader.deserialize(raw, conn.msgtype))] = raw
        if not wanted:
            return sequences
        state = {t: _SequenceState() for t in wanted}
        conns = [c for t in wanted for c in by_topic[t]]
        total = sum(c.msgcount for c in conns)
        for conn, _, raw in tqdm(reader.messages(connections=conns), total=total, desc=f"indexing {bag.name}",
                                 unit="frame", disable=not progress):
            _keep_frame(wanted[conn.topic], state[conn.topic], reader, conn, raw, opts, right_by_stamp)
    for seq in wanted.values():
        _finish(seq, state[seq.topic], opts)
    return sequences


def _first_K(reader: Any, conns: list) -> Tuple[Optional[np.ndarray], Tuple[int, int]]:
    if not conns:          # rosbags reads every message when given no connection
        return None, (0, 0)
    for conn, _, raw in reader.messages(connections=conns):
        K, size, _ = _info_K(reader.deserialize(raw, conn.msgtype))
        if K[0, 0] > 0 and np.isfinite(K).all():
            return K, size
    return None, (0, 0)


@dataclass
class _SequenceState:
    """What one pass needs while it reads a sequence's frames."""

    i: int = 0
    last_thumb: Optional[np.ndarray] = None
    last_kept_ns: Optional[int] = None
    all_stamps: List[int] = field(default_factory=list)   # every considered frame (for segments)
    kept_pos: List[int] = field(default_factory=list)
    stamps: List[int] = field(default_factory=list)
    info_size: Tuple[int, int] = (0, 0)
    seen_size: Tuple[int, int] = (0, 0)


def _keep_frame(seq: FrameSequence, st: _SequenceState, reader: Any, conn: Any, raw: bytes, opts: IndexOptions,
                right_by_stamp: Dict[int, bytes]) -> None:
    st.i += 1
    if (st.i - 1) % max(1, opts.stride):
        return
    try:
        msg = reader.deserialize(raw, conn.msgtype)
        stamp = stamp_ns(msg)
        rgb = decode_rgb(msg, conn.msgtype)
    except (ImageFormatError, ValueError, KeyError) as exc:
        seq.stats.skip(skip_reason(exc))
        return
    if opts.fps > 0 and st.last_kept_ns is not None and 0 <= stamp - st.last_kept_ns < 0.95e9 / opts.fps:
        return
    st.last_kept_ns = stamp
    seq.considered += 1
    st.all_stamps.append(stamp)
    if st.seen_size == (0, 0):
        st.info_size, st.seen_size = seq.size, rgb.shape[:2]
    elif rgb.shape[:2] != st.seen_size:
        seq.stats.skip("size changed")
        return
    if opts.right_topic and stamp not in right_by_stamp:
        seq.stats.skip("no right frame with this stamp")
        return
    thumb = _thumbnail(rgb)
    if opts.static_threshold > 0 and st.last_thumb is not None and \
            float(np.abs(thumb - st.last_thumb).mean()) < opts.static_threshold:
        seq.static_skipped += 1
        return
    st.last_thumb = thumb
    seq.stats.read += 1
    st.stamps.append(stamp)
    seq.raw.append(raw)
    st.kept_pos.append(len(st.all_stamps) - 1)
    if opts.right_topic:
        seq.right_raw.append(right_by_stamp[stamp])


def _finish(seq: FrameSequence, st: _SequenceState, opts: IndexOptions) -> None:
    if not seq.raw:
        seq.unusable = (f"no usable frames (considered {seq.considered}, static {seq.static_skipped}, unreadable "
                        f"{seq.stats.skipped}: {seq.stats.reasons})")
        return
    # Segments come from the spacing of the *considered* frames, so that skipping static frames does not split a
    # segment but a real hole in the recording does; a stamp that does not increase starts a new segment too.
    t = np.asarray(st.all_stamps, np.int64)
    dt = np.diff(t)
    median = float(np.median(dt[dt > 0])) if np.any(dt > 0) else 1.0
    breaks = np.concatenate([[0], ((dt > opts.gap_factor * median) | (dt <= 0)).astype(np.int64)])
    seq.segments = np.cumsum(breaks)[np.asarray(st.kept_pos, np.int64)]
    seq.stamps = np.asarray(st.stamps, np.int64)
    if np.any(dt <= 0):
        seq.stats.reasons["stamps not increasing (new segment)"] = int(np.sum(dt <= 0))
    info_size = st.info_size
    seq.size = st.seen_size
    if opts.intrinsics is None and info_size[0] > 0 and info_size != seq.size:
        # camera_info of another size than the images (a binned or resized stream): scale K to the images
        seq.K = scale_intrinsics(seq.K, seq.size[1] / info_size[1], seq.size[0] / info_size[0])


def make_triplets(index: FrameIndex) -> np.ndarray:
    """(sequence, centre position) of every frame whose two neighbours are in its segment of its sequence.

    Shapes: -> (N, 2) int64.
    """
    out = []
    for k, seq in enumerate(index.sequences):
        seg = seq.segments
        if seq.unusable or len(seg) < 3:
            continue
        centre = np.arange(1, len(seg) - 1)
        ok = (seg[centre - 1] == seg[centre]) & (seg[centre + 1] == seg[centre])
        out.append(np.stack([np.full(int(ok.sum()), k), centre[ok]], 1))
    return np.concatenate(out).astype(np.int64) if out else np.zeros((0, 2), np.int64)


def split_by_time(index: FrameIndex, triplets: np.ndarray, val_fraction: float = 0.1,
                  val_range: Optional[Tuple[float, float]] = None) -> Tuple[np.ndarray, np.ndarray]:
    """(train triplets, validation triplets): in each sequence, validation is one time range, in seconds from that
    sequence's first frame.

    Default range: the last ``val_fraction`` of each sequence's time span. A triplet with any frame inside the range
    is validation; triplets that touch it from outside are dropped from both.
    """
    train, val = [], []
    for k, seq in enumerate(index.sequences):
        mine = triplets[triplets[:, 0] == k] if len(triplets) else triplets
        if not len(mine):
            continue
        t = (seq.stamps - seq.stamps[0]) / 1e9
        if val_range is None:
            span = float(t[-1]) if len(t) else 0.0
            lo, hi = (span * (1.0 - val_fraction), math.inf) if val_fraction > 0 else (math.inf, math.inf)
        else:
            lo, hi = val_range
        inside = (t >= lo) & (t <= hi)
        c = mine[:, 1]
        all_in = inside[c - 1] & inside[c] & inside[c + 1]
        any_in = inside[c - 1] | inside[c] | inside[c + 1]
        train.append(mine[~any_in])
        val.append(mine[all_in])
    empty = np.zeros((0, 2), np.int64)
    return (np.concatenate(train) if train else empty), (np.concatenate(val) if val else empty)


@dataclass
class ResizePlan:
    """Crop (to the training aspect ratio) then resize, and the matching intrinsics: the model contract's rule
    (``core.model_contract.CropResize``, the one the node applies) with this camera's K."""

    crop: Tuple[int, int, int, int]   # y0, x0, h, w in the source image
    out_size: Tuple[int, int]         # (H, W)
    K: np.ndarray                     # at the output size
    interpolation: int = cv2.INTER_AREA

    @classmethod
    def make(cls, src_size: Tuple[int, int], out_size: Tuple[int, int], K: np.ndarray, crop: str = "center",
             resize_filter: str = "area") -> "ResizePlan":
        rule = CropResize.make(src_size, out_size, crop, resize_filter)
        return cls(rule.crop, rule.out_size, rule.intrinsics(K), rule.interpolation)

    def apply(self, rgb: np.ndarray) -> np.ndarray:
        return CropResize((rgb.shape[0], rgb.shape[1]), self.crop, self.out_size, self.interpolation).apply(rgb)


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




def invert_rigid(T: np.ndarray) -> np.ndarray:
    """The inverse of a rigid transform (4, 4); NaN stays NaN.

    >>> T = np.eye(4); T[:3, 3] = [1.0, 2.0, 3.0]
    >>> invert_rigid(T)[:3, 3].tolist()
    [-1.0, -2.0, -3.0]
    """
    R, t = T[:3, :3], T[:3, 3]
    out = np.eye(4, dtype=T.dtype)
    out[:3, :3] = R.T
    out[:3, 3] = -R.T @ t
    if not np.isfinite(T).all():
        out[:] = np.nan
    return out


def two_view_pair_motion(index: FrameIndex, plans: Dict[int, "ResizePlan"], triplets: np.ndarray, mode: str = "on",
                         cache_path: Optional[Path] = None, progress: bool = False
                         ) -> Tuple[Dict[int, np.ndarray], "PriorDecision"]:
    """Per sequence with triplets: (frames - 1, 4, 4) float32, T_j_j+1 between consecutive kept frames from
    two-view geometry on the region the networks see (the crop of ``plans``, at the camera's resolution), translation
    of unit length; NaN rows where the geometry cannot say. Only the pairs that triplets use are computed, and only
    when ``mode`` (``pose_prior.PRIOR_MODES``) decides to use the prior: the second value says what it decided and why.
    Estimates are read from and written to ``cache_path`` (``pose_prior.PriorCache``)."""
    from tqdm import tqdm

    from .pose_prior import AUTO_PROBE_PAIRS, PriorCache, compute_pairs, decide_prior, probe_pairs, sequence_key
    from .two_view import relative_motion

    needed = sorted({(int(k), j) for k, c in np.asarray(triplets, np.int64).reshape(-1, 2) for j in (int(c) - 1, int(c))})
    if mode == "off" or not needed:
        return {}, decide_prior("off" if mode == "off" else mode, 0, 0, len(needed))
    regions = {}
    for k in {k for k, _ in needed}:
        seq, plan = index.sequences[k], plans[k]
        # the region the networks see, at the camera's own resolution: rotation and direction of travel do not
        # depend on the resize, and the full pixels give the corner tracking parallax to work with
        y0, x0, h, w = plan.crop
        K = np.asarray(seq.K, np.float64).copy()
        K[0, 2] -= x0
        K[1, 2] -= y0
        regions[k] = (y0, x0, h, w, K, sequence_key(seq.name, len(seq.raw), seq.stamps[0], seq.stamps[-1], plan.crop, K))

    def estimate(pair: Tuple[int, int]) -> np.ndarray:
        k, j = pair
        seq, (y0, x0, h, w, K, _) = index.sequences[k], regions[k]
        first = _Decoder.rgb(seq.raw[j], seq.msgtype)[y0:y0 + h, x0:x0 + w]
        second = _Decoder.rgb(seq.raw[j + 1], seq.msgtype)[y0:y0 + h, x0:x0 + w]
        found = relative_motion(np.ascontiguousarray(first), np.ascontiguousarray(second), K)
        motion = np.full((4, 4), np.nan, np.float32)
        if found is not None:
            motion[:] = np.eye(4)
            motion[:3, :3], motion[:3, 3] = found.rotation, found.direction
        return motion

    cache = PriorCache(cache_path)
    if cache.note:
        print(f"[train] {cache.note}", flush=True)
    keys = {k: r[5] for k, r in regions.items()}
    known = lambda found: sum(1 for m in found.values() if np.isfinite(m).all())  # noqa: E731
    found: Dict[Tuple[int, int], np.ndarray] = {}
    if mode == "auto" and len(needed) > AUTO_PROBE_PAIRS:
        probe = probe_pairs(needed)
        with tqdm(total=len(probe), desc="two-view pose prior: sample", unit="pair", disable=not progress) as bar:
            found = compute_pairs(probe, estimate, keys, cache, bar)
        decision = decide_prior(mode, known(found), len(found), len(needed))
        if not decision.used:
            _save_prior_cache(cache)
            return {}, decision
    rest = [p for p in needed if p not in found]
    with tqdm(total=len(rest), desc="two-view pose prior", unit="pair", disable=not progress or not rest) as bar:
        found.update(compute_pairs(rest, estimate, keys, cache, bar))
    _save_prior_cache(cache)
    decision = decide_prior(mode, known(found), len(found), len(needed))
    out: Dict[int, np.ndarray] = {}
    if decision.used:
        for (k, j), m in found.items():
            out.setdefault(k, np.full((len(index.sequences[k].raw) - 1, 4, 4), np.nan, np.float32))[j] = m
    return out, decision


def _save_prior_cache(cache: Any) -> None:
    note = cache.note
    cache.save()
    if cache.note != note:
        print(f"[train] WARNING: {cache.note}", flush=True)


class TripletDataset(Dataset):
    """Samples around the triplets given ((sequence, centre) rows, ``make_triplets``).

    ``__getitem__(i)`` or ``__getitem__((i, seed))`` (seed picks the augmentation; see ``SampleOrder``) ->
      images   (3, 3, H, W) float32 in [0, 1], frames t-1, t, t+1, as the loss sees them
      aug      (3, 3, H, W) the same after colour jitter (what the networks see)
      K        (3, 3) float32 at (H, W), this sample's camera
      stereo (3, H, W) and T_stereo (4, 4) (right <- left camera) when the sequence has a right camera
      travel   (2,) float32 metres the camera moved (t-1 -> t, t -> t+1), NaN where unknown (velocity supervision)
      dt       (2,) float32 seconds between those frames
      prior    (2, 4, 4) float32 with ``pose_prior``: T_prev_cur and T_next_cur from two-view geometry
               (``two_view``), unit translation, NaN where the geometry cannot say
      sequence, centre  int
    Each sequence is cropped to the training aspect ratio and resized with its own plan (its camera's size and K).
    Collated by the DataLoader, a batch of these is ``objective.TripletBatch.of(batch)``.
    """

    def __init__(self, index: FrameIndex, triplets: np.ndarray, size: Tuple[int, int], crop: str = "center",
                 augmentation: Optional[Augmentation] = None, resize_filter: str = "area", pose_prior: Any = False,
                 progress: bool = False, prior_cache: Optional[Path] = None):
        self.index = index
        self.triplets = np.asarray(triplets, np.int64).reshape(-1, 2)
        self.plans = {k: ResizePlan.make(seq.size, size, seq.K, crop, resize_filter)
                      for k, seq in enumerate(index.sequences) if not seq.unusable}
        self.aug = augmentation or Augmentation(enabled=False)
        # per sequence, T_j_j+1 between consecutive kept frames, as the networks see them (computed once, here)
        self.pair_motion: Dict[int, np.ndarray] = {}
        # pose_prior: a mode of pose_prior.PRIOR_MODES, or True / False for "on" / "off"
        mode = ("on" if pose_prior else "off") if isinstance(pose_prior, bool) else str(pose_prior)
        self.pair_motion, self.prior_decision = two_view_pair_motion(index, self.plans, self.triplets, mode,
                                                                     prior_cache, progress)

    @property
    def prior_coverage(self) -> Tuple[int, int]:
        """(frame pairs with a geometric estimate, pairs computed); (0, 0) without the prior."""
        return self.prior_decision.known, self.prior_decision.looked_at

    def __len__(self) -> int:
        return len(self.triplets)

    def __getitem__(self, item) -> Dict[str, torch.Tensor]:
        i, seed = item if isinstance(item, tuple) else (item, None)
        k, c = (int(v) for v in self.triplets[i])
        seq, plan = self.index.sequences[k], self.plans[k]
        frames = [plan.apply(_Decoder.rgb(seq.raw[j], seq.msgtype)) for j in (c - 1, c, c + 1)]
        stereo = bool(seq.right_raw)
        if stereo:
            frames.append(plan.apply(_Decoder.rgb(seq.right_raw[c], seq.right_msgtype)))
        arr = np.stack(frames).astype(np.float32) / 255.0
        K = plan.K.copy()
        baseline = seq.baseline
        aug = arr
        flipped = False
        if self.aug.enabled and seed is not None:
            rng = np.random.default_rng(seed)
            if rng.random() < 0.5:
                aug = self.aug.jitter(arr, rng)
            if rng.random() < 0.5:
                arr, aug = arr[:, :, ::-1], aug[:, :, ::-1]
                flipped = True
                K[0, 2] = plan.out_size[1] - 1 - K[0, 2]
                baseline = -baseline   # a mirrored rig has the right camera on the left
        to_t = lambda a: torch.from_numpy(np.ascontiguousarray(a.transpose(0, 3, 1, 2)))  # noqa: E731
        travel = (np.array([seq.travel[c - 1], seq.travel[c]], np.float32) if seq.travel is not None
                  else np.full(2, np.nan, np.float32))
        out = {"images": to_t(arr[:3]), "aug": to_t(aug[:3]), "K": torch.from_numpy(K.astype(np.float32)),
               "travel": torch.from_numpy(travel),
               "dt": torch.tensor([(seq.stamps[c] - seq.stamps[c - 1]) / 1e9, (seq.stamps[c + 1] - seq.stamps[c]) / 1e9],
                                  dtype=torch.float32),
               "sequence": torch.tensor(k), "centre": torch.tensor(c)}
        if k in self.pair_motion:
            prior = np.stack([self.pair_motion[k][c - 1], invert_rigid(self.pair_motion[k][c])])
            if flipped:  # the mirrored frames moved in the mirror: S T S with S = diag(-1, 1, 1, 1)
                mirror = np.diag([-1.0, 1.0, 1.0, 1.0]).astype(np.float32)
                prior = mirror @ prior @ mirror
            out["prior"] = torch.from_numpy(np.ascontiguousarray(prior, np.float32))
        if stereo:
            T = torch.eye(4)
            T[0, 3] = -baseline   # points in the left camera -> right camera: x_r = x_l - baseline
            out.update(stereo=to_t(arr[3:])[0], T_stereo=T)
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

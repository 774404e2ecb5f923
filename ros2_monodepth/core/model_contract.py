"""What the networks of a checkpoint expect and give: the model contract, written once by training into the
checkpoint's ``metadata.json`` and read by the dataset, evaluation, export, every backend and the frame pipeline.

Owns, without torch:
- ``CheckpointMetadata``: network size, how a camera frame becomes a network input (crop policy, resize filter,
  channel order), the disparity-to-depth range, the stereo factor, whether depth is metric and why, provenance;
- ``check_metadata``: the metadata checked against itself (and, given the encoder's layer count, against the
  weights), so that a checkpoint that contradicts itself is refused at start with the field and the value;
- ``CropResize``: the camera-frame-to-network-input rule (crop to the network's aspect, then resize) and the
  intrinsics that go with it.

    >>> plan = CropResize.make((480, 640), (96, 320), "center")
    >>> plan.crop, plan.out_size
    ((144, 0, 192, 640), (96, 320))
    >>> round(plan.kept_fraction, 2)
    0.4
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Dict, Optional, Tuple

import cv2
import numpy as np

from .intrinsics import scale_intrinsics

CROP_POLICIES = ("center", "bottom", "top", "none")
RESIZE_FILTERS = {"area": cv2.INTER_AREA, "linear": cv2.INTER_LINEAR, "lanczos": cv2.INTER_LANCZOS4}
ENCODER_LAYERS = (18, 34, 50)
POSE_DOWNSCALES = (1, 2, 4)   # the pose network's input shrink factors (networks.PoseNet's input_downscale)
# the pose network's form: its own ResNet on the stacked pair, or a decoder on the depth encoder's features of each
# frame (Monodepth2's --pose_model_type separate_resnet / shared)
POSE_MODELS = ("separate", "shared")
NETWORK_MULTIPLE = 32   # the encoder halves five times; the decoder's skip connections need exact halves
# Entries a metadata.json must have: every version of this project has written them (network_size as the
# separate entries height and width before 0.2).
REQUIRED_FIELDS = ("num_layers", "network_size", "min_depth", "max_depth")
# metadata.json of versions before 0.2, and Monodepth2's encoder.pth, give the network size as two entries
LEGACY_SIZE_KEYS = ("height", "width")


class CheckpointError(ValueError):
    """A checkpoint file that does not fit the model; the message names the file and what differs."""


class ContractError(CheckpointError):
    """Metadata that contradicts itself or its weights; the message names the file, the field, the value and what
    was expected."""


@dataclass
class CheckpointMetadata:
    """What a checkpoint says about itself (Monodepth2's entries + this project's): the model contract."""

    num_layers: int = 18
    # (height, width) of the network input, multiples of 32; "WxH" in metadata.json (format_size / parse_size)
    network_size: Tuple[int, int] = (192, 640)
    use_stereo: bool = False
    min_depth: float = 0.1
    max_depth: float = 100.0
    # Multiplier that turns the depth of stereo-trained weights into metres (5.4 for the KITTI models:
    # 0.54 m baseline / 0.1 training baseline).
    stereo_scale: float = 5.4
    has_pose: bool = True
    source: str = "ros2_monodepth"
    # True when depth and pose translation are in metres as the networks give them (velocity supervision from the
    # robot's odometry, or stereo training with a real baseline); scale_source says from what
    metric: bool = False
    scale_source: str = ""
    # How a camera frame became a network input in training (the node and the evaluation do the same): crop to the
    # network's aspect ratio (CROP_POLICIES), then resize with resize_filter; images in channel_order.
    crop: str = "center"
    resize_filter: str = "area"
    channel_order: str = "rgb"
    # The pose network sees the network input shrunk by this factor (a k x k mean, part of the network): 1, 2 or 4
    pose_downscale: int = 1
    # 'separate' (pose_encoder.pth + pose.pth) or 'shared' (pose.pth only: a decoder on the depth encoder's features)
    pose_model: str = "separate"
    extra: Dict[str, Any] = field(default_factory=dict)

    def input_plan(self, camera_size: Tuple[int, int]) -> "CropResize":
        """How a ``camera_size`` (H, W) frame becomes this network's input."""
        return CropResize.make(camera_size, self.network_size, self.crop, self.resize_filter)


def parse_size(text: str) -> Tuple[int, int]:
    """"WxH" (how sizes are written for people: options, parameters, logs, metadata.json) -> (height, width).

    >>> parse_size("320x96")
    (96, 320)
    >>> parse_size("320 by 96")
    Traceback (most recent call last):
    ...
    ValueError: '320 by 96': expected WIDTHxHEIGHT in pixels, e.g. 320x96
    """
    parts = str(text).lower().replace(" ", "").split("x")
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        raise ValueError(f"{text!r}: expected WIDTHxHEIGHT in pixels, e.g. 320x96")
    return int(parts[1]), int(parts[0])


def format_size(size: Tuple[int, int]) -> str:
    """(height, width) -> "WxH".

    >>> format_size((96, 320))
    '320x96'
    """
    return f"{int(size[1])}x{int(size[0])}"


def size_problem(size: Any) -> Optional[str]:
    """What is wrong with a network size (height, width), or None.

    >>> size_problem((96, 333))
    'expected multiples of 32 (the encoder halves the size five times)'
    """
    if not (isinstance(size, tuple) and len(size) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)):
        return "expected WIDTHxHEIGHT, two positive whole numbers"
    if size[0] % NETWORK_MULTIPLE or size[1] % NETWORK_MULTIPLE:
        return f"expected multiples of {NETWORK_MULTIPLE} (the encoder halves the size five times)"
    return None


def _problem(name: str, value: Any, default: Any) -> Optional[str]:
    """What is wrong with one entry's value (its type and range), or None."""
    if name == "network_size":
        return size_problem(value)
    if isinstance(default, bool):
        return None if isinstance(value, bool) else "expected true or false"
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            return "expected a positive whole number"
        if name == "num_layers" and value not in ENCODER_LAYERS:
            return f"expected one of {', '.join(map(str, ENCODER_LAYERS))} (ResNet depth)"
        if name == "pose_downscale" and value not in POSE_DOWNSCALES:
            return f"expected one of {', '.join(map(str, POSE_DOWNSCALES))} (the pose network's input shrink)"
        return None
    if isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0
        return None if ok else "expected a positive finite number"
    if not isinstance(value, type(default)):
        return f"expected a {type(default).__name__}"
    if name == "crop" and value not in CROP_POLICIES:
        return f"expected one of {', '.join(CROP_POLICIES)}"
    if name == "resize_filter" and value not in RESIZE_FILTERS:
        return f"expected one of {', '.join(RESIZE_FILTERS)}"
    if name == "channel_order" and value not in ("rgb", "bgr"):
        return "expected rgb or bgr"
    if name == "pose_model" and value not in POSE_MODELS:
        return f"expected one of {', '.join(POSE_MODELS)} (the pose network's form)"
    return None


def metadata_from_json(raw: Dict[str, Any], source: str) -> CheckpointMetadata:
    """CheckpointMetadata from metadata.json's object: every required entry present, each known entry of its type
    and range, the whole consistent (``check_metadata``); ContractError naming the first that is not.

    >>> metadata_from_json({"num_layers": 18, "network_size": "320x100", "min_depth": 0.1, "max_depth": 80},
    ...                    "m.json")
    Traceback (most recent call last):
    ...
    ros2_monodepth.core.model_contract.ContractError: m.json: field 'network_size' is '320x100', expected multiples of 32 (the encoder halves the size five times)
    """
    raw = _with_network_size(raw, source)
    missing = [name for name in REQUIRED_FIELDS if name not in raw]
    if missing:
        raise ContractError(f"{source}: field '{missing[0]}' is missing" + (
            f" (also {', '.join(missing[1:])})" if missing[1:] else "") + "; a checkpoint's metadata.json names "
            "num_layers, network_size, min_depth and max_depth")
    meta = CheckpointMetadata()
    known = {f.name for f in fields(CheckpointMetadata)}
    for f in fields(CheckpointMetadata):
        if f.name not in raw or f.name == "extra":
            continue
        value = raw[f.name]
        if f.name == "network_size":
            value = _size_from_text(value, source)
        problem = _problem(f.name, value, getattr(meta, f.name))
        if problem:
            raise ContractError(f"{source}: field '{f.name}' is {raw[f.name]!r}, {problem}")
        setattr(meta, f.name, float(value) if isinstance(getattr(meta, f.name), float) else value)
    if "crop" not in raw:
        # metadata from before the crop was recorded: training's default then was the centre crop
        meta.extra["crop_assumed"] = "metadata.json has no 'crop' (older version): training's default 'center' assumed"
    extra = raw.get("extra", {})
    meta.extra.update(extra if isinstance(extra, dict) else {"extra": extra})
    meta.extra.update({k: v for k, v in raw.items() if k not in known and k not in LEGACY_SIZE_KEYS})
    check_metadata(meta, source)
    return meta


def metadata_to_json(meta: CheckpointMetadata) -> Dict[str, Any]:
    """The object metadata.json holds (``metadata_from_json`` reads it back).

    >>> metadata_to_json(CheckpointMetadata(network_size=(96, 320)))["network_size"]
    '320x96'
    """
    raw = asdict(meta)
    raw["network_size"] = format_size(meta.network_size)
    return raw


def _size_from_text(value: Any, source: str) -> Any:
    """metadata.json's "WxH" -> (height, width); a value that is not such a string is left for ``_problem``."""
    if isinstance(value, str):
        try:
            return parse_size(value)
        except ValueError:
            raise ContractError(f"{source}: field 'network_size' is {value!r}, expected WIDTHxHEIGHT in pixels, "
                                "e.g. 320x96") from None
    return value


def _with_network_size(raw: Dict[str, Any], source: str) -> Dict[str, Any]:
    """Metadata of versions before 0.2 gives the network size as height and width: read as network_size."""
    if "network_size" in raw or not all(k in raw for k in LEGACY_SIZE_KEYS):
        return raw
    h, w = (raw[k] for k in LEGACY_SIZE_KEYS)
    for key, value in (("height", h), ("width", w)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ContractError(f"{source}: field '{key}' is {value!r}, expected a positive whole number")
        if value % NETWORK_MULTIPLE:
            raise ContractError(f"{source}: field '{key}' is {value!r}, expected a multiple of {NETWORK_MULTIPLE} "
                                "(the encoder halves the size five times)")
    rest = {k: v for k, v in raw.items() if k not in LEGACY_SIZE_KEYS}
    return {**rest, "network_size": format_size((h, w))}


def check_metadata(meta: CheckpointMetadata, source: str, encoder_layers: Optional[int] = None,
                   pose_encoder_layers: Optional[int] = None, has_pose_files: Optional[bool] = None) -> None:
    """ContractError when the metadata contradicts itself or, where given, the weights: the encoder's and pose
    encoder's ResNet depth as their state_dicts hold it, and whether pose files exist.

    >>> check_metadata(CheckpointMetadata(num_layers=34), "ck/metadata.json", encoder_layers=18)
    Traceback (most recent call last):
    ...
    ros2_monodepth.core.model_contract.ContractError: ck/metadata.json: field 'num_layers' is 34, but encoder.pth holds a ResNet-18 encoder
    """
    for f in fields(CheckpointMetadata):
        if f.name == "extra":
            continue
        value = getattr(meta, f.name)
        problem = _problem(f.name, value, getattr(CheckpointMetadata, f.name, value) if f.name != "extra" else value)
        if problem:
            raise ContractError(f"{source}: field '{f.name}' is {value!r}, {problem}")
    if meta.min_depth >= meta.max_depth:
        raise ContractError(f"{source}: field 'min_depth' is {meta.min_depth!r}, expected below max_depth "
                            f"({meta.max_depth!r})")
    if encoder_layers is not None and encoder_layers != meta.num_layers:
        raise ContractError(f"{source}: field 'num_layers' is {meta.num_layers}, but encoder.pth holds a "
                            f"ResNet-{encoder_layers} encoder")
    if has_pose_files is not None and meta.has_pose and not has_pose_files:
        needed = "pose.pth is" if meta.pose_model == "shared" else "pose_encoder.pth / pose.pth are"
        raise ContractError(f"{source}: field 'has_pose' is true, but {needed} missing")
    if meta.pose_model == "shared" and meta.pose_downscale != 1:
        raise ContractError(f"{source}: field 'pose_downscale' is {meta.pose_downscale}, expected 1 with pose_model "
                            "'shared' (the pose decoder takes the depth encoder's features)")
    if meta.metric and not meta.scale_source:
        raise ContractError(f"{source}: field 'metric' is true, expected 'scale_source' to say what made it metric")
    del pose_encoder_layers   # the pose encoder's depth is free (it is checked against its own decoder on load)


@dataclass(frozen=True)
class CropResize:
    """A camera frame of ``src_size`` (H, W) cropped to ``crop`` (y0, x0, h, w) and resized to ``out_size`` (H, W).

    >>> plan = CropResize.make((720, 1280), (96, 320), "center")
    >>> plan.crop
    (168, 0, 384, 1280)
    >>> plan.apply(np.zeros((720, 1280, 3), np.uint8)).shape
    (96, 320, 3)
    """

    src_size: Tuple[int, int]
    crop: Tuple[int, int, int, int]
    out_size: Tuple[int, int]
    interpolation: int = cv2.INTER_AREA

    @classmethod
    def make(cls, src_size: Tuple[int, int], out_size: Tuple[int, int], policy: str = "center",
             resize_filter: str = "area") -> "CropResize":
        if policy not in CROP_POLICIES:
            raise ValueError(f"crop policy {policy!r}: expected one of {', '.join(CROP_POLICIES)}")
        H, W = int(src_size[0]), int(src_size[1])
        oh, ow = int(out_size[0]), int(out_size[1])
        if policy == "none":
            return cls((H, W), (0, 0, H, W), (oh, ow), RESIZE_FILTERS[resize_filter])
        target = ow / oh
        if W / H > target:   # too wide: keep the rows, crop columns
            ch, cw = H, min(W, int(round(H * target)))
        else:
            ch, cw = min(H, int(round(W / target))), W
        x0 = (W - cw) // 2
        y0 = {"center": (H - ch) // 2, "bottom": H - ch, "top": 0}[policy]
        return cls((H, W), (y0, x0, ch, cw), (oh, ow), RESIZE_FILTERS[resize_filter])

    @property
    def is_identity_crop(self) -> bool:
        return self.crop == (0, 0) + self.src_size

    @property
    def kept_fraction(self) -> float:
        """Share of the camera's pixels the network sees."""
        return (self.crop[2] * self.crop[3]) / float(self.src_size[0] * self.src_size[1])

    def intrinsics(self, K: np.ndarray) -> np.ndarray:
        """K (3, 3) of the camera frame -> K of the network input."""
        y0, x0, ch, cw = self.crop
        Kc = np.asarray(K, np.float64).copy()
        Kc[0, 2] -= x0
        Kc[1, 2] -= y0
        return scale_intrinsics(Kc, self.out_size[1] / cw, self.out_size[0] / ch)

    def cropped(self, image: np.ndarray) -> np.ndarray:
        y0, x0, ch, cw = self.crop
        return image[y0:y0 + ch, x0:x0 + cw]

    def apply(self, image: np.ndarray) -> np.ndarray:
        """(H, W, C) camera frame -> (h, w, C) network input."""
        region = self.cropped(image)
        if region.shape[:2] == self.out_size:
            return region
        return cv2.resize(region, (self.out_size[1], self.out_size[0]), interpolation=self.interpolation)

    def to_camera(self, values: np.ndarray, fill: float = float("nan")) -> np.ndarray:
        """A (h, w) map at the network's size back onto the camera's pixels: resized (bilinear) onto the crop,
        ``fill`` outside it."""
        y0, x0, ch, cw = self.crop
        inside = values if values.shape[:2] == (ch, cw) else cv2.resize(values, (cw, ch), interpolation=cv2.INTER_LINEAR)
        if self.is_identity_crop:
            return inside
        out = np.full(self.src_size + values.shape[2:], fill, values.dtype)
        out[y0:y0 + ch, x0:x0 + cw] = inside
        return out

    def describe(self) -> str:
        """One line for logs: what of the camera image the network sees."""
        y0, x0, ch, cw = self.crop
        H, W = self.src_size
        if self.is_identity_crop:
            return f"the whole {W}x{H} camera image, resized to {self.out_size[1]}x{self.out_size[0]}"
        return (f"{cw}x{ch} of the {W}x{H} camera image (x {x0}..{x0 + cw - 1}, y {y0}..{y0 + ch - 1}; "
                f"{1 - self.kept_fraction:.0%} outside the network's view), resized to {self.out_size[1]}x{self.out_size[0]}")


def size_for_aspect(camera_size: Tuple[int, int], pixels: int, multiple: int = NETWORK_MULTIPLE) -> Tuple[int, int]:
    """(height, width), multiples of ``multiple``, of about ``pixels`` pixels at the camera's own aspect ratio.

    >>> size_for_aspect((480, 640), 320 * 96)
    (160, 192)
    >>> size_for_aspect((720, 1280), 320 * 96)
    (128, 224)
    """
    H, W = camera_size
    aspect = W / H
    best: Optional[Tuple[float, int, int]] = None
    for h in range(multiple, 4097, multiple):
        w_exact = h * aspect
        for w in {max(multiple, int(math.floor(w_exact / multiple)) * multiple),
                  max(multiple, int(math.ceil(w_exact / multiple)) * multiple)}:
            # aspect error first, pixel-count error second (both relative)
            cost = abs(math.log((w / h) / aspect)) + 0.5 * abs(math.log((w * h) / pixels))
            if best is None or cost < best[0]:
                best = (cost, h, w)
    assert best is not None
    return best[1], best[2]

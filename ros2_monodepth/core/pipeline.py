"""The per-frame work of the node without ROS: decoded camera frame + intrinsics + stamp in; metric depth, cloud
values, the odometry increment and the scale state out.

Owns, in order of use: the intrinsics a frame is processed with (camera_info, or the fallback parameters), the
resize to the backend's input size, the depth network, the metric scale, the depth image at output resolution
with its intrinsics, the point cloud's points and colours, and the odometry chain. The ROS adapter
(``ros/node.py``) only converts messages, holds parameters, publishers and threads.

Two stages, so that a caller can overlap them (the node publishes depth on one thread while the pose network
runs on another): ``depth(frame)`` and ``odometry(frame)``; ``process(frame)`` runs both.

    >>> from ros2_monodepth.core.backends.base import ModelSpec
    >>> cfg = PipelineConfig(network_size=(64, 128), backend="torch", precision="fp32")
    >>> pipeline, why = FramePipeline.create(cfg)
    >>> K = np.array([[100.0, 0, 79.5], [0, 100.0, 59.5], [0, 0, 1]])
    >>> frame = pipeline.prepare(np.zeros((120, 160, 3), np.uint8), CameraIntrinsics(K, 160, 120), 1.0)
    >>> pipeline.depth(frame).depth.shape
    (64, 128)
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field, replace
from typing import Any, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from .backends.base import InferenceBackend, ModelSpec
from .colorize import colorize_depth
from .geometry import rpy_to_matrix, scale_intrinsics
from .model_contract import CheckpointMetadata, CropResize
from .odometry import OdometryIntegrator, OdometryStep, StampDecision, StampGate
from .pointcloud import RayGrid, pack_rgb_float
from .scale import MotionScale, ScaleChoice, ScaleEstimator, choose_scale_mode
from .timing import StageTimer


@dataclass
class PipelineConfig:
    """Settings of the per-frame work; each field is the node parameter of the same name (dots as underscores)."""

    # model
    checkpoint_dir: str = ""
    backend: str = "auto"
    device: str = "auto"
    precision: str = "auto"
    encoder_layers: int = 18
    # (height, width); 0: the checkpoint's own (its metadata), else Monodepth2's 640x192 and 0.1-100
    # (``with_checkpoint_settings``)
    network_size: Tuple[int, int] = (0, 0)
    min_depth: float = 0.0
    max_depth: float = 0.0
    # intrinsics used while no camera_info arrives (fx 0: wait for camera_info)
    intrinsics_fx: float = 0.0
    intrinsics_fy: float = 0.0
    intrinsics_cx: float = -1.0
    intrinsics_cy: float = -1.0
    # outputs
    depth_resolution: str = "network"
    depth_output_scale: int = 0    # the disparity head the depth network ends at (inference_model.check_output_scale)
    points_stride: int = 2
    points_rgb: bool = True
    publish_odometry: bool = True
    # camera pose on the robot (base_frame -> optical frame) and the odometry chain
    camera_mount_xyz: Tuple[float, float, float] = (0.0, 0.0, 1.5)
    camera_mount_rpy: Tuple[float, float, float] = (-math.pi / 2, 0.0, -math.pi / 2)
    max_frame_gap: float = 1.0
    # which stamps are trusted (core.odometry.StampGate)
    time_jump_threshold: float = 5.0
    time_jump_confirm_frames: int = 3
    max_stamp_lead: float = 10.0
    # the largest camera image processed (checked before decoding)
    max_image_pixels: int = 4096 * 4096
    # metric scale
    scale_mode: str = "auto"
    scale_factor: float = 1.0
    stereo_scale: float = 5.4
    camera_height: float = 0.0
    scale_smoothing: float = 0.9
    ground_region: float = 0.4
    odometry_topic: str = ""       # the robot's odometry the node listens to ('' = none): enables scale_mode odometry
    scale_window: int = 30         # frame pairs in the odometry scale's sliding window
    scale_min_motion: float = 0.05   # metres the camera must move between two frames for a pair to count

    def with_checkpoint_settings(self, meta: Optional[CheckpointMetadata]) -> Tuple["PipelineConfig", Dict[str, str]]:
        """The network size and depth range to run with: a value set here (non-zero) wins, else the checkpoint's
        metadata (``core.checkpoint.CheckpointMetadata``, None for untrained networks), else Monodepth2's defaults.
        Returns the settled config and where each value came from."""
        defaults: Dict[str, Any] = {"network_size": (192, 640), "min_depth": 0.1, "max_depth": 100.0}
        from_meta = {} if meta is None else {"network_size": meta.network_size,
                                             "min_depth": meta.min_depth, "max_depth": meta.max_depth}
        values: Dict[str, Any] = {}
        sources: Dict[str, str] = {}
        for name, default in defaults.items():
            mine = getattr(self, name)
            if mine and mine != (0, 0):
                values[name], sources[name] = mine, "parameter"
            elif name in from_meta:
                values[name], sources[name] = from_meta[name], "checkpoint"
            else:
                values[name], sources[name] = default, "default"
        return replace(self, **values), sources

    def model_spec(self) -> ModelSpec:
        return ModelSpec(checkpoint_dir=self.checkpoint_dir, num_layers=self.encoder_layers,
                         network_size=self.network_size, min_depth=self.min_depth,
                         max_depth=self.max_depth, channel_order="rgb", with_pose=self.publish_odometry,
                         device=self.device, precision=self.precision, depth_output_scale=self.depth_output_scale)

    def camera_mount(self) -> np.ndarray:
        """T_base_cam (4, 4) from ``camera_mount_xyz`` / ``camera_mount_rpy``."""
        mount = np.eye(4)
        mount[:3, :3] = rpy_to_matrix(*self.camera_mount_rpy)
        mount[:3, 3] = self.camera_mount_xyz
        return mount


class FrameError(ValueError):
    """A frame that cannot be processed; ``field`` and ``value`` name what is wrong (the caller adds the topic);
    ``kind`` is a short category for counting refused frames (default: the field)."""

    def __init__(self, field: str, value: object, reason: str, kind: str = ""):
        super().__init__(f"{field}={value!r}: {reason}")
        self.field, self.value, self.reason = field, value, reason
        self.kind = kind or field


@dataclass(frozen=True)
class CameraIntrinsics:
    """K (3, 3) for images of ``width`` x ``height`` (0 x 0: any size); ``source`` says where it came from."""

    K: np.ndarray
    width: int
    height: int
    source: str = "camera_info"


# A focal length or principal point beyond this (pixels) is a broken camera_info, not a lens (a 50 Mpx sensor behind
# a 1000 mm lens is about 1e5 px).
MAX_FOCAL_PX = 1e6


def camera_intrinsics(k: Sequence[float], width: int, height: int, source: str = "camera_info") -> CameraIntrinsics:
    """A CameraInfo's ``k`` (9 values, row-major) and size -> CameraIntrinsics, or FrameError naming the field.

    >>> float(camera_intrinsics([100, 0, 79.5, 0, 100, 59.5, 0, 0, 1], 160, 120).K[0, 0])
    100.0
    """
    values = np.asarray(k, np.float64).ravel()
    if values.size != 9:
        raise FrameError("k", f"{values.size} values", "a 3x3 matrix has 9")
    K = values.reshape(3, 3)
    if not np.isfinite(K).all():
        raise FrameError("k", "non-finite values", "every entry must be finite")
    for name, v in (("k[0] (fx)", K[0, 0]), ("k[4] (fy)", K[1, 1])):
        if not 0 < v <= MAX_FOCAL_PX:
            raise FrameError(name, float(v), f"focal length must be > 0 and at most {MAX_FOCAL_PX:g} pixels")
    for name, v in (("k[2] (cx)", K[0, 2]), ("k[5] (cy)", K[1, 2])):
        if abs(v) > MAX_FOCAL_PX:
            raise FrameError(name, float(v), f"principal point must be within {MAX_FOCAL_PX:g} pixels")
    if K[1, 0] != 0 or K[2, 0] != 0 or K[2, 1] != 0 or K[2, 2] != 1:
        raise FrameError("k", [float(v) for v in values], "not a pinhole matrix: k[3], k[6], k[7] must be 0 and k[8] 1")
    return CameraIntrinsics(K, int(width), int(height), source)


KNOWN_DISTORTION_MODELS = ("plumb_bob", "rational_polynomial", "equidistant", "fisheye")


def distortion_problem(model: str, d: Sequence[float]) -> str:
    """Why a camera_info's distortion says the image is not rectified ('' when it is: D empty or all zero with a
    model the node knows). The node deprojects with K alone, as image_proc's rectified images need.

    >>> distortion_problem("plumb_bob", [0.0] * 5)
    ''
    >>> distortion_problem("equidistant", [0.1, -0.02, 0.0, 0.0])
    "distortion_model 'equidistant' with D = [0.1, -0.02, 0, 0]: the image is not rectified"
    """
    values = [float(v) for v in d]
    shown = "[" + ", ".join(f"{v:.4g}" for v in values) + "]"
    if model and model not in KNOWN_DISTORTION_MODELS:
        return f"distortion_model {model!r} (unknown to this node) with D = {shown}: the image may not be rectified"
    if any(not math.isfinite(v) for v in values):
        return f"distortion_model {model!r} with D = {shown}: non-finite coefficients"
    if any(v != 0.0 for v in values):
        return f"distortion_model {model!r} with D = {shown}: the image is not rectified"
    return ""


@dataclass
class Frame:
    """One decoded camera frame as the pipeline processes it.

    ``image`` (H, W, 3) uint8 in the backend's channel order; ``net_input`` the region the network sees (the model
    contract's crop) resized to the backend's input size; ``K`` at the image's size, ``K_net`` at the network
    input's; ``plan`` the crop and resize between them; ``stamp`` seconds; ``admitted`` what the stamp gate decided
    (whether the odometry chain restarts here).
    """

    image: np.ndarray
    net_input: np.ndarray
    K: np.ndarray
    stamp: float
    admitted: StampDecision = field(default_factory=lambda: StampDecision(True))
    plan: Optional[CropResize] = None
    K_net: Optional[np.ndarray] = None

    @property
    def size(self) -> Tuple[int, int]:
        return int(self.image.shape[0]), int(self.image.shape[1])


@dataclass
class DepthResult:
    """Metric depth of a frame at output resolution (NaN where invalid), its intrinsics and the scale applied.
    ``roi`` (y0, x0, h, w) is the region of the depth image the network saw when the depth is at camera resolution
    and the network saw only part of the camera image (NaN outside it); None otherwise.

    ``points`` and ``colorized`` are computed on demand (a caller builds them only while someone wants them).
    """

    depth: np.ndarray
    K: np.ndarray
    scale: float
    scale_mode: str
    frame: Frame
    _rays: RayGrid
    _bgr: bool
    roi: Optional[Tuple[int, int, int, int]] = None

    @property
    def size(self) -> Tuple[int, int]:
        return int(self.depth.shape[0]), int(self.depth.shape[1])

    def colorized(self) -> np.ndarray:
        """(h, w, 3) uint8 BGR false colour, near = bright (``core.colorize``)."""
        return colorize_depth(self.depth)

    def colour(self) -> np.ndarray:
        """The camera frame at the depth's size, pixel for pixel (RGB uint8 (h, w, 3)): the frame itself, the resized
        frame the network saw, or the frame area-resized."""
        out_h, out_w = self.size
        frame = self.frame
        if frame.size == (out_h, out_w):
            colour = frame.image
        elif frame.net_input.shape[:2] == (out_h, out_w):   # the resized frame the network saw: no second resize
            colour = frame.net_input
        else:
            colour = cv2.resize(frame.image, (out_w, out_h), interpolation=cv2.INTER_AREA)
        return colour[..., ::-1] if self._bgr else colour

    def points(self, stride: int, with_rgb: bool) -> Tuple[np.ndarray, Optional[np.ndarray]]:
        """Every ``stride``-th pixel as a point in the optical frame: ((ceil(h/s), ceil(w/s), 3) float32 with NaN
        for invalid depth, packed rgb float32 (PCL layout) or None)."""
        xyz = self._rays.points(self.depth, self.K, stride)
        if not with_rgb:
            return xyz, None
        return xyz, pack_rgb_float(self.colour()[::stride, ::stride])


@dataclass
class OdometryResult:
    """The odometry after a frame: the chain's step, and why the chain restarted ('' when it did not; 'first frame'
    at the start)."""

    step: OdometryStep
    restarted: str = ""
    warnings: List[str] = field(default_factory=list)


class FramePipeline:
    """The per-frame work on one backend. Thread use: ``prepare``, ``depth`` and ``odometry`` on one thread (the
    backend's); ``DepthResult.points`` / ``colorized`` may run on another while ``odometry`` runs."""

    def __init__(self, backend: InferenceBackend, cfg: PipelineConfig, checkpoint_meta: Optional[CheckpointMetadata] = None):
        self.backend = backend
        self.cfg = cfg
        self.settings_sources: Dict[str, str] = {}
        self.checkpoint_meta: Optional[CheckpointMetadata] = checkpoint_meta
        # the model contract the frames are prepared by: the checkpoint's (crop, resize filter), untrained networks
        # get training's defaults
        contract = checkpoint_meta if checkpoint_meta is not None else CheckpointMetadata()
        self.crop_policy, self.resize_filter = contract.crop, contract.resize_filter
        self._plans: Dict[Tuple[int, int], CropResize] = {}
        self.timer = StageTimer()
        self._lock = threading.Lock()
        self._rays_out = RayGrid()
        self._rays_scale = RayGrid()
        self._prev_input: Optional[np.ndarray] = None
        self._prev_size: Tuple[int, int] = (0, 0)
        self._prev_stamp = 0.0
        self.camera_mount = cfg.camera_mount()      # T_base_cam: the parameters', or what /tf_static says
        self.camera_mount_source = "camera_mount.* parameters"
        self.odometry_chain = OdometryIntegrator(self.camera_mount, cfg.max_frame_gap)
        self.stamps = StampGate(cfg.time_jump_threshold, cfg.time_jump_confirm_frames, cfg.max_stamp_lead)
        self.scale = self._make_scale(cfg)

    @classmethod
    def create(cls, cfg: PipelineConfig) -> Tuple["FramePipeline", str]:
        """The pipeline on the backend ``cfg`` asks for (``core.artifacts.create_backend``), with the network size and
        depth range the checkpoint was trained at unless ``cfg`` sets them (``settings_sources`` says which); returns
        it and why that backend was chosen."""
        from .artifacts import create_backend
        from .checkpoint import verify_checkpoint

        # the metadata checked against itself and the weights before any backend is built
        meta = verify_checkpoint(cfg.checkpoint_dir, with_pose=cfg.publish_odometry) if cfg.checkpoint_dir else None
        settled, sources = cfg.with_checkpoint_settings(meta)
        backend, why = create_backend(settled.backend, settled.model_spec())
        pipeline = cls(backend, settled, meta)
        pipeline.settings_sources = sources
        return pipeline, why

    # ---------------------------------------------------------------------------------------------- settings
    def scale_choice(self, cfg: PipelineConfig) -> ScaleChoice:
        """What ``scale_mode`` resolves to with this checkpoint, odometry input and camera mount."""
        meta = self.checkpoint_meta
        mount = getattr(self, "camera_mount", None)
        mount = cfg.camera_mount() if mount is None else mount
        height_from = ""
        if cfg.camera_height > 0:
            height_from = "the camera_height parameter"
        elif getattr(self, "camera_mount_source", "").startswith("/tf") and float(mount[2, 3]) > 0.05:
            height_from = f"the robot's TF tree ({float(mount[2, 3]):.2f} m)"
        return choose_scale_mode(cfg.scale_mode, bool(meta and meta.metric), meta.scale_source if meta else "",
                                 bool(meta and meta.use_stereo), cfg.odometry_topic, height_from)

    def _make_scale(self, cfg: PipelineConfig) -> ScaleEstimator:
        mount = getattr(self, "camera_mount", None)
        mount = cfg.camera_mount() if mount is None else mount
        up_in_cam = mount[:3, :3].T @ np.array([0.0, 0.0, 1.0])
        height = cfg.camera_height or float(mount[2, 3])
        choice = self.scale_choice(cfg)
        motion = None
        if choice.mode == "odometry":
            # the odometry and pairs seen so far are kept when parameters change; window and threshold follow them
            old = getattr(self, "scale", None)
            motion = old.motion if old is not None and old.motion is not None else MotionScale(mount)
            motion.configure(cfg.scale_window, cfg.scale_min_motion)
        stereo_scale = cfg.stereo_scale
        meta = self.checkpoint_meta
        if choice.mode == "stereo" and meta is not None and meta.use_stereo:
            stereo_scale = float(meta.stereo_scale)   # the checkpoint knows its baseline factor
        return ScaleEstimator(choice.mode, cfg.scale_factor, stereo_scale, height,
                              (float(up_in_cam[0]), float(up_in_cam[1]), float(up_in_cam[2])),
                              cfg.scale_smoothing, cfg.ground_region, motion=motion, reason=choice.reason)

    @property
    def camera_height_usable(self) -> bool:
        """False when ``scale_mode`` is camera_height but no height is known (camera_height and mount z both 0)."""
        return (self.cfg.camera_height or float(self.camera_mount[2, 3])) > 0

    def use_camera_mount(self, T_base_cam: np.ndarray, source: str) -> None:
        """Take the camera's pose on the robot from elsewhere (the robot's TF tree) instead of the camera_mount.*
        parameters: odometry is expressed through it, and the camera_height scale takes its 'up' and height."""
        with self._lock:
            self.camera_mount = np.asarray(T_base_cam, np.float64)
            self.camera_mount_source = source
            self.odometry_chain.set_mount(self.camera_mount)
            if self.scale.motion is not None:
                self.scale.motion.set_mount(self.camera_mount)
            self.scale = self._make_scale(self.cfg)

    def reconfigure(self, cfg: PipelineConfig) -> None:
        """Apply changed settings (parameters set at run time) between frames."""
        with self._lock:
            old, self.cfg = self.cfg, cfg
            scale_fields = ("scale_mode", "scale_factor", "stereo_scale", "camera_height", "scale_smoothing",
                            "ground_region", "odometry_topic", "scale_window", "scale_min_motion",
                            "camera_mount_rpy", "camera_mount_xyz")
            if any(getattr(old, f) != getattr(cfg, f) for f in scale_fields[-2:]) and \
                    self.camera_mount_source == "camera_mount.* parameters":
                self.camera_mount = cfg.camera_mount()
                self.odometry_chain.set_mount(self.camera_mount)
            if any(getattr(old, f) != getattr(cfg, f) for f in scale_fields):
                self.scale = self._make_scale(cfg)
            self.odometry_chain.max_gap_s = cfg.max_frame_gap
            self.stamps.jump_threshold = cfg.time_jump_threshold
            self.stamps.confirm_frames = max(1, cfg.time_jump_confirm_frames)
            self.stamps.max_lead = cfg.max_stamp_lead

    @property
    def depth_is_metric(self) -> bool:
        """Whether the published depth is in metres: a scale that makes it so is set or has been found (relative
        depth, and camera_height before the first ground fit, are not)."""
        return self.scale.metric

    @property
    def channel_order(self) -> str:
        return self.backend.channel_order

    @property
    def has_pose(self) -> bool:
        return self.backend.has_pose

    # ---------------------------------------------------------------------------------------------- stages
    def intrinsics(self, camera_info: Optional[CameraIntrinsics], width: int, height: int) -> CameraIntrinsics:
        """The intrinsics to process a ``width`` x ``height`` frame with: the camera_info's, else the fallback
        parameters; FrameError when neither fits."""
        if camera_info is not None:
            if (camera_info.width, camera_info.height) != (0, 0) and (camera_info.width, camera_info.height) != (width, height):
                raise FrameError("width/height", f"{camera_info.width}x{camera_info.height}",
                                 f"camera_info size differs from the image's {width}x{height}")
            return camera_info
        cfg = self.cfg
        if cfg.intrinsics_fx <= 0:
            raise FrameError("k", "none received", "no camera_info yet and parameter intrinsics.fx is 0")
        fx = cfg.intrinsics_fx
        fy = cfg.intrinsics_fy or fx
        cx = cfg.intrinsics_cx if cfg.intrinsics_cx >= 0 else (width - 1) / 2.0
        cy = cfg.intrinsics_cy if cfg.intrinsics_cy >= 0 else (height - 1) / 2.0
        return CameraIntrinsics(np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1.0]]), width, height, "parameters")

    def admit(self, stamp: float, clock_now: Optional[float] = None) -> StampDecision:
        """Whether a frame stamped ``stamp`` is processed (``core.odometry.StampGate``): the decision, or FrameError
        ('header.stamp') when it is dropped. Ask before decoding: a dropped frame costs nothing more."""
        decision = self.stamps.check(stamp, clock_now)
        if not decision.accept:
            raise FrameError("header.stamp", round(stamp, 9), decision.reason, kind=f"stamp {decision.kind}")
        return decision

    def check_size(self, width: int, height: int) -> None:
        """FrameError when a ``width`` x ``height`` image is larger than ``max_image_pixels`` (asked before decoding,
        from the message's fields or the compressed image's header)."""
        if width * height > self.cfg.max_image_pixels:
            raise FrameError("width/height", f"{width}x{height}", f"{width * height} pixels exceeds max_image_pixels "
                             f"{self.cfg.max_image_pixels}", kind="image too large")

    def prepare(self, image: np.ndarray, camera_info: Optional[CameraIntrinsics], stamp: float,
                admitted: Optional[StampDecision] = None, clock_now: Optional[float] = None) -> Frame:
        """A decoded (H, W, 3) uint8 image in ``channel_order`` -> Frame (stamp admitted unless ``admitted`` says it
        was, intrinsics resolved, resized for the backend). Raises FrameError when the frame cannot be processed."""
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise FrameError("data", f"{image.dtype} {image.shape}", "expected a uint8 (H, W, 3) image")
        height, width = image.shape[:2]
        self.check_size(width, height)
        intr = self.intrinsics(camera_info, width, height)
        if admitted is None:
            admitted = self.admit(stamp, clock_now)
        with self.timer.stage("preprocess"):
            plan = self.input_plan((height, width))
            net_in = plan.apply(image)
        return Frame(image, net_in, intr.K, stamp, admitted, plan, plan.intrinsics(intr.K))

    def input_plan(self, camera_size: Tuple[int, int]) -> CropResize:
        """How a ``camera_size`` (H, W) frame becomes the network's input: the model contract's crop to the
        network's aspect, then its resize filter to the size the backend takes (kept per camera size)."""
        plan = self._plans.get(camera_size)
        if plan is None:
            need = self.backend.input_size or self.backend.spec.network_size
            plan = CropResize.make(camera_size, need, self.crop_policy, self.resize_filter)
            if len(self._plans) > 8:     # a camera whose size keeps changing: keep the cache bounded
                self._plans.clear()
            self._plans[camera_size] = plan
        return plan

    def depth(self, frame: Frame) -> DepthResult:
        """Depth network, metric scale, depth at output resolution with its K."""
        cfg = self.cfg
        with self.timer.stage("depth_net"):
            depth_net = self.backend.depth(frame.net_input)
        net_h, net_w = depth_net.shape
        plan = frame.plan or CropResize.make(frame.size, (net_h, net_w), "none")
        K_net = frame.K_net if frame.K_net is not None else plan.intrinsics(frame.K)
        if (net_h, net_w) != plan.out_size:    # a backend that gives depth at another size than it takes
            K_net = scale_intrinsics(K_net, net_w / plan.out_size[1], net_h / plan.out_size[0])
            plan = CropResize(plan.src_size, plan.crop, (net_h, net_w), plan.interpolation)
        if self.scale.mode == "camera_height":
            # the ground is fitted in camera-frame points at network resolution
            self.scale.update(self._rays_scale.points(depth_net, K_net, 4))
        scale = self.scale.scale
        roi = None
        with self.timer.stage("postprocess"):
            if cfg.depth_resolution == "camera":
                # back onto the camera's pixels: the region the network saw, NaN outside it
                depth, K_out = plan.to_camera(depth_net), frame.K
                roi = None if plan.is_identity_crop else plan.crop
            else:
                depth, K_out = depth_net, K_net
            depth = depth * np.float32(scale)
            depth[~(np.isfinite(depth) & (depth > 0))] = np.nan
        return DepthResult(depth, K_out, scale, self.scale.mode, frame, self._rays_out, self.channel_order == "bgr", roi)

    def odometry(self, frame: Frame, scale: Optional[float] = None) -> Optional[OdometryResult]:
        """Chain the camera motion since the previous frame (None when odometry is off or there is no pose
        network). ``scale`` is the frame's metric scale (the current one when None)."""
        if not (self.cfg.publish_odometry and self.backend.has_pose):
            return None
        scale = self.scale.scale if scale is None else scale
        chain = self.odometry_chain
        admitted = frame.admitted
        reason = admitted.restart or chain.gap(frame.stamp)
        result_warnings: List[str] = []
        prev = self._prev_input
        if reason or prev is None or prev.shape != frame.net_input.shape or self._prev_size != frame.size:
            if reason and reason != "first frame":
                where = "at the origin" if admitted.reset else "from the current pose"
                result_warnings.append(f"header.stamp: {reason}; odometry chain restarted {where}")
            restarted = reason or "size change"
            step = chain.start(frame.stamp, restarted, reset=admitted.reset)
        else:
            with self.timer.stage("pose_net"):
                T = self.backend.relative_pose(prev, frame.net_input)
            if self.scale.motion is not None:
                # the robot's motion over this pair against the network's: the scale of the frames to come
                self.scale.motion.add_prediction(self._prev_stamp, frame.stamp, float(np.linalg.norm(T[:3, 3])))
            step = chain.update(frame.stamp, T, scale)
            restarted = ""
        self._prev_input = frame.net_input
        self._prev_size = frame.size      # another camera size is another crop: the pair would mean nothing
        self._prev_stamp = frame.stamp
        return OdometryResult(step, restarted, result_warnings)

    def process(self, frame: Frame) -> Tuple[DepthResult, Optional[OdometryResult]]:
        """Both stages, one after the other."""
        depth = self.depth(frame)
        return depth, self.odometry(frame, depth.scale)

    def warm_up(self, image_size: Tuple[int, int]) -> None:
        """Run the backend once on a blank frame of ``image_size`` (H, W) so that tracing, allocation and kernel
        selection are paid before the first real frame."""
        self.backend.warmup(image_size, runs=1)

    def close(self) -> None:
        self.backend.close()

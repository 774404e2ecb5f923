"""The node's parameters: one table with type, default, description, range or choices, and whether it can
change at run time; and ``NodeConfig``, the typed configuration built from it.

Declared with descriptors (so ``ros2 param describe`` shows them) and validated when set, with the reason
given back to the caller. A parameter named ``a.b`` is the field ``a_b``: of ``PipelineConfig`` (the per-frame
work, ``core.pipeline``, whose defaults the table takes) or of ``NodeConfig`` (the ROS side).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType, SetParametersResult

from ..core.model_contract import parse_size, size_problem
from ..core.pipeline import PipelineConfig
from ..core.scale import SCALE_MODES

Checker = Callable[[Any], Optional[str]]


@dataclass
class NodeConfig:
    """Everything the node is configured with: ``pipeline`` for the per-frame work, the rest for ROS wiring."""

    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    image_transport: str = "raw"
    input_qos: str = "sensor_data"
    output_queue_size: int = 5
    publish_colorized: bool = True
    publish_points: bool = True
    publish_tf: bool = True
    publish_camera_mount: str = "auto"
    camera_mount_wait: float = 2.0
    odom_frame: str = "odom"
    base_frame: str = "base_link"
    camera_frame: str = ""
    assume_rectified: bool = False
    pose_covariance_diagonal: Tuple[float, ...] = (0.01,) * 6
    twist_covariance_diagonal: Tuple[float, ...] = (0.05,) * 6
    diagnostics_period: float = 1.0
    warn_throttle: float = 5.0
    input_timeout: float = 5.0
    expected_rate_min: float = 1.0
    expected_rate_max: float = 0.0


@dataclass
class ParamSpec:
    name: str
    default: Any
    description: str
    choices: Sequence[str] = ()
    low: Optional[float] = None
    high: Optional[float] = None
    step: Optional[float] = None
    dynamic: bool = False
    check: Optional[Checker] = None
    # a value of another type is accepted and turned into the declared one (older parameter files)
    convert: Optional[Callable[[Any], Any]] = None
    # the configuration field's value from the (checked) parameter's, where the two differ in type
    to_field: Optional[Callable[[Any], Any]] = None

    @property
    def field_name(self) -> str:
        return self.name.replace(".", "_")


def _network_size_problem(v: Any) -> Optional[str]:
    if v == "":
        return None   # the checkpoint's own
    try:
        size = parse_size(v)
    except ValueError as exc:
        return str(exc)
    if min(size) < 64:
        return f"'{v}': each side must be at least 64"
    return None if not size_problem(size) else f"'{v}': {size_problem(size)}"


def _network_size_field(v: str) -> Tuple[int, int]:
    return (0, 0) if v == "" else parse_size(v)


def _length(n: int) -> Checker:
    def check(v: Any) -> Optional[str]:
        if len(v) != n:
            return f"needs {n} values, got {len(v)}"
        if not all(math.isfinite(x) for x in v):
            return "values must be finite"
        return None
    return check


def _non_negative_list(v: Any) -> Optional[str]:
    if len(v) != 6:
        return f"needs 6 values (x, y, z, roll, pitch, yaw), got {len(v)}"
    if any((not math.isfinite(x)) or x < 0 for x in v):
        return "variances must be finite and >= 0"
    return None


_N = NodeConfig()
_P = _N.pipeline

PARAMS: List[ParamSpec] = [
    # input
    ParamSpec("image_transport", _N.image_transport, "Input transport: 'raw' subscribes to image (sensor_msgs/Image), "
              "'compressed' to image/compressed (sensor_msgs/CompressedImage, jpeg/png).", choices=("raw", "compressed")),
    ParamSpec("input_qos", _N.input_qos, "QoS of the image and camera_info subscriptions: 'sensor_data' "
              "(best effort, depth 5) matches camera drivers; 'reliable' for bag playback that must not drop.",
              choices=("sensor_data", "reliable")),
    ParamSpec("output_queue_size", _N.output_queue_size, "History depth of the output publishers (reliable).",
              low=1, high=100, step=1),
    ParamSpec("intrinsics.fx", _P.intrinsics_fx, "Fallback focal length fx in pixels, used only while no camera_info "
              "arrives (0 = wait for camera_info).", low=0.0, high=1e6),
    ParamSpec("intrinsics.fy", _P.intrinsics_fy, "Fallback focal length fy in pixels (0 = use fx).", low=0.0, high=1e6),
    ParamSpec("intrinsics.cx", _P.intrinsics_cx, "Fallback principal point cx in pixels (-1 = image centre).",
              low=-1.0, high=1e6),
    ParamSpec("intrinsics.cy", _P.intrinsics_cy, "Fallback principal point cy in pixels (-1 = image centre).",
              low=-1.0, high=1e6),
    # model
    ParamSpec("checkpoint_dir", _P.checkpoint_dir, "Folder with encoder.pth, depth.pth, pose_encoder.pth, pose.pth "
              "(Monodepth2 layout) or exported ONNX/engines. Empty: untrained weights (for trying the plumbing only)."),
    ParamSpec("backend", _P.backend, "Inference backend. 'auto' picks the fastest available (TensorRT, then ONNX "
              "Runtime, then PyTorch) and logs why.", choices=("auto", "tensorrt", "onnxruntime", "torch")),
    ParamSpec("device", _P.device, "'auto' (CUDA when available), 'cpu' or 'cuda'.", choices=("auto", "cpu", "cuda")),
    ParamSpec("precision", _P.precision, "'auto' (fp16 on CUDA; on the CPU int8 when the checkpoint has calibrated "
              "int8 graphs from ros2-monodepth-export --int8, else bf16 on CPUs with AMX/AVX512-BF16, else fp32), "
              "'fp32', 'bf16', 'fp16' or 'int8' (onnxruntime on the CPU, TensorRT on CUDA).",
              choices=("auto", "fp32", "bf16", "fp16", "int8")),
    ParamSpec("encoder_layers", _P.encoder_layers, "ResNet depth of untrained networks (a checkpoint's own depth wins).",
              low=18, high=50, check=lambda v: None if v in (18, 34, 50) else "must be 18, 34 or 50"),
    ParamSpec("network_size", "", "Network input size 'WIDTHxHEIGHT' in pixels, multiples of 32 (e.g. '320x96'); "
              "'' = the checkpoint's (its metadata), 640x192 for untrained networks.", check=_network_size_problem,
              to_field=_network_size_field),
    ParamSpec("min_depth", _P.min_depth, "Depth the disparity 1.0 maps to, in network units; 0 = the checkpoint's "
              "(Monodepth2: 0.1).", low=0.0, high=1e3),
    ParamSpec("max_depth", _P.max_depth, "Depth the disparity 0.0 maps to, in network units; 0 = the checkpoint's "
              "(Monodepth2: 100).", low=0.0, high=1e5),
    # outputs
    ParamSpec("depth_resolution", _P.depth_resolution, "Resolution of the published depth and points: 'network' (the "
              "region the network saw: the checkpoint's crop of the camera image, resized) or 'camera' (the camera's "
              "pixels, NaN outside that region; depth/camera_info's roi names it).", choices=("network", "camera")),
    ParamSpec("depth_output_scale", _P.depth_output_scale, "Disparity head the depth network ends at: 0 the "
              "full-resolution one (Monodepth2's); 1 the half-resolution one, upsampled bilinearly to the same output "
              "size, which skips the decoder's last stage (int8, 640x192, 2-core CPU: depth + pose 14 % faster; abs_rel "
              "from -2 % to +4 % on the project's synthetic benchmarks: docs/performance.md).", low=0, high=1, step=1),
    ParamSpec("publish_colorized", _N.publish_colorized, "Publish depth/colorized (bgr8 false colour) for RViz.",
              dynamic=True),
    ParamSpec("publish_points", _N.publish_points, "Publish the point cloud on points; built only while someone "
              "subscribes.", dynamic=True),
    ParamSpec("points_stride", _P.points_stride, "Keep every n-th pixel in both directions for the point cloud "
              "(organised, ceil(H/n) x ceil(W/n)).", low=1, high=64, step=1, dynamic=True),
    ParamSpec("points_rgb", _P.points_rgb, "Add packed rgb colour to the point cloud.", dynamic=True),
    ParamSpec("publish_odometry", _P.publish_odometry, "Run the pose network and publish odom (needs pose weights).",
              dynamic=True),
    ParamSpec("publish_tf", _N.publish_tf, "Broadcast odom_frame -> base_frame on /tf.", dynamic=True),
    ParamSpec("publish_camera_mount", _N.publish_camera_mount, "Broadcast base_frame -> camera frame (camera_mount.*) on "
              "/tf_static: 'auto' only when nothing else gives the camera frame a parent within camera_mount_wait "
              "seconds (robot_state_publisher with the URDF, or the camera driver) and then the node takes the camera's "
              "pose from /tf_static instead; 'always'; 'never' (true / false of older files mean always / never).",
              choices=("auto", "always", "never"), convert=lambda v: {True: "always", False: "never"}.get(v, v)),
    ParamSpec("camera_mount_wait", _N.camera_mount_wait, "Seconds the node listens on /tf_static for another publisher of "
              "the camera frame's parent before publishing camera_mount.* itself (publish_camera_mount: auto).",
              low=0.0, high=600.0),
    ParamSpec("odom_frame", _N.odom_frame, "Odometry frame (REP 105)."),
    ParamSpec("base_frame", _N.base_frame, "Robot base frame (REP 105), child of odom."),
    ParamSpec("camera_frame", _N.camera_frame, "Optical frame of the camera (z forward, x right, y down). Empty: the "
              "image's header.frame_id, or 'camera_optical_frame' when that is empty too."),
    ParamSpec("assume_rectified", _N.assume_rectified, "Treat the images as rectified whatever camera_info's "
              "distortion_model and D say (no warning). False: a camera_info with non-zero D of any model, or a model "
              "the node does not know, is warned about once per camera and shown in /diagnostics (run image_proc's "
              "rectify first: the node deprojects with K only).", dynamic=True),
    ParamSpec("camera_mount.xyz", list(_P.camera_mount_xyz), "Position of the camera optical frame in base_frame, "
              "metres.", check=_length(3)),
    ParamSpec("camera_mount.rpy", list(_P.camera_mount_rpy), "Orientation (roll, pitch, yaw, rad) of the optical frame "
              "in base_frame. The default is a camera looking along base x.", check=_length(3)),
    ParamSpec("max_frame_gap", _P.max_frame_gap, "A gap between processed frames longer than this (s) restarts the "
              "odometry chain where the robot is (no motion is integrated over the gap).", low=0.01, high=3600.0, dynamic=True),
    ParamSpec("time_jump_threshold", _P.time_jump_threshold, "A stamp this many seconds or more before the last one (a "
              "replayed bag, a simulator reset), or after it, is a jump in time, believed only once "
              "time_jump_confirm_frames frames in a row confirm it (then a jump back restarts odometry at the origin). "
              "Smaller steps back (duplicated or out-of-order stamps) are dropped and the pose kept.",
              low=0.01, high=1e6, dynamic=True),
    ParamSpec("time_jump_confirm_frames", _P.time_jump_confirm_frames, "Consecutive frames that must agree with a new "
              "time line before a jump in time is believed (see time_jump_threshold).", low=1, high=100, step=1,
              dynamic=True),
    ParamSpec("max_stamp_lead", _P.max_stamp_lead, "Frames stamped more than this many seconds ahead of the node's "
              "clock (ROS time, /clock under use_sim_time) are dropped (0 = not checked, e.g. for a camera whose clock is "
              "not synchronised with this computer's).", low=0.0, high=1e9, dynamic=True),
    ParamSpec("max_image_pixels", _P.max_image_pixels, "Largest camera image processed, in pixels (width x height), "
              "checked before decoding: a larger frame is dropped with a warning instead of exhausting memory.",
              low=1, high=1 << 30, step=1),
    ParamSpec("pose_covariance_diagonal", list(_N.pose_covariance_diagonal), "Odometry pose variances "
              "(x, y, z, roll, pitch, yaw).", check=_non_negative_list, dynamic=True),
    ParamSpec("twist_covariance_diagonal", list(_N.twist_covariance_diagonal), "Odometry twist variances "
              "(vx, vy, vz, wx, wy, wz).", check=_non_negative_list, dynamic=True),
    # scale
    ParamSpec("scale_mode", _P.scale_mode, "Metric scale of depth, points and odometry. 'auto': a metric checkpoint "
              "as it is, else stereo-trained weights by their baseline, else 'odometry' when odometry_topic is set, else "
              "'camera_height' when camera_height is set or the robot's TF gives the camera's height, else 'relative'. "
              "'checkpoint' (the networks give metres), 'relative' (as the network gives, arbitrary units), 'fixed' "
              "(scale_factor), 'stereo' (stereo_scale * scale_factor), 'camera_height' (ground plane + camera height), "
              "'odometry' (the robot's measured motion on odometry_topic against the pose network's). /diagnostics "
              "says which runs and whether depth is metric.", choices=SCALE_MODES, dynamic=True),
    ParamSpec("odometry_topic", _P.odometry_topic, "The robot's own odometry (nav_msgs/Odometry of base_frame, e.g. "
              "wheel odometry or VIO; not this node's output) for scale_mode 'odometry' (and 'auto'). Empty: none."),
    ParamSpec("scale_window", _P.scale_window, "Frame pairs over which the odometry scale is estimated (sliding window; "
              "ratios far from the median are rejected).", low=3, high=1000, step=1, dynamic=True),
    ParamSpec("scale_min_motion", _P.scale_min_motion, "Metres the camera must move between two processed frames for "
              "the pair to count in the odometry scale (standing still carries no scale).", low=0.0, high=100.0,
              dynamic=True),
    ParamSpec("scale_factor", _P.scale_factor, "Multiplier for 'fixed' and 'stereo' scale modes.", low=1e-6, high=1e6,
              dynamic=True),
    ParamSpec("stereo_scale", _P.stereo_scale, "Baseline factor of stereo-trained weights (5.4 for KITTI Monodepth2 "
              "stereo models); a checkpoint's metadata overrides it.", low=1e-6, high=1e6, dynamic=True),
    ParamSpec("camera_height", _P.camera_height, "Camera height above the ground in metres for 'camera_height' mode "
              "(0 = camera_mount.xyz z).", low=0.0, high=100.0, dynamic=True),
    ParamSpec("scale_smoothing", _P.scale_smoothing, "Exponential smoothing of the camera_height scale (0 = none, "
              "0.99 = slow).", low=0.0, high=0.999, dynamic=True),
    ParamSpec("ground_region", _P.ground_region, "Lower fraction of the image searched for the ground plane.",
              low=0.05, high=1.0, dynamic=True),
    # housekeeping
    ParamSpec("diagnostics_period", _N.diagnostics_period, "Seconds between /diagnostics messages (0 = off).",
              low=0.0, high=60.0),
    ParamSpec("warn_throttle", _N.warn_throttle, "Seconds between repeated warnings about the same bad input field.",
              low=0.0, high=3600.0, dynamic=True),
    ParamSpec("input_timeout", _N.input_timeout, "Seconds without a frame (input) or without output before /diagnostics "
              "reports ERROR.", low=0.1, high=3600.0, dynamic=True),
    ParamSpec("expected_rate_min", _N.expected_rate_min, "Lowest expected camera and output rate in Hz: below it "
              "/diagnostics reports WARN (0 = not checked).", low=0.0, high=1000.0, dynamic=True),
    ParamSpec("expected_rate_max", _N.expected_rate_max, "Highest expected camera rate in Hz: above it /diagnostics "
              "reports WARN (0 = not checked).", low=0.0, high=1000.0, dynamic=True),
]
SPECS: Dict[str, ParamSpec] = {p.name: p for p in PARAMS}
# Names of earlier versions (CHANGELOG.md): still honoured at start, with a warning naming the new one.
RENAMED: Dict[str, str] = {"network_width": "network_size", "network_height": "network_size"}


def renamed_values(overrides: Dict[str, Any]) -> Tuple[Dict[str, Any], List[str]]:
    """Values for today's parameters from the names of earlier versions given at start, and one warning per old
    name (what to write instead, and whether the value was used).

    >>> renamed_values({"network_width": 320, "network_height": 96})[0]
    {'network_size': '320x96'}
    """
    # rclpy's overrides are Parameter objects; plain values are accepted too
    given = {name: getattr(overrides[name], "value", overrides[name]) for name in RENAMED if name in overrides}
    if not given:
        return {}, []
    w, h = (given.get(k, 0) for k in ("network_width", "network_height"))
    # network_size '' (config/monodepth.yaml's) is no choice: the old names then say what the user wants
    size_given = bool(getattr(overrides.get("network_size"), "value", overrides.get("network_size")))
    usable = not size_given and all(isinstance(v, int) and v > 0 for v in (w, h))
    values = {"network_size": f"{w}x{h}"} if usable else {}
    used = f"used as network_size: '{w}x{h}'" if usable else (
        "ignored: network_size is given" if size_given else
        "ignored: the checkpoint's size is used" if not (w or h) else
        "ignored: give network_size: 'WIDTHxHEIGHT'")
    return values, [f"parameter '{name}' was renamed to network_size ('WIDTHxHEIGHT', e.g. '320x96'); {used}"
                    for name in given]
PIPELINE_FIELDS = frozenset(f.name for f in fields(PipelineConfig))


def parameter_reference() -> str:
    """docs/parameters.md: every parameter with its default, constraints, description and whether it can change at
    run time, generated from this table (``python -m ros2_monodepth.ros.params > docs/parameters.md``; a test keeps
    the file in step)."""
    lines = ["# monodepth_node parameters", "",
             "Generated from `ros2_monodepth/ros/params.py` by `python -m ros2_monodepth.ros.params > docs/parameters.md`;",
             "`config/monodepth.yaml` holds every one with its default. *Run time*: can be changed while the node runs",
             "(`ros2 param set`). A bad value is refused with the reason, at start or when set.", "",
             "| parameter | default | constraints | run time | description |", "|---|---|---|---|---|"]
    for spec in PARAMS:
        d = _descriptor(spec)
        default = f"`{spec.default!r}`" if not isinstance(spec.default, str) or spec.default else "`''`"
        text = spec.description.replace("|", "\\|")
        lines.append(f"| `{spec.name}` | {default} | {d.additional_constraints or '-'} | {'yes' if spec.dynamic else 'no'} "
                     f"| {text} |")
    return "\n".join(lines) + "\n"


def _descriptor(spec: ParamSpec) -> ParameterDescriptor:
    d = ParameterDescriptor(description=spec.description, read_only=not spec.dynamic,
                            dynamic_typing=spec.convert is not None)
    constraints = []
    if spec.convert is not None:
        pass   # any type: converted by ``_normalise``
    elif isinstance(spec.default, bool):
        d.type = ParameterType.PARAMETER_BOOL
    elif isinstance(spec.default, int):
        d.type = ParameterType.PARAMETER_INTEGER
        if spec.low is not None and spec.high is not None and spec.check is None:
            d.integer_range = [IntegerRange(from_value=int(spec.low), to_value=int(spec.high), step=int(spec.step or 1))]
    elif isinstance(spec.default, float):
        d.type = ParameterType.PARAMETER_DOUBLE
        if spec.low is not None and spec.high is not None:
            d.floating_point_range = [FloatingPointRange(from_value=float(spec.low), to_value=float(spec.high), step=0.0)]
    elif isinstance(spec.default, str):
        d.type = ParameterType.PARAMETER_STRING
    elif isinstance(spec.default, list):
        d.type = ParameterType.PARAMETER_DOUBLE_ARRAY
    if spec.choices:
        constraints.append("one of: " + ", ".join(spec.choices))
    if spec.low is not None and spec.high is not None:
        constraints.append(f"range [{spec.low:g}, {spec.high:g}]")
    if spec.check is _network_size_problem:
        constraints.append("WIDTHxHEIGHT, multiples of 32")
    d.additional_constraints = "; ".join(constraints)
    return d


def check_value(name: str, value: Any) -> Optional[str]:
    """Why ``value`` is not acceptable for parameter ``name``, or None when it is."""
    spec = SPECS.get(name)
    if spec is None:
        return None  # not ours (e.g. use_sim_time)
    if spec.choices and value not in spec.choices:
        return f"'{value}' is not one of {', '.join(spec.choices)}"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if isinstance(value, float) and not math.isfinite(value):
            return f"{value} is not finite"
        if spec.low is not None and value < spec.low:
            return f"{value} is below {spec.low:g}"
        if spec.high is not None and value > spec.high:
            return f"{value} is above {spec.high:g}"
    if spec.check is not None:
        return spec.check(value)
    return None


def _normalise(spec: ParamSpec, value: Any) -> Any:
    """A declared value in the type of its default (ROS gives 1 for 1.0; arrays as lists of floats)."""
    if spec.convert is not None:
        value = spec.convert(value)
    if isinstance(spec.default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(spec.default, list) and value is not None:
        return [float(x) for x in value]
    return value


def with_values(cfg: NodeConfig, values: Dict[str, Any]) -> NodeConfig:
    """A copy of ``cfg`` with parameters ``{name: value}`` (already validated) applied."""
    node_updates: Dict[str, Any] = {}
    pipeline_updates: Dict[str, Any] = {}
    for name, value in values.items():
        spec = SPECS[name]
        value = tuple(value) if isinstance(spec.default, list) else value
        value = spec.to_field(value) if spec.to_field is not None else value
        (pipeline_updates if spec.field_name in PIPELINE_FIELDS else node_updates)[spec.field_name] = value
    return replace(cfg, pipeline=replace(cfg.pipeline, **pipeline_updates), **node_updates)


def declare_parameters(node: Any) -> NodeConfig:
    """Declare every parameter with its descriptor and return the configuration they give.

    Values from a params file or the command line are validated too; a bad one raises ValueError with
    the parameter's name and the reason (the node then refuses to start, which is clearer than running
    with a value nobody chose).
    """
    values: Dict[str, Any] = {}
    from_old_names, _ = renamed_values(getattr(node, "_parameter_overrides", {}) or {})
    for spec in PARAMS:
        param = node.declare_parameter(spec.name, spec.default, _descriptor(spec))
        value = _normalise(spec, param.value)
        if spec.name in from_old_names and value == spec.default:
            # a default-valued override (config/monodepth.yaml's network_size: '') is no choice: the old names win
            value = from_old_names[spec.name]
        problem = check_value(spec.name, value)
        if problem:
            raise ValueError(f"parameter '{spec.name}': {problem}")
        values[spec.name] = value
    return with_values(NodeConfig(), values)


def on_set_parameters(params: Sequence[Any], apply: Callable[[Dict[str, Any]], None]) -> SetParametersResult:
    """Validate a set request; if all values are good, hand them to ``apply``; otherwise say why not."""
    updates: Dict[str, Any] = {}
    for p in params:
        spec = SPECS.get(p.name)
        if spec is None:
            if p.name == "use_sim_time" or p.name.startswith("qos_overrides."):
                continue   # rclpy's own
            return SetParametersResult(successful=False, reason=f"{p.name}: not a parameter of this node "
                                                                f"(monodepth_node --help lists them)")
        value = _normalise(spec, p.value)
        problem = check_value(p.name, value)
        if problem:
            return SetParametersResult(successful=False, reason=f"{p.name}: {problem}")
        updates[p.name] = value
    if updates:
        apply(updates)
    return SetParametersResult(successful=True)


if __name__ == "__main__":
    print(parameter_reference(), end="")

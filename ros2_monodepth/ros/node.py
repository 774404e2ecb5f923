"""``monodepth_node``: camera image (+ camera_info) in; depth, point cloud, odometry, TF and a colourised
depth image out.

One job per piece: this module wires ROS to the core. The subscriber callbacks only hand the newest
message to a worker thread (latest frame wins); decoding, inference and publishing run there, so the
executor never waits for the network.
"""

from __future__ import annotations

import math
import sys
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

import cv2
import numpy as np
import rclpy
from builtin_interfaces.msg import Time as TimeMsg
from nav_msgs.msg import Odometry
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from std_msgs.msg import Header

from ..core.backends.base import BackendError, ModelSpec
from ..core.backends.factory import create_backend
from ..core.checkpoint import CheckpointError, read_metadata
from ..core.colorize import colorize_depth
from ..core.geometry import rpy_to_matrix, scale_intrinsics
from ..core.odometry import OdometryIntegrator
from ..core.pointcloud import RayGrid, pack_rgb_float
from ..core.scale import ScaleEstimator
from ..core.timing import StageTimer
from .frame_slot import LatestFrameSlot
from .image_conversions import CAMERA_ENCODINGS, ImageFormatError, decode_compressed, fill_image_msg, image_to_numpy, to_rgb8
from .messages import camera_info_msg, diagnostic_status, odometry_msg, transform_msg
from .params import declare_parameters, on_set_parameters
from .pointcloud2 import build_cloud

try:  # tf2_msgs ships with every ROS install; in a wheel venv the set-up script generates it
    from tf2_msgs.msg import TFMessage
except ImportError:  # pragma: no cover - reported at start-up
    TFMessage = None

try:
    from diagnostic_msgs.msg import DiagnosticArray
except ImportError:  # pragma: no cover
    DiagnosticArray = None

DEFAULT_CAMERA_FRAME = "camera_optical_frame"


class InputError(ValueError):
    """A frame that cannot be processed; names the topic, field and value."""

    def __init__(self, topic: str, field: str, value: Any, reason: str):
        super().__init__(f"{topic}: {field}={value!r}: {reason}")
        self.topic, self.field = topic, field


@dataclass
class Intrinsics:
    K: np.ndarray
    width: int
    height: int
    source: str


def stamp_seconds(stamp: TimeMsg) -> float:
    return float(stamp.sec) + 1e-9 * float(stamp.nanosec)


class MonodepthNode(Node):
    def __init__(self, **kwargs: Any):
        super().__init__("monodepth", **kwargs)
        self.cfg: Dict[str, Any] = declare_parameters(self)
        self._cfg_lock = threading.Lock()
        self.add_on_set_parameters_callback(lambda params: on_set_parameters(params, self._apply_updates))
        self._warned: Dict[Tuple[str, str], float] = {}

        self._create_backend()
        self._build_scale()
        mount = np.eye(4)
        mount[:3, :3] = rpy_to_matrix(*self.cfg["camera_mount.rpy"])
        mount[:3, 3] = self.cfg["camera_mount.xyz"]
        self.T_base_cam = mount
        self.odometry = OdometryIntegrator(mount, self.cfg["max_frame_gap"])
        self._prev_frame: Optional[np.ndarray] = None
        self._rays_out = RayGrid()
        self._rays_scale = RayGrid()
        self._camera_info: Optional[Intrinsics] = None
        self._camera_info_lock = threading.Lock()
        self._static_sent_for: Optional[str] = None
        self.timer_stats = StageTimer()
        self.processed = 0
        self._latency_sum = 0.0
        self._first_processed: Optional[float] = None

        # --- interfaces ---
        in_qos = qos_profile_sensor_data if self.cfg["input_qos"] == "sensor_data" else QoSProfile(
            depth=5, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)
        out_qos = QoSProfile(depth=self.cfg["output_queue_size"], reliability=ReliabilityPolicy.RELIABLE)
        self.compressed = self.cfg["image_transport"] == "compressed"
        image_type = CompressedImage if self.compressed else Image
        self.image_topic = self.resolve_topic_name("image/compressed" if self.compressed else "image")
        self.info_topic = self.resolve_topic_name("camera_info")
        self._slot = LatestFrameSlot()
        self.create_subscription(image_type, "image/compressed" if self.compressed else "image",
                                 lambda m: self._slot.put(m, time.monotonic()), in_qos)
        self.create_subscription(CameraInfo, "camera_info", self._on_camera_info, in_qos)
        self.pub_depth = self.create_publisher(Image, "depth", out_qos)
        self.pub_depth_info = self.create_publisher(CameraInfo, "depth/camera_info", out_qos)
        self.pub_colorized = self.create_publisher(Image, "depth/colorized", out_qos)
        self.pub_points = self.create_publisher(PointCloud2, "points", out_qos)
        self.pub_odom = self.create_publisher(Odometry, "odom", out_qos)
        self.pub_tf = self.pub_tf_static = None
        if TFMessage is None:
            self.get_logger().error("tf2_msgs is not importable: /tf and /tf_static are not published")
        else:
            self.pub_tf = self.create_publisher(TFMessage, "/tf", QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE))
            self.pub_tf_static = self.create_publisher(TFMessage, "/tf_static", QoSProfile(
                depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL))
        if self.cfg["camera_frame"]:
            self._send_static_tf(self.cfg["camera_frame"])
        self.pub_diag = None
        if DiagnosticArray is not None and self.cfg["diagnostics_period"] > 0:
            self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
            self.create_timer(self.cfg["diagnostics_period"], self._publish_diagnostics)

        self._running = True
        self._warmed = False
        self._publisher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="monodepth-publish")
        self._worker = threading.Thread(target=self._worker_loop, name="monodepth-inference", daemon=True)
        self._worker.start()
        self.get_logger().info(
            f"listening on {self.image_topic} ({image_type.__name__}) and {self.info_topic}; "
            f"network {self.cfg['network_width']}x{self.cfg['network_height']}, scale_mode={self.cfg['scale_mode']}, "
            f"backend {self.backend.describe()}")

    # ---------------------------------------------------------------- set-up
    def _create_backend(self) -> None:
        cfg = self.cfg
        ckpt = cfg["checkpoint_dir"]
        self.checkpoint_meta = None
        if ckpt:
            try:
                self.checkpoint_meta = read_metadata(ckpt)
            except CheckpointError as exc:
                raise RuntimeError(f"parameter 'checkpoint_dir': {exc}") from exc
            if self.checkpoint_meta.use_stereo and cfg["scale_mode"] == "stereo":
                cfg["stereo_scale"] = float(self.checkpoint_meta.stereo_scale)
        else:
            self.get_logger().warning("checkpoint_dir is empty: running UNTRAINED networks (depth and odometry "
                                      "are meaningless; set checkpoint_dir to trained weights)")
        spec = ModelSpec(
            checkpoint_dir=ckpt,
            num_layers=cfg["encoder_layers"],
            network_size=(cfg["network_height"], cfg["network_width"]),
            min_depth=cfg["min_depth"],
            max_depth=cfg["max_depth"],
            channel_order="rgb",
            with_pose=cfg["publish_odometry"],
            device=cfg["device"],
            precision=cfg["precision"],
        )
        try:
            self.backend, why = create_backend(cfg["backend"], spec)
        except (BackendError, CheckpointError) as exc:
            raise RuntimeError(f"cannot create backend '{cfg['backend']}': {exc}") from exc
        self.get_logger().info(f"inference backend: {self.backend.describe()} ({why})")
        if cfg["publish_odometry"] and not self.backend.has_pose:
            self.get_logger().warning("no pose network: odometry and /tf are not published")

    def _build_scale(self) -> None:
        cfg = self.cfg
        R_base_cam = rpy_to_matrix(*cfg["camera_mount.rpy"])
        up_in_cam = R_base_cam.T @ np.array([0.0, 0.0, 1.0])
        height = cfg["camera_height"] or float(cfg["camera_mount.xyz"][2])
        self.scale = ScaleEstimator(cfg["scale_mode"], cfg["scale_factor"], cfg["stereo_scale"], height,
                                    tuple(up_in_cam), cfg["scale_smoothing"], cfg["ground_region"])
        if cfg["scale_mode"] == "camera_height" and height <= 0:
            self.get_logger().warning("scale_mode camera_height needs camera_height or camera_mount.xyz z > 0")

    def _apply_updates(self, updates: Dict[str, Any]) -> None:
        with self._cfg_lock:
            self.cfg.update(updates)
            if any(k.startswith(("scale", "stereo", "camera_height", "ground")) for k in updates):
                self._build_scale()
            if "max_frame_gap" in updates:
                self.odometry.max_gap_s = updates["max_frame_gap"]
        self.get_logger().info("parameters updated: " + ", ".join(f"{k}={v}" for k, v in updates.items()))

    # ---------------------------------------------------------------- callbacks
    def _warn(self, topic: str, field: str, text: str) -> None:
        """Warning throttled per (topic, field), so one broken field cannot hide another."""
        now = time.monotonic()
        key = (topic, field)
        if now - self._warned.get(key, -math.inf) >= self.cfg["warn_throttle"]:
            self._warned[key] = now
            self.get_logger().warning(f"{text}; frame dropped")

    def _on_camera_info(self, msg: CameraInfo) -> None:
        K = np.array(msg.k, np.float64).reshape(3, 3)
        fx, fy = K[0, 0], K[1, 1]
        for name, v in (("k[0] (fx)", fx), ("k[4] (fy)", fy)):
            if not math.isfinite(v) or v <= 0:
                self._warn(self.info_topic, name, f"{self.info_topic}: field {name}={v}: focal length must be finite and > 0; "
                                                  "camera_info ignored")
                return
        if not np.isfinite(K).all():
            self._warn(self.info_topic, "k", f"{self.info_topic}: field k has non-finite values; camera_info ignored")
            return
        with self._camera_info_lock:
            self._camera_info = Intrinsics(K, int(msg.width), int(msg.height), self.info_topic)

    # ---------------------------------------------------------------- worker
    def _worker_loop(self) -> None:
        self._warm_up()   # exported graphs know their input size now
        while self._running:
            item = self._slot.take(timeout=0.2)
            if item is None:
                self._warm_up()   # PyTorch: once camera_info tells the size, if no frame came first
                continue
            msg, arrival = item
            try:
                self._process(msg, arrival)
            except (InputError, ImageFormatError) as exc:
                field = getattr(exc, "field", "data")
                self._warn(self.image_topic, field, str(exc) if isinstance(exc, InputError)
                           else f"{self.image_topic}: field {exc}")
            except Exception as exc:  # never let one frame kill the node
                if not self.context.ok():
                    return  # shutting down (Ctrl-C, launch stop): publishers are gone, nothing to report
                self._warn(self.image_topic, "__exception__", f"{self.image_topic}: processing failed: {exc!r}\n"
                                                             f"{traceback.format_exc()}")

    def _warm_up(self) -> None:
        """Run the backend once on a blank frame of the camera's size on this thread, so that graph tracing,
        allocation and kernel selection are paid before the first frame instead of delaying (and, latest frame
        wins, dropping) the first real ones."""
        if self._warmed or self.processed:   # after a real frame there is nothing left to warm
            self._warmed = True
            return
        size = self.backend.input_size
        if size is None:
            with self._camera_info_lock:
                info = self._camera_info
            if info is None or (info.width, info.height) == (0, 0):
                return
            size = (info.height, info.width)
        self._warmed = True
        t0 = time.perf_counter()
        try:
            self.backend.warmup(size, runs=1)
        except Exception as exc:  # a backend that fails on blank frames still gets real ones
            self.get_logger().warning(f"backend warm-up on a blank {size[1]}x{size[0]} frame failed: {exc!r}")
            return
        self.get_logger().info(f"backend warmed up on a blank {size[1]}x{size[0]} frame in "
                               f"{time.perf_counter() - t0:.2f} s")

    def _intrinsics(self, width: int, height: int) -> Intrinsics:
        with self._camera_info_lock:
            info = self._camera_info
        if info is not None:
            if (info.width, info.height) != (0, 0) and (info.width, info.height) != (width, height):
                raise InputError(self.info_topic, "width/height", f"{info.width}x{info.height}",
                                 f"camera_info size differs from the image's {width}x{height}")
            return info
        fx = self.cfg["intrinsics.fx"]
        if fx <= 0:
            raise InputError(self.info_topic, "k", "none received",
                             "no camera_info yet and parameter intrinsics.fx is 0")
        fy = self.cfg["intrinsics.fy"] or fx
        cx = self.cfg["intrinsics.cx"] if self.cfg["intrinsics.cx"] >= 0 else (width - 1) / 2.0
        cy = self.cfg["intrinsics.cy"] if self.cfg["intrinsics.cy"] >= 0 else (height - 1) / 2.0
        return Intrinsics(np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1.0]]), width, height, "parameters")

    def _decode(self, msg: Any) -> np.ndarray:
        order = self.backend.channel_order
        if self.compressed:
            return decode_compressed(msg, order)
        raw = image_to_numpy(msg, CAMERA_ENCODINGS)
        return to_rgb8(raw, msg.encoding, order)

    def _camera_frame(self, msg: Any) -> str:
        return self.cfg["camera_frame"] or msg.header.frame_id or DEFAULT_CAMERA_FRAME

    def _process(self, msg: Any, arrival: float) -> None:
        with self._cfg_lock:
            cfg = dict(self.cfg)
        timer = self.timer_stats
        t_start = time.perf_counter()
        with timer.stage("decode"):
            rgb = self._decode(msg)
        height, width = rgb.shape[:2]
        intr = self._intrinsics(width, height)
        frame = self._camera_frame(msg)
        if frame != self._static_sent_for:
            self._send_static_tf(frame)
        header = Header(stamp=msg.header.stamp, frame_id=frame)
        stamp = stamp_seconds(msg.header.stamp)

        with timer.stage("preprocess"):
            net_in = rgb
            need = self.backend.input_size
            if need is not None and need != (height, width):
                # bilinear with pixel-centre alignment: the same sampling the torch backend does in-graph, so
                # every backend sees the same network input
                net_in = cv2.resize(rgb, (need[1], need[0]), interpolation=cv2.INTER_LINEAR)
        with timer.stage("depth_net"):
            depth_net = self.backend.depth(net_in)
        net_h, net_w = depth_net.shape

        # Scale (camera_height fits the ground in camera-frame points at network resolution).
        if cfg["scale_mode"] == "camera_height":
            K_net = scale_intrinsics(intr.K, net_w / width, net_h / height)
            self.scale.update(self._rays_scale.points(depth_net, K_net, 4))
        scale = self.scale.scale

        # Depth, colorized depth and points are built and published on the publisher thread while this thread
        # runs the pose network: on the CPU the ~3 ms of numpy and serialisation leave the odometry's critical
        # path. The backend itself is only ever called from this thread (CUDA contexts are per thread).
        published = self._publisher.submit(self._publish_depth, rgb, net_in, depth_net, intr, header, scale, cfg, timer)
        try:
            if cfg["publish_odometry"] and self.backend.has_pose:
                self._odometry(net_in, stamp, scale, msg.header.stamp, cfg, timer)
        finally:
            published.result()  # in order, one frame at a time; re-raises a publishing error here

        self.processed += 1
        now = time.monotonic()
        if self._first_processed is None:
            self._first_processed = now
        self._latency_sum += now - arrival
        timer.add("total", time.perf_counter() - t_start)

    def _publish_depth(self, rgb: np.ndarray, net_in: np.ndarray, depth_net: np.ndarray, intr: Intrinsics,
                       header: Header, scale: float, cfg: Dict[str, Any], timer: StageTimer) -> None:
        """Metric depth, its camera_info, colorized depth and the point cloud of one frame (publisher thread).
        ``net_in`` is the frame as the backend took it (camera or network size)."""
        height, width = rgb.shape[:2]
        net_h, net_w = depth_net.shape
        with timer.stage("postprocess"):
            if cfg["depth_resolution"] == "camera":
                out_w, out_h = width, height
            else:
                out_w, out_h = net_w, net_h
            depth = depth_net if (out_h, out_w) == (net_h, net_w) else cv2.resize(
                depth_net, (out_w, out_h), interpolation=cv2.INTER_LINEAR)
            depth = depth * np.float32(scale)
            depth[~(np.isfinite(depth) & (depth > 0))] = np.nan
            K_out = scale_intrinsics(intr.K, out_w / width, out_h / height)

        with timer.stage("publish"):
            self.pub_depth.publish(fill_image_msg(Image(header=header), depth, "32FC1"))
            self.pub_depth_info.publish(camera_info_msg(header, K_out, out_w, out_h))
            if cfg["publish_colorized"]:
                self.pub_colorized.publish(fill_image_msg(Image(header=header), colorize_depth(depth), "bgr8"))

        # The cloud is lazy, as image_pipeline's point-cloud nodes are: built only while someone subscribes (about
        # 1-2 ms a frame otherwise). The colorized image costs 0.5 ms and is always published.
        if cfg["publish_points"] and self.pub_points.get_subscription_count() > 0:
            with timer.stage("points"):
                stride = int(cfg["points_stride"])
                xyz = self._rays_out.points(depth, K_out, stride)
                packed = None
                if cfg["points_rgb"]:
                    if (out_h, out_w) == (height, width):
                        colour = rgb
                    elif net_in.shape[:2] == (out_h, out_w):   # the resized frame the network saw: no second resize
                        colour = net_in
                    else:
                        colour = cv2.resize(rgb, (out_w, out_h), interpolation=cv2.INTER_AREA)
                    colour = colour[::stride, ::stride]
                    packed = pack_rgb_float(colour[..., ::-1] if self.backend.channel_order == "bgr" else colour)
                cloud = build_cloud(header, xyz, packed)
            with timer.stage("publish"):
                self.pub_points.publish(cloud)

    def _odometry(self, frame: np.ndarray, stamp: float, scale: float, stamp_msg: TimeMsg, cfg: Dict[str, Any],
                  timer: StageTimer) -> None:
        reason = self.odometry.check_stamp(stamp)
        if reason or self._prev_frame is None or self._prev_frame.shape != frame.shape:
            if reason and reason != "first frame":
                self.get_logger().warning(f"{self.image_topic}: header.stamp: {reason}; odometry chain restarted")
            step = self.odometry.start(stamp, reason or "size change")
        else:
            with timer.stage("pose_net"):
                T = self.backend.relative_pose(self._prev_frame, frame)
            step = self.odometry.update(stamp, T, scale)
        self._prev_frame = frame
        header = Header(stamp=stamp_msg, frame_id=cfg["odom_frame"])
        with timer.stage("publish"):
            self.pub_odom.publish(odometry_msg(header, cfg["base_frame"], step.T_odom_base, step.linear, step.angular,
                                               cfg["pose_covariance_diagonal"], cfg["twist_covariance_diagonal"]))
            if cfg["publish_tf"] and self.pub_tf is not None:
                self.pub_tf.publish(TFMessage(transforms=[transform_msg(header, cfg["base_frame"], step.T_odom_base)]))

    def _send_static_tf(self, camera_frame: str) -> None:
        self._static_sent_for = camera_frame
        if not self.cfg["publish_camera_mount"] or self.pub_tf_static is None:
            return
        header = Header(stamp=self.get_clock().now().to_msg(), frame_id=self.cfg["base_frame"])
        self.pub_tf_static.publish(TFMessage(transforms=[transform_msg(header, camera_frame, self.T_base_cam)]))
        self.get_logger().info(f"static transform {self.cfg['base_frame']} -> {camera_frame} on /tf_static")

    # ---------------------------------------------------------------- diagnostics
    def _publish_diagnostics(self) -> None:
        if self.pub_diag is None:
            return
        n = self.processed
        elapsed = (time.monotonic() - self._first_processed) if self._first_processed else 0.0
        rate = (n - 1) / elapsed if n > 1 and elapsed > 0 else 0.0
        latency = self._latency_sum / n if n else 0.0
        values = {
            "frames received": self._slot.received,
            "frames processed": n,
            "frames dropped (newer frame arrived first)": self._slot.dropped,
            "rate (Hz)": f"{rate:.2f}",
            "mean latency from arrival (ms)": f"{1000 * latency:.1f}",
            "backend": self.backend.describe(),
            "scale": f"{self.scale.scale:.4f} ({self.cfg['scale_mode']})",
        }
        values.update({f"stage {k} mean (ms)": f"{1000 * v:.2f}" for k, v in self.timer_stats.means().items()})
        level, text = (0, "running") if n else (1, f"no frame processed yet (waiting on {self.image_topic})")
        arr = DiagnosticArray()
        arr.header.stamp = self.get_clock().now().to_msg()
        arr.status = [diagnostic_status(f"{self.get_name()}: monodepth", self.backend.describe(), level, text, values)]
        self.pub_diag.publish(arr)

    def destroy_node(self) -> None:
        self._running = False
        self._slot.close()
        if self._worker.is_alive():
            self._worker.join(timeout=5.0)
        self._publisher.shutdown(wait=True)
        self.backend.close()
        super().destroy_node()


def usage() -> str:
    """``monodepth_node --help``: topics and every parameter with its default and description."""
    from .params import PARAMS

    lines = [
        "usage: monodepth_node [--help] [--ros-args --params-file config/monodepth.yaml -p NAME:=VALUE -r FROM:=TO ...]",
        "",
        "Monocular depth, point cloud and visual odometry from one camera.",
        "",
        "subscribes: image (sensor_msgs/Image) or image/compressed, camera_info (sensor_msgs/CameraInfo)",
        "publishes:  depth (32FC1, m), depth/camera_info, depth/colorized (bgr8), points (PointCloud2),",
        "            odom (nav_msgs/Odometry), /tf, /tf_static, /diagnostics",
        "",
        "parameters (* = can be changed at run time):",
    ]
    for spec in PARAMS:
        star = "*" if spec.dynamic else " "
        lines.append(f"  {star} {spec.name} (default {spec.default!r})")
        lines.append(f"      {spec.description}")
    return "\n".join(lines)


def main(args: Optional[list] = None) -> int:
    argv = list(sys.argv if args is None else args)
    user_args = argv[1:argv.index("--ros-args")] if "--ros-args" in argv else argv[1:]
    if "-h" in user_args or "--help" in user_args:
        print(usage())
        return 0
    rclpy.init(args=args)
    node = None
    code = 0
    try:
        node = MonodepthNode()
        rclpy.spin(node)
    except KeyboardInterrupt:
        pass
    except ExternalShutdownException:
        pass
    except (RuntimeError, ValueError) as exc:
        # Bad parameters or model files: say what and exit non-zero instead of a traceback.
        print(f"[monodepth_node] error: {exc}", file=sys.stderr)
        code = 1
    finally:
        if node is not None:
            node.destroy_node()
        if rclpy.ok():
            rclpy.try_shutdown()
    return code


if __name__ == "__main__":
    sys.exit(main())

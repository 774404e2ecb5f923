"""``monodepth_node``: camera image (+ camera_info) in; depth, point cloud, odometry, TF and a colourised
depth image out.

The ROS adapter of ``core.pipeline``: it converts messages, holds parameters, publishers and threads, and does
no numeric work of its own. The subscriber callbacks only hand the newest message to a worker thread (latest
frame wins); decoding, inference and publishing run there, so the executor never waits for the network. The
worker runs the pipeline's depth stage, hands the result to a publisher thread and runs the odometry stage
meanwhile.
"""

from __future__ import annotations

import logging
import math
import sys
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any, Dict, Optional, Tuple

import numpy as np
import rclpy
from builtin_interfaces.msg import Time as TimeMsg
from nav_msgs.msg import Odometry
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from std_msgs.msg import Header

from ..core.backends.base import BackendError
from ..core.model_contract import CheckpointError, format_size
from ..core.image_codec import (CAMERA_ENCODINGS, ImageFormatError, compressed_format, compressed_image_size,
                                decode_compressed, image_to_numpy, to_rgb8)
from ..core.pipeline import (CameraIntrinsics, DepthResult, FrameError, FramePipeline, OdometryResult, camera_intrinsics,
                             distortion_problem)
from ..core.scale import OdometryError
from ..core.tf_tree import TfTree
from .frame_slot import LatestFrameSlot
from .health import HealthConfig, HealthContext, NodeHealth
from .image_messages import fill_image_msg
from .messages import camera_info_msg, diagnostic_status, odometry_msg, transform_msg
from .params import NodeConfig, declare_parameters, on_set_parameters, with_values
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
MOUNT_TIMER_PERIOD = 0.1   # s between checks of a pending camera-mount decision (a dict look-up when none is)


def stamp_seconds(stamp: TimeMsg) -> float:
    return float(stamp.sec) + 1e-9 * float(stamp.nanosec)


class RosLogHandler(logging.Handler):
    """Python logging of the core (``ros2_monodepth.*``: backend choice, int8 calibration, engine builds, exports)
    into this node's ROS logger, so that it reaches /rosout and the launch output like the node's own messages."""

    def __init__(self, ros_logger: Any):
        super().__init__(logging.INFO)
        self.ros_logger = ros_logger

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = f"[{record.name}] {record.getMessage()}"
            if record.levelno >= logging.ERROR:
                self.ros_logger.error(text)
            elif record.levelno >= logging.WARNING:
                self.ros_logger.warning(text)
            else:
                self.ros_logger.info(text)
        except Exception:   # logging must never take the node down
            self.handleError(record)


class MonodepthNode(Node):
    def __init__(self, **kwargs: Any):
        # undeclared names reach on_set_parameters, which refuses them naming the parameter (rclpy's own refusal of
        # an undeclared parameter says "Invalid access to undeclared parameter(s): []")
        kwargs.setdefault("allow_undeclared_parameters", True)
        super().__init__("monodepth", **kwargs)
        self._log_handler = RosLogHandler(self.get_logger())
        core_logger = logging.getLogger("ros2_monodepth")
        core_logger.addHandler(self._log_handler)
        core_logger.setLevel(logging.INFO)
        core_logger.propagate = False      # once, here: not also on stderr through the root logger
        self.cfg: NodeConfig = declare_parameters(self)
        self._warn_unknown_overrides()
        self._cfg_lock = threading.Lock()
        self.add_on_set_parameters_callback(lambda params: on_set_parameters(params, self._apply_updates))
        self._warned: Dict[Tuple[str, str], float] = {}

        self.pipeline = self._create_pipeline()
        self._camera_info: Optional[CameraIntrinsics] = None
        self._camera_info_lock = threading.Lock()
        self.processed = 0
        self._start = time.monotonic()
        self.health = NodeHealth(self._health_config(), self._start)
        self.tf_tree = TfTree()
        self._mount_settled_for: Optional[str] = None     # camera frame whose mount is decided
        self._mount_pending: Optional[str] = None         # camera frame seen, mount not yet decided (timer decides)
        self._mount_lock = threading.Lock()               # the worker and the mount timer both settle
        self._mount_published: Optional[Tuple[str, np.ndarray]] = None   # (camera frame, T_base_cam) we broadcast
        self._mount_conflict_warned = False
        self._unrectified = ""             # why camera_info says the image is not rectified ('' when it is)
        self._unrectified_warned = ""
        self._views_logged: set = set()   # camera sizes whose network view was logged
        self._input_format = ""   # encoding (or compressed format) and size of the last decoded frame
        self._tf_others_since: Optional[float] = None       # when another /tf_static publisher was first seen

        # --- interfaces ---
        cfg = self.cfg
        in_qos = qos_profile_sensor_data if cfg.input_qos == "sensor_data" else QoSProfile(
            depth=5, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)
        out_qos = QoSProfile(depth=cfg.output_queue_size, reliability=ReliabilityPolicy.RELIABLE)
        self.compressed = cfg.image_transport == "compressed"
        image_type = CompressedImage if self.compressed else Image
        self.image_topic = self.resolve_topic_name("image/compressed" if self.compressed else "image")
        self.info_topic = self.resolve_topic_name("camera_info")
        self._slot = LatestFrameSlot()
        self.create_subscription(image_type, "image/compressed" if self.compressed else "image", self._on_image, in_qos)
        self.create_subscription(CameraInfo, "camera_info", self._on_camera_info, in_qos)
        # image_transport-style pairs: each image has its camera_info beside it (depth/image + depth/camera_info,
        # depth/colorized shares it; rgb/image + rgb/camera_info is the colour frame registered to the depth)
        self.pub_depth = self.create_publisher(Image, "depth/image", out_qos)
        self.pub_depth_info = self.create_publisher(CameraInfo, "depth/camera_info", out_qos)
        self.pub_colorized = self.create_publisher(Image, "depth/colorized", out_qos)
        self.pub_rgb = self.create_publisher(Image, "rgb/image", out_qos)
        self.pub_rgb_info = self.create_publisher(CameraInfo, "rgb/camera_info", out_qos)
        self.pub_points = self.create_publisher(PointCloud2, "points", out_qos)
        self.pub_odom = self.create_publisher(Odometry, "odom", out_qos)
        self.odometry_input_topic = ""
        if cfg.pipeline.odometry_topic:
            self._subscribe_robot_odometry(cfg.pipeline.odometry_topic)
        self.pub_tf = self.pub_tf_static = None
        if TFMessage is None:
            self.get_logger().error("tf2_msgs is not importable: /tf and /tf_static are neither read nor published")
        else:
            tf_qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
            static_qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
            self.pub_tf = self.create_publisher(TFMessage, "/tf", tf_qos)
            self.pub_tf_static = self.create_publisher(TFMessage, "/tf_static", QoSProfile(
                depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL))
            # the robot's tree: where the camera sits (URDF via robot_state_publisher, or the driver)
            self.create_subscription(TFMessage, "/tf_static", lambda m: self._on_tf(m, True), static_qos)
            self.create_subscription(TFMessage, "/tf", lambda m: self._on_tf(m, False), tf_qos)
        if cfg.camera_frame:
            # the frame is known without a frame: the mount is decided on time even if no image ever arrives
            self._mount_pending = cfg.camera_frame
            self._settle_camera_mount(cfg.camera_frame)
        # The camera-mount decision waits for time (camera_mount_wait), not for the next frame: a short bag or a
        # camera that pauses must still leave the camera in the robot's TF tree.
        self.create_timer(MOUNT_TIMER_PERIOD, self._settle_pending_mount)
        self.pub_diag = None
        if DiagnosticArray is not None and cfg.diagnostics_period > 0:
            self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
            self.create_timer(cfg.diagnostics_period, self._publish_diagnostics)

        self._running = True
        self._warmed = False
        self._publisher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="monodepth-publish")
        self._worker = threading.Thread(target=self._worker_loop, name="monodepth-inference", daemon=True)
        self._worker.start()
        p = cfg.pipeline
        self.get_logger().info(
            f"listening on {self.image_topic} ({image_type.__name__}) and {self.info_topic}; "
            f"network {format_size(p.network_size)}, scale_mode={p.scale_mode}, "
            f"backend {self.pipeline.backend.describe()}")

    # ---------------------------------------------------------------- set-up
    def _create_pipeline(self) -> FramePipeline:
        p = self.cfg.pipeline
        if not p.checkpoint_dir:
            self.get_logger().warning("checkpoint_dir is empty: running UNTRAINED networks (depth and odometry "
                                      "are meaningless; set checkpoint_dir to trained weights)")
        try:
            pipeline, why = FramePipeline.create(self.cfg.pipeline)
        except CheckpointError as exc:   # no backend can run a checkpoint that contradicts itself: auto included
            raise RuntimeError(f"parameter 'checkpoint_dir': {exc}") from exc
        except BackendError as exc:
            raise RuntimeError(f"cannot create backend '{p.backend}': {exc}") from exc
        meta = pipeline.checkpoint_meta
        if meta is not None and "crop_assumed" in meta.extra:
            self.get_logger().warning(f"{p.checkpoint_dir}: {meta.extra['crop_assumed']}")
        self.cfg = replace(self.cfg, pipeline=pipeline.cfg)      # the network size and depth range it runs with
        p, sources = pipeline.cfg, pipeline.settings_sources
        self.get_logger().info(
            f"network {format_size(p.network_size)} ({sources['network_size']}), depth range "
            f"{p.min_depth:g}-{p.max_depth:g} ({sources['min_depth']})"
            + (f", pose network at 1/{meta.pose_downscale} of it" if meta is not None and meta.pose_downscale != 1 else "")
            + (", pose decoder on the depth encoder's features (shared pose model)"
               if meta is not None and meta.pose_model == "shared" else "")
            + (", depth from the half-resolution disparity head, upsampled (depth_output_scale 1)"
               if p.depth_output_scale else "")
            + (f", {p.checkpoint_dir}" if meta else ""))
        if meta is not None and sources["network_size"] == "parameter" and p.network_size != meta.network_size:
            self.get_logger().warning(f"the checkpoint was trained at {format_size(meta.network_size)}; running it at "
                                      f"{format_size(p.network_size)} as network_size asks")
        self.get_logger().info(f"inference backend: {pipeline.backend.describe()} ({why})")
        if p.publish_odometry and not pipeline.has_pose:
            self.get_logger().warning("no pose network: odometry and /tf are not published")
        if p.scale_mode == "camera_height" and not pipeline.camera_height_usable:
            self.get_logger().warning("scale_mode camera_height needs camera_height or camera_mount.xyz z > 0")
        self._log_scale(pipeline)
        return pipeline

    def _log_scale(self, pipeline: FramePipeline) -> None:
        scale = pipeline.scale
        said = f"scale_mode {pipeline.cfg.scale_mode}" + (f" -> {scale.mode}" if pipeline.cfg.scale_mode != scale.mode else "")
        if scale.mode == "relative":
            self.get_logger().warning(f"{said}: depth, points and odometry are NOT metric ({scale.reason})")
        elif scale.mode in ("odometry", "camera_height"):
            self.get_logger().info(f"{said}: {scale.reason}; metric once the scale is found (/diagnostics says when)")
        else:
            self.get_logger().info(f"{said}: metric ({scale.reason})")
        if scale.mode == "odometry" and not pipeline.has_pose:
            self.get_logger().warning("scale_mode odometry compares the robot's motion with the pose network's, and this "
                                      "checkpoint has none: the scale will not be found")

    def _subscribe_robot_odometry(self, topic: str) -> None:
        """Listen to the robot's own odometry for the odometry scale; never to this node's own output."""
        resolved = self.resolve_topic_name(topic)
        if resolved == self.resolve_topic_name("odom"):
            self.get_logger().error(f"odometry_topic {topic} is this node's own odometry output ({resolved}): the scale "
                                    "would be measured against itself; not subscribed (give the robot's wheel odometry "
                                    "or VIO topic)")
            return
        self.odometry_input_topic = resolved
        self.create_subscription(Odometry, topic, self._on_robot_odometry,
                                 QoSProfile(depth=50, reliability=ReliabilityPolicy.BEST_EFFORT))

    def _on_robot_odometry(self, msg: Odometry) -> None:
        motion = self.pipeline.scale.motion
        if motion is None:
            return
        p, q = msg.pose.pose.position, msg.pose.pose.orientation
        try:
            motion.add_odometry(msg.header.stamp.sec + 1e-9 * msg.header.stamp.nanosec, (p.x, p.y, p.z), (q.x, q.y, q.z, q.w))
        except OdometryError as exc:
            text = f"{self.odometry_input_topic}: field {exc}; message ignored"
            self.health.frame_refused(time.monotonic(), f"odometry {exc.field}", text)
            self._warn(self.odometry_input_topic, exc.field, text)

    def _warn_unknown_overrides(self) -> None:
        """A parameter given at start (-p, a params file) that this node does not have is named, not dropped in
        silence: a typo would otherwise leave the default in force."""
        from .params import RENAMED, SPECS, renamed_values

        given = getattr(self, "_parameter_overrides", {}) or {}
        for text in renamed_values(given)[1]:
            self.get_logger().warning(text)
        unknown = sorted(name for name in given if name not in SPECS and name not in RENAMED
                         and name != "use_sim_time" and not name.startswith("qos_overrides."))
        if unknown:
            self.get_logger().warning(f"ignored: {', '.join(repr(n) for n in unknown)} "
                                      f"{'is not a parameter' if len(unknown) == 1 else 'are not parameters'} of this node "
                                      "(monodepth_node --help lists them)")

    def _health_config(self) -> HealthConfig:
        cfg = self.cfg
        return HealthConfig(cfg.input_timeout, cfg.expected_rate_min, cfg.expected_rate_max, window=5.0)

    def _apply_updates(self, updates: Dict[str, Any]) -> None:
        with self._cfg_lock:
            self.cfg = with_values(self.cfg, updates)
            before = self.pipeline.scale.mode
            self.pipeline.reconfigure(self.cfg.pipeline)
            self.health.cfg = self._health_config()
        self.get_logger().info("parameters updated: " + ", ".join(f"{k}={v}" for k, v in updates.items()))
        if self.pipeline.scale.mode != before or "scale_mode" in updates:
            self._log_scale(self.pipeline)

    # ---------------------------------------------------------------- callbacks
    def _warn(self, topic: str, field: str, text: str) -> None:
        """Warning throttled per (topic, field), so one broken field cannot hide another."""
        now = time.monotonic()
        key = (topic, field)
        if now - self._warned.get(key, -math.inf) >= self.cfg.warn_throttle:
            self._warned[key] = now
            self.get_logger().warning(text)

    def _on_image(self, msg: Any) -> None:
        now = time.monotonic()
        self.health.frame_received(now)
        self._slot.put(msg, now)

    def _on_camera_info(self, msg: CameraInfo) -> None:
        try:
            intrinsics = camera_intrinsics(msg.k, msg.width, msg.height, self.info_topic)
        except FrameError as exc:
            with self._camera_info_lock:
                have = self._camera_info is not None
            consequence = ("frames keep the last valid camera_info" if have else
                           "frames wait for a valid one (or set the intrinsics.* parameters)")
            text = f"{self.info_topic}: field {exc}; camera_info ignored, {consequence}"
            self.health.frame_refused(time.monotonic(), f"camera_info {exc.field}", text)
            self._warn(self.info_topic, exc.field, text)
            return
        with self._camera_info_lock:
            self._camera_info = intrinsics
        self._check_rectified(msg)

    def _check_rectified(self, msg: CameraInfo) -> None:
        """Warn once per camera (this node's camera_info topic, per distortion seen) when camera_info says the
        image is not rectified; /diagnostics shows it while it lasts."""
        problem = "" if self.cfg.assume_rectified else distortion_problem(msg.distortion_model, msg.d)
        self._unrectified = problem
        if problem and problem != self._unrectified_warned:
            self._unrectified_warned = problem
            self.get_logger().warning(
                f"{self.info_topic}: {problem}. Depth and points are computed with K alone, as for a rectified image: "
                f"run image_proc (rectify) between the camera and this node and subscribe to image_rect, or set "
                f"assume_rectified: true if the images already are")

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
            except (FrameError, ImageFormatError) as exc:
                topic = self.info_topic if isinstance(exc, FrameError) and exc.field == "k" else self.image_topic
                kind = exc.kind if isinstance(exc, FrameError) else f"bad {exc.field}"
                text = f"{topic}: field {exc}; frame dropped"
                self.health.frame_refused(time.monotonic(), kind, text)
                self._warn(topic, exc.field, text)
            except Exception as exc:  # never let one frame kill the node
                if not self.context.ok():
                    return  # shutting down (Ctrl-C, launch stop): publishers are gone, nothing to report
                self.health.frame_failed(time.monotonic(), repr(exc))
                self._warn(self.image_topic, "__exception__", f"{self.image_topic}: processing failed: {exc!r}; frame "
                                                             f"dropped\n{traceback.format_exc()}")

    def _warm_up(self) -> None:
        """Run the backend once on a blank frame of the camera's size on this thread, so that graph tracing,
        allocation and kernel selection are paid before the first frame instead of delaying (and, latest frame
        wins, dropping) the first real ones."""
        if self._warmed or self.processed:   # after a real frame there is nothing left to warm
            self._warmed = True
            return
        size = self.pipeline.backend.input_size
        if size is None:
            with self._camera_info_lock:
                info = self._camera_info
            if info is None or (info.width, info.height) == (0, 0):
                return
            size = (info.height, info.width)
        self._warmed = True
        t0 = time.perf_counter()
        try:
            self.pipeline.warm_up(size)
        except Exception as exc:  # a backend that fails on blank frames still gets real ones
            self.get_logger().warning(f"backend warm-up on a blank {size[1]}x{size[0]} frame failed: {exc!r}")
            return
        self.get_logger().info(f"backend warmed up on a blank {size[1]}x{size[0]} frame in "
                               f"{time.perf_counter() - t0:.2f} s")

    def _decode(self, msg: Any) -> np.ndarray:
        """The frame as the backend wants it, after its size was checked against max_image_pixels from the
        message's fields (raw) or the image's header (compressed), before anything is decoded."""
        order = self.pipeline.channel_order
        if self.compressed:
            fmt = compressed_format(msg)
            size = compressed_image_size(msg.data)
            if size is not None:
                self.pipeline.check_size(*size)
            frame = decode_compressed(msg, order)
            self._input_format = f"{fmt or 'compressed, no format given'} {frame.shape[1]}x{frame.shape[0]}"
            return frame
        self.pipeline.check_size(int(msg.width), int(msg.height))
        raw = image_to_numpy(msg, CAMERA_ENCODINGS)
        self._input_format = f"{msg.encoding} {msg.width}x{msg.height}"
        return to_rgb8(raw, msg.encoding, order)

    def _log_network_view(self, plan: Any) -> None:
        """Once per camera size: what of the camera image the network sees (the checkpoint's crop)."""
        self._views_logged.add(plan.src_size)
        text = f"{self.image_topic}: the network sees {plan.describe()} ({self.pipeline.crop_policy} crop, as trained)"
        if plan.kept_fraction < 0.85:
            H, W = plan.src_size
            self.get_logger().warning(
                f"{text}; depth/image, points and rgb/image cover that region only. To see the whole image, train at "
                f"the camera's own aspect ratio: ros2-monodepth-train picks a size for it by default (or "
                f"--network-size for a {W}x{H} camera)")
        else:
            self.get_logger().info(text)

    def _camera_frame(self, msg: Any) -> str:
        return self.cfg.camera_frame or msg.header.frame_id or DEFAULT_CAMERA_FRAME

    def _process(self, msg: Any, arrival: float) -> None:
        with self._cfg_lock:
            cfg = self.cfg
        pipeline = self.pipeline
        timer = pipeline.timer
        t_start = time.perf_counter()
        stamp = stamp_seconds(msg.header.stamp)
        admitted = pipeline.admit(stamp, self.get_clock().now().nanoseconds * 1e-9)
        with timer.stage("decode"):
            image = self._decode(msg)
        with self._camera_info_lock:
            info = self._camera_info
        frame = pipeline.prepare(image, info, stamp, admitted)
        if frame.plan is not None and frame.plan.src_size not in self._views_logged:
            self._log_network_view(frame.plan)
        camera_frame = self._camera_frame(msg)
        if camera_frame != self._mount_settled_for:
            self._mount_pending = camera_frame
            self._settle_camera_mount(camera_frame)
        header = Header(stamp=msg.header.stamp, frame_id=camera_frame)

        depth = pipeline.depth(frame)
        # Depth, colorized depth and points are published on the publisher thread while this thread runs the pose
        # network: on the CPU the ~3 ms of numpy and serialisation leave the odometry's critical path. The backend
        # itself is only ever called from this thread (CUDA contexts are per thread).
        published = self._publisher.submit(self._publish_depth, depth, header, cfg)
        try:
            odometry = pipeline.odometry(frame, depth.scale)
            if odometry is not None:
                self._publish_odometry(odometry, msg.header.stamp, cfg)
        finally:
            published.result()  # in order, one frame at a time; re-raises a publishing error here

        self.processed += 1
        now = time.monotonic()
        self.health.frame_published(now, now - arrival)
        timer.add("total", time.perf_counter() - t_start)

    def _publish_depth(self, depth: DepthResult, header: Header, cfg: NodeConfig) -> None:
        """Metric depth, its camera_info, colorized depth and the point cloud of one frame (publisher thread)."""
        timer = self.pipeline.timer
        out_h, out_w = depth.size
        with timer.stage("publish"):
            info = camera_info_msg(header, depth.K, out_w, out_h, roi=depth.roi)
            self.pub_depth.publish(fill_image_msg(Image(header=header), depth.depth, "32FC1"))
            self.pub_depth_info.publish(info)
            if cfg.publish_colorized:
                self.pub_colorized.publish(fill_image_msg(Image(header=header), depth.colorized(), "bgr8"))
            # the colour frame registered to the depth (RGB-D consumers: rtabmap, nvblox), built only while wanted
            if self.pub_rgb.get_subscription_count() > 0 or self.pub_rgb_info.get_subscription_count() > 0:
                self.pub_rgb.publish(fill_image_msg(Image(header=header), depth.colour(), "rgb8"))
                self.pub_rgb_info.publish(info)
        # The cloud is lazy, as image_pipeline's point-cloud nodes are: built only while someone subscribes (about
        # 1-2 ms a frame otherwise). The colorized image costs 0.5 ms and is always published.
        if cfg.publish_points and self.pub_points.get_subscription_count() > 0:
            with timer.stage("points"):
                xyz, packed = depth.points(cfg.pipeline.points_stride, cfg.pipeline.points_rgb)
                cloud = build_cloud(header, xyz, packed)
            with timer.stage("publish"):
                self.pub_points.publish(cloud)

    def _publish_odometry(self, odometry: OdometryResult, stamp: TimeMsg, cfg: NodeConfig) -> None:
        for text in odometry.warnings:
            self.get_logger().warning(f"{self.image_topic}: {text}")
        step = odometry.step
        header = Header(stamp=stamp, frame_id=cfg.odom_frame)
        with self.pipeline.timer.stage("publish"):
            self.pub_odom.publish(odometry_msg(header, cfg.base_frame, step.T_odom_base, step.linear, step.angular,
                                               cfg.pose_covariance_diagonal, cfg.twist_covariance_diagonal))
            if cfg.publish_tf and self.pub_tf is not None:
                self.pub_tf.publish(TFMessage(transforms=[transform_msg(header, cfg.base_frame, step.T_odom_base)]))

    def _on_tf(self, msg: Any, static: bool) -> None:
        for t in msg.transforms:
            tr, q = t.transform.translation, t.transform.rotation
            self.tf_tree.add_pose(t.header.frame_id, t.child_frame_id, (tr.x, tr.y, tr.z), (q.x, q.y, q.z, q.w), static)

    def _settle_pending_mount(self) -> None:
        """Timer: decide the mount of the camera frame last seen once its wait is over, frames or not."""
        pending = self._mount_pending
        if pending is not None and pending != self._mount_settled_for:
            self._settle_camera_mount(pending)

    def _settle_camera_mount(self, camera_frame: str) -> None:
        """Decide, once per camera frame, where the camera's pose on the robot comes from and whether this node
        broadcasts it (publish_camera_mount). Frames before the decision use camera_mount.*. Called by the worker
        on a new camera frame and by the mount timer until decided."""
        with self._mount_lock:
            if camera_frame != self._mount_settled_for:
                self._decide_camera_mount(camera_frame)

    def _decide_camera_mount(self, camera_frame: str) -> None:
        cfg = self.cfg
        mode = cfg.publish_camera_mount
        parent = self.tf_tree.parent(camera_frame)
        ours = self._mount_published is not None and self._mount_published[0] == camera_frame
        if parent is not None and not ours:
            T = self.tf_tree.lookup(cfg.base_frame, camera_frame)
            if T is not None:
                before = self.pipeline.scale.mode
                self.pipeline.use_camera_mount(T, f"/tf ({cfg.base_frame} -> {camera_frame})")
                if self.pipeline.scale.mode != before:
                    self._log_scale(self.pipeline)
                self.get_logger().info(
                    f"camera pose from the robot's TF tree: {cfg.base_frame} -> {camera_frame} (its parent is {parent}): "
                    f"xyz {[round(float(v), 3) for v in T[:3, 3]]}; " + ("camera_mount.* is not published" if mode != "always"
                                                                  else "publish_camera_mount is 'always': publishing "
                                                                       "camera_mount.* too (a second parent!)"))
            else:
                self.get_logger().warning(
                    f"{camera_frame} has the parent {parent} on /tf, which is not connected to base_frame "
                    f"{cfg.base_frame}: odometry uses camera_mount.*, and the node publishes no mount of its own")
            if mode == "always":
                self._publish_mount(camera_frame)
            self._mount_settled_for = camera_frame
            return
        if mode == "never":
            self._mount_settled_for = camera_frame
            return
        # wait camera_mount_wait s from the start, or from when another /tf_static publisher (robot_state_publisher)
        # was discovered if that was later: its latched transforms arrive right after discovery
        now = time.monotonic()
        if self._tf_others_since is None and self.count_publishers("/tf_static") > (1 if self.pub_tf_static else 0):
            self._tf_others_since = now
        since = max(self._start, self._tf_others_since or self._start)
        if mode == "always" or now - since >= cfg.camera_mount_wait:
            self._publish_mount(camera_frame)
            self._mount_settled_for = camera_frame

    def _publish_mount(self, camera_frame: str) -> None:
        if self.pub_tf_static is None or (self._mount_published and self._mount_published[0] == camera_frame):
            return
        header = Header(stamp=self.get_clock().now().to_msg(), frame_id=self.cfg.base_frame)
        mount = self.pipeline.camera_mount
        self.pub_tf_static.publish(TFMessage(transforms=[transform_msg(header, camera_frame, mount)]))
        self._mount_published = (camera_frame, mount)
        self.get_logger().info(f"static transform {self.cfg.base_frame} -> {camera_frame} on /tf_static "
                               f"({self.pipeline.camera_mount_source}; nothing else gave {camera_frame} a parent)")

    def _check_mount_conflict(self) -> None:
        """Warn once when another publisher gives the camera frame a parent after this node broadcast its own."""
        if self._mount_published is None or self._mount_conflict_warned:
            return
        frame, T = self._mount_published
        if self.tf_tree.differs(frame, self.cfg.base_frame, T):
            self._mount_conflict_warned = True
            self.get_logger().warning(f"another node now gives {frame} the parent {self.tf_tree.parent(frame)} on /tf, besides this "
                                      f"node's {self.cfg.base_frame} -> {frame}: set publish_camera_mount: never (or "
                                      "auto, which waits camera_mount_wait seconds for it)")

    # ---------------------------------------------------------------- diagnostics
    def _publish_diagnostics(self) -> None:
        self._check_mount_conflict()
        if self.pub_diag is None:
            return
        pipeline = self.pipeline
        p = pipeline.cfg
        context = HealthContext(
            input_topic=self.image_topic, input_format=self._input_format, backend=pipeline.backend.describe(),
            precision=pipeline.backend.spec.precision, network_size=format_size(p.network_size),
            scale_mode=pipeline.scale.mode, scale_reason=pipeline.scale.reason, scale=pipeline.scale.scale,
            metric=pipeline.depth_is_metric, untrained=not p.checkpoint_dir, dropped_newer=self._slot.dropped,
            stages=pipeline.timer.means(), unrectified=self._unrectified or "", warmed_up=self._warmed)
        arr = DiagnosticArray()
        arr.header.stamp = self.get_clock().now().to_msg()
        # the node's full name, as diagnostic_updater names its tasks: two cameras' nodes stay apart
        name = self.get_fully_qualified_name().lstrip("/")
        arr.status = [diagnostic_status(f"{name}: {report.name}", pipeline.backend.describe(), report.level,
                                        report.message, report.values)
                      for report in self.health.statuses(time.monotonic(), context)]
        self.pub_diag.publish(arr)

    def destroy_node(self) -> None:
        self._running = False
        self._slot.close()
        if self._worker.is_alive():
            self._worker.join(timeout=5.0)
        self._publisher.shutdown(wait=True)
        self.pipeline.close()
        logging.getLogger("ros2_monodepth").removeHandler(self._log_handler)
        super().destroy_node()


def usage() -> str:
    """``monodepth_node --help``: topics and every parameter with its default and description."""
    from .params import PARAMS

    lines = [
        "usage: monodepth_node [--help] [--ros-args --params-file config/monodepth.yaml -p NAME:=VALUE -r FROM:=TO ...]",
        "",
        "Monocular depth, point cloud and visual odometry from one camera.",
        "",
        "subscribes: image (sensor_msgs/Image) or image/compressed, camera_info (sensor_msgs/CameraInfo),",
        "            /tf_static and /tf (where the camera sits on the robot)",
        "publishes:  depth/image (32FC1, m) + depth/camera_info, depth/colorized (bgr8), rgb/image (rgb8, registered",
        "            to the depth) + rgb/camera_info, points (PointCloud2), odom (nav_msgs/Odometry), /tf, /tf_static,",
        "            /diagnostics",
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

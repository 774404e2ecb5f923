"""``ros2-monodepth-synth``: render a synthetic street and write it as a ROS 2 bag with ground truth.

Owns the bag layout of generated data (all frames in the camera's optical frame, REP 103):

  /camera/image_raw              sensor_msgs/Image rgb8, bgr8 or mono8 (--encoding; /camera/image_raw/compressed with
                                 --compressed)
  /camera/camera_info            sensor_msgs/CameraInfo (plumb_bob, zero distortion)
  /camera/right/image_raw        (--stereo-baseline) the right camera, P[3] = -fx * baseline
  /camera/right/camera_info
  /ground_truth/depth            sensor_msgs/Image 32FC1, z-depth in metres, +inf where the ray hits sky
  /ground_truth/pose             geometry_msgs/PoseStamped, T_world_camera (frame_id ``world``)
  /ground_truth/moving_mask      sensor_msgs/Image mono8, 255 on the object that moves with the camera
  /odom                          (--odometry) nav_msgs/Odometry of base_link in odom at --odom-rate Hz, as a robot's
                                 wheel odometry or VIO gives it (with --odom-noise / --odom-drift), the same on /tf
                                 (odom -> base_link), and /tf_static base_link -> camera_optical_frame (the camera
                                 1.5 m up, looking along base x: the node's default camera_mount)

Deterministic from ``--seed``. Written with ``rosbags`` (no ROS runtime), Jazzy message definitions.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Tuple

import cv2
import numpy as np

from ros2_monodepth.core.geometry import matrix_to_quaternion
from ros2_monodepth.core.synthetic import SceneConfig, SyntheticSequence, TrajectoryConfig

IMAGE_TOPIC = "/camera/image_raw"
INFO_TOPIC = "/camera/camera_info"
RIGHT_IMAGE_TOPIC = "/camera/right/image_raw"
RIGHT_INFO_TOPIC = "/camera/right/camera_info"
DEPTH_TOPIC = "/ground_truth/depth"
POSE_TOPIC = "/ground_truth/pose"
MASK_TOPIC = "/ground_truth/moving_mask"
ODOM_TOPIC = "/odom"
CAMERA_FRAME = "camera_optical_frame"
WORLD_FRAME = "world"
ODOM_FRAME, BASE_FRAME = "odom", "base_link"


ENCODINGS = ("rgb8", "bgr8", "mono8")


def _encode(rgb: np.ndarray, encoding: str) -> np.ndarray:
    """A rendered RGB frame in the camera's encoding."""
    if encoding == "bgr8":
        return np.ascontiguousarray(rgb[..., ::-1])
    if encoding == "mono8":
        return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    if encoding != "rgb8":
        raise ValueError(f"encoding must be one of {ENCODINGS}, got {encoding!r}")
    return rgb


@dataclass
class SynthConfig:
    out: Path
    frames: int = 300
    width: int = 320
    height: int = 96
    fps: float = 10.0
    seed: int = 0
    speed: float = 1.0
    moving_object: bool = False
    still: Tuple[Tuple[int, int], ...] = ()
    stereo_baseline: float = 0.0
    compressed: bool = False
    storage: str = "mcap"
    start_stamp: float = 1_700_000_000.0
    depth: bool = True                 # write /ground_truth/depth
    odometry: bool = False             # write /odom (nav_msgs/Odometry) and /tf_static base_link -> camera
    odom_rate: float = 50.0            # Hz
    odom_noise: float = 0.0            # m: std of each increment's position error (random walk)
    odom_drift: float = 0.0            # fraction: scale error of the travelled distance (0.02: 2 % too long)
    yaw_amplitude: float = 0.06        # rad: how much the camera turns while it weaves along the street
    lateral_amplitude: float = 0.8     # m: how far it weaves
    encoding: str = "rgb8"             # camera encoding: rgb8, bgr8 or mono8 (grey, as many machine-vision cameras)


class _Messages:
    """Builds rosbags message objects from numpy arrays (Jazzy typestore)."""

    def __init__(self):
        from rosbags.typesys import Stores, get_typestore

        self.store = get_typestore(Stores.ROS2_JAZZY)
        self.t = self.store.types

    def header(self, stamp: float, frame_id: str):
        sec = int(np.floor(stamp))
        nsec = int(round((stamp - sec) * 1e9))
        if nsec >= 1_000_000_000:
            sec, nsec = sec + 1, nsec - 1_000_000_000
        return self.t["std_msgs/msg/Header"](stamp=self.t["builtin_interfaces/msg/Time"](sec=sec, nanosec=nsec),
                                             frame_id=frame_id)

    def image(self, stamp: float, frame_id: str, array: np.ndarray, encoding: str):
        array = np.ascontiguousarray(array)
        h, w = array.shape[:2]
        return self.t["sensor_msgs/msg/Image"](header=self.header(stamp, frame_id), height=h, width=w,
                                               encoding=encoding, is_bigendian=0, step=array.strides[0],
                                               data=array.view(np.uint8).reshape(-1))

    def compressed(self, stamp: float, frame_id: str, rgb: np.ndarray):
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
        assert ok
        return self.t["sensor_msgs/msg/CompressedImage"](header=self.header(stamp, frame_id), format="jpeg",
                                                         data=buf.reshape(-1))

    def camera_info(self, stamp: float, frame_id: str, K: np.ndarray, width: int, height: int, tx: float = 0.0):
        P = np.zeros((3, 4))
        P[:3, :3] = K
        P[0, 3] = tx
        return self.t["sensor_msgs/msg/CameraInfo"](
            header=self.header(stamp, frame_id), height=height, width=width, distortion_model="plumb_bob",
            d=np.zeros(5), k=K.reshape(-1).astype(np.float64), r=np.eye(3).reshape(-1), p=P.reshape(-1),
            binning_x=0, binning_y=0,
            roi=self.t["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False))

    def odometry(self, stamp: float, T: np.ndarray, twist_linear: np.ndarray):
        q = matrix_to_quaternion(T[:3, :3])
        g = self.t
        pose = g["geometry_msgs/msg/Pose"](position=g["geometry_msgs/msg/Point"](x=T[0, 3], y=T[1, 3], z=T[2, 3]),
                                           orientation=g["geometry_msgs/msg/Quaternion"](x=q[0], y=q[1], z=q[2], w=q[3]))
        twist = g["geometry_msgs/msg/Twist"](
            linear=g["geometry_msgs/msg/Vector3"](x=twist_linear[0], y=twist_linear[1], z=twist_linear[2]),
            angular=g["geometry_msgs/msg/Vector3"](x=0.0, y=0.0, z=0.0))
        return g["nav_msgs/msg/Odometry"](
            header=self.header(stamp, ODOM_FRAME), child_frame_id=BASE_FRAME,
            pose=g["geometry_msgs/msg/PoseWithCovariance"](pose=pose, covariance=np.diag([0.01] * 6).reshape(-1)),
            twist=g["geometry_msgs/msg/TwistWithCovariance"](twist=twist, covariance=np.diag([0.05] * 6).reshape(-1)))

    def static_tf(self, stamp: float, parent: str, child: str, T: np.ndarray):
        """A TFMessage with one transform (for /tf_static, and for /tf as well)."""
        q = matrix_to_quaternion(T[:3, :3])
        g = self.t
        tf = g["geometry_msgs/msg/TransformStamped"](
            header=self.header(stamp, parent), child_frame_id=child,
            transform=g["geometry_msgs/msg/Transform"](
                translation=g["geometry_msgs/msg/Vector3"](x=T[0, 3], y=T[1, 3], z=T[2, 3]),
                rotation=g["geometry_msgs/msg/Quaternion"](x=q[0], y=q[1], z=q[2], w=q[3])))
        return g["tf2_msgs/msg/TFMessage"](transforms=[tf])

    def pose(self, stamp: float, T: np.ndarray):
        q = matrix_to_quaternion(T[:3, :3])  # x, y, z, w
        g = self.t
        return g["geometry_msgs/msg/PoseStamped"](
            header=self.header(stamp, WORLD_FRAME),
            pose=g["geometry_msgs/msg/Pose"](position=g["geometry_msgs/msg/Point"](x=T[0, 3], y=T[1, 3], z=T[2, 3]),
                                            orientation=g["geometry_msgs/msg/Quaternion"](x=q[0], y=q[1], z=q[2], w=q[3])))


def write_synthetic_bag(cfg: SynthConfig, progress: bool = True) -> Path:
    """Render ``cfg.frames`` frames and write the bag to ``cfg.out`` (replaced if it exists). Returns the path."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    from tqdm import tqdm

    traj = TrajectoryConfig(num_frames=cfg.frames, fps=cfg.fps, speed=cfg.speed, still_segments=tuple(cfg.still),
                            start_stamp=cfg.start_stamp, yaw_amplitude=cfg.yaw_amplitude,
                            lateral_amplitude=cfg.lateral_amplitude)
    # a street long enough for the whole drive (plus what the camera sees ahead), as densely furnished as the default
    length = max(200.0, 2.0 + cfg.speed * cfg.frames / cfg.fps + 130.0)
    scene = SceneConfig(seed=cfg.seed, moving_object=cfg.moving_object, length=length, num_boxes=int(24 * length / 200))
    seq = SyntheticSequence(scene, traj, cfg.width, cfg.height)
    K = seq.K
    m = _Messages()
    out = Path(cfg.out)
    if out.exists():
        shutil.rmtree(out)
    plugin = StoragePlugin.MCAP if cfg.storage == "mcap" else StoragePlugin.SQLITE3
    image_type = "sensor_msgs/msg/CompressedImage" if cfg.compressed else "sensor_msgs/msg/Image"
    image_topic = IMAGE_TOPIC + "/compressed" if cfg.compressed else IMAGE_TOPIC
    with Writer(out, version=8, storage_plugin=plugin) as w:
        def conn(topic: str, msgtype: str):
            return w.add_connection(topic, msgtype, typestore=m.store)

        c_img, c_info = conn(image_topic, image_type), conn(INFO_TOPIC, "sensor_msgs/msg/CameraInfo")
        c_depth = conn(DEPTH_TOPIC, "sensor_msgs/msg/Image") if cfg.depth else None
        c_pose = conn(POSE_TOPIC, "geometry_msgs/msg/PoseStamped")
        c_mask = conn(MASK_TOPIC, "sensor_msgs/msg/Image") if cfg.moving_object else None
        stereo = cfg.stereo_baseline > 0
        if stereo:
            c_rimg, c_rinfo = conn(RIGHT_IMAGE_TOPIC, "sensor_msgs/msg/Image"), conn(RIGHT_INFO_TOPIC, "sensor_msgs/msg/CameraInfo")

        def put(c, stamp: float, msg, msgtype: str) -> None:
            w.write(c, int(round(stamp * 1e9)), m.store.serialize_cdr(msg, msgtype))

        for i in tqdm(range(len(seq)), desc="rendering", unit="frame", disable=not progress):
            stamp, rgb, depth, T_world_cam, mask = seq.frame(i)
            if cfg.compressed:
                put(c_img, stamp, m.compressed(stamp, CAMERA_FRAME, rgb), image_type)
            else:
                put(c_img, stamp, m.image(stamp, CAMERA_FRAME, _encode(rgb, cfg.encoding), cfg.encoding), image_type)
            put(c_info, stamp, m.camera_info(stamp, CAMERA_FRAME, K, cfg.width, cfg.height), "sensor_msgs/msg/CameraInfo")
            if c_depth is not None:
                put(c_depth, stamp, m.image(stamp, CAMERA_FRAME, depth.astype(np.float32), "32FC1"), "sensor_msgs/msg/Image")
            put(c_pose, stamp, m.pose(stamp, T_world_cam), "geometry_msgs/msg/PoseStamped")
            if c_mask is not None:
                put(c_mask, stamp, m.image(stamp, CAMERA_FRAME, mask.astype(np.uint8) * 255, "mono8"), "sensor_msgs/msg/Image")
            if stereo:
                # right camera: same orientation, displaced +baseline along the optical x axis
                T_right = T_world_cam.copy()
                T_right[:3, 3] += T_world_cam[:3, 0] * cfg.stereo_baseline
                rgb_r, _, _ = seq.scene.render(T_right, K, cfg.width, cfg.height)
                right_frame = "camera_right_optical_frame"
                put(c_rimg, stamp, m.image(stamp, right_frame, rgb_r, "rgb8"), "sensor_msgs/msg/Image")
                put(c_rinfo, stamp, m.camera_info(stamp, right_frame, K, cfg.width, cfg.height,
                                                  tx=-K[0, 0] * cfg.stereo_baseline), "sensor_msgs/msg/CameraInfo")
        if cfg.odometry:
            c_odom = conn(ODOM_TOPIC, "nav_msgs/msg/Odometry")
            c_tf = w.add_connection("/tf_static", "tf2_msgs/msg/TFMessage", typestore=m.store,
                                    offered_qos_profiles=[_latched_qos()])
            put(c_tf, cfg.start_stamp, m.static_tf(cfg.start_stamp, BASE_FRAME, CAMERA_FRAME, ROBOT_CAMERA_MOUNT),
                "tf2_msgs/msg/TFMessage")
            c_tf_dynamic = conn("/tf", "tf2_msgs/msg/TFMessage")
            for stamp, T, v in odometry_track(cfg):
                put(c_odom, stamp, m.odometry(stamp, T, v), "nav_msgs/msg/Odometry")
                put(c_tf_dynamic, stamp, m.static_tf(stamp, ODOM_FRAME, BASE_FRAME, T), "tf2_msgs/msg/TFMessage")
    return out


# The synthetic robot: base_link on the ground, the camera's optical frame 1.5 m above it looking along base x (the
# node's default camera_mount.*).
ROBOT_CAMERA_MOUNT = np.eye(4)
ROBOT_CAMERA_MOUNT[:3, :3] = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
ROBOT_CAMERA_MOUNT[:3, 3] = [0.0, 0.0, 1.5]
def _latched_qos():
    """/tf_static's QoS (reliable, transient local, depth 1), recorded so that playback latches it as tf2 expects."""
    from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime

    never = QosTime(sec=2147483647, nsec=4294967295)
    return Qos(QosHistory.KEEP_LAST, 1, QosReliability.RELIABLE, QosDurability.TRANSIENT_LOCAL, never, never,
               QosLiveliness.AUTOMATIC, never, False)


def odometry_track(cfg: SynthConfig):
    """(stamp, T_odom_base, linear velocity in base) at ``odom_rate``: the camera's true motion brought to base_link
    through the mount, as increments integrated with a scale error (``odom_drift``) and a random walk (``odom_noise``),
    starting at the identity as a robot's odometry does."""
    from ros2_monodepth.core.geometry import se3_inverse
    from ros2_monodepth.core.synthetic import camera_trajectory

    ratio = cfg.odom_rate / cfg.fps
    n = int(round((cfg.frames - 1) * ratio)) + 1
    traj = TrajectoryConfig(num_frames=n, fps=cfg.odom_rate, speed=cfg.speed, start_stamp=cfg.start_stamp,
                            still_segments=tuple((int(round(a * ratio)), int(round(b * ratio))) for a, b in cfg.still),
                            yaw_amplitude=cfg.yaw_amplitude, lateral_amplitude=cfg.lateral_amplitude)
    stamps, cams = camera_trajectory(traj)
    rng = np.random.default_rng(cfg.seed + 1000)
    inv_mount = se3_inverse(ROBOT_CAMERA_MOUNT)
    bases = [T @ inv_mount for T in cams]
    T_odom = np.eye(4)
    out = []
    for k in range(n):
        if k:
            step = se3_inverse(bases[k - 1]) @ bases[k]
            step[:3, 3] *= 1.0 + cfg.odom_drift
            if cfg.odom_noise > 0 and np.linalg.norm(step[:3, 3]) > 0:
                step[:3, 3] += rng.normal(0.0, cfg.odom_noise, 3) * [1, 1, 0]
            T_odom = T_odom @ step
            v = step[:3, 3] * cfg.odom_rate
        else:
            v = np.zeros(3)
        out.append((float(stamps[k]), T_odom.copy(), v))
    return out


def _still(text: str) -> Tuple[int, int]:
    try:
        a, b = (int(v) for v in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--still wants FIRST:LAST frame numbers, got '{text}'")
    if not 0 <= a <= b:
        raise argparse.ArgumentTypeError(f"--still wants 0 <= FIRST <= LAST, got '{text}'")
    return a, b


def parse_args(argv: Optional[Sequence[str]]) -> SynthConfig:
    p = argparse.ArgumentParser(
        prog="ros2-monodepth-synth",
        description="Render a textured synthetic street seen by a moving camera and write a ROS 2 bag with "
                    "image, camera_info, ground-truth depth (32FC1) and ground-truth pose. Deterministic from --seed.")
    p.add_argument("out", help="bag folder to write (replaced if it exists)")
    p.add_argument("--frames", type=int, default=300, help="number of frames (default: %(default)s)")
    p.add_argument("--width", type=int, default=320, help="image width (default: %(default)s)")
    p.add_argument("--height", type=int, default=96, help="image height (default: %(default)s)")
    p.add_argument("--fps", type=float, default=10.0, help="frame rate in Hz (default: %(default)s)")
    p.add_argument("--speed", type=float, default=1.0, help="camera speed in m/s (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="scene seed (default: %(default)s)")
    p.add_argument("--moving-object", action="store_true",
                   help="add a box that moves with the camera (a car ahead at the same speed) and a "
                        f"{MASK_TOPIC} topic marking its pixels")
    p.add_argument("--still", type=_still, action="append", default=[], metavar="FIRST:LAST",
                   help="frames (inclusive) where the camera stands still; repeatable")
    p.add_argument("--stereo-baseline", type=float, default=0.0, metavar="METRES",
                   help="also write a right camera this far to the right (default: off)")
    p.add_argument("--compressed", action="store_true", help="write the camera as CompressedImage (jpeg)")
    p.add_argument("--encoding", choices=ENCODINGS, default="rgb8", help="raw camera encoding (default: %(default)s)")
    p.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap", help="bag storage (default: %(default)s)")
    p.add_argument("--no-depth", action="store_true", help=f"no {DEPTH_TOPIC} (as a real recording: poses, no depth)")
    p.add_argument("--odometry", action="store_true",
                   help=f"also write the robot's odometry ({ODOM_TOPIC}, nav_msgs/Odometry of {BASE_FRAME}) and its camera "
                        f"mount (/tf_static {BASE_FRAME} -> {CAMERA_FRAME})")
    p.add_argument("--odom-rate", type=float, default=50.0, help="odometry rate in Hz (default: %(default)s)")
    p.add_argument("--odom-noise", type=float, default=0.0, metavar="METRES",
                   help="std of each odometry increment's position error, a random walk (default: %(default)s)")
    p.add_argument("--odom-drift", type=float, default=0.0, metavar="FRACTION",
                   help="scale error of the odometry's distances, e.g. 0.02 for 2 %% too long (default: %(default)s)")
    p.add_argument("--turns", type=float, default=0.06, metavar="RAD",
                   help="how far the camera turns left and right as it weaves along the street (default: %(default)s)")
    p.add_argument("--weave", type=float, default=0.8, metavar="METRES",
                   help="how far it weaves sideways (default: %(default)s)")
    a = p.parse_args(argv)
    if a.frames < 1 or a.width < 8 or a.height < 8 or a.fps <= 0:
        p.error("--frames must be >= 1, --width/--height >= 8 and --fps > 0")
    if any(b >= a.frames for _, b in a.still):
        p.error(f"--still ranges must end before frame {a.frames}")
    return SynthConfig(Path(a.out), a.frames, a.width, a.height, a.fps, a.seed, a.speed, a.moving_object,
                       tuple(a.still), a.stereo_baseline, a.compressed, a.storage, depth=not a.no_depth,
                       odometry=a.odometry, odom_rate=a.odom_rate, odom_noise=a.odom_noise, odom_drift=a.odom_drift,
                       yaw_amplitude=a.turns, lateral_amplitude=a.weave, encoding=a.encoding)


def main(argv: Optional[Sequence[str]] = None) -> int:
    import time

    cfg = parse_args(argv)
    t0 = time.perf_counter()
    out = write_synthetic_bag(cfg, progress=sys.stderr.isatty())
    print(f"wrote {cfg.frames} frames at {cfg.width}x{cfg.height} to {out} in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

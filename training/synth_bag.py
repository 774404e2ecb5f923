"""``ros2-monodepth-synth``: render a synthetic street and write it as a ROS 2 bag with ground truth.

Owns the bag layout of generated data (all frames in the camera's optical frame, REP 103):

  /camera/image_raw              sensor_msgs/Image rgb8 (or /camera/image_raw/compressed, --compressed)
  /camera/camera_info            sensor_msgs/CameraInfo (plumb_bob, zero distortion)
  /camera/right/image_raw        (--stereo-baseline) the right camera, P[3] = -fx * baseline
  /camera/right/camera_info
  /ground_truth/depth            sensor_msgs/Image 32FC1, z-depth in metres, +inf where the ray hits sky
  /ground_truth/pose             geometry_msgs/PoseStamped, T_world_camera (frame_id ``world``)
  /ground_truth/moving_mask      sensor_msgs/Image mono8, 255 on the object that moves with the camera

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
CAMERA_FRAME = "camera_optical_frame"
WORLD_FRAME = "world"


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

    scene = SceneConfig(seed=cfg.seed, moving_object=cfg.moving_object)
    traj = TrajectoryConfig(num_frames=cfg.frames, fps=cfg.fps, speed=cfg.speed, still_segments=tuple(cfg.still),
                            start_stamp=cfg.start_stamp)
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
        c_depth, c_pose = conn(DEPTH_TOPIC, "sensor_msgs/msg/Image"), conn(POSE_TOPIC, "geometry_msgs/msg/PoseStamped")
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
                put(c_img, stamp, m.image(stamp, CAMERA_FRAME, rgb, "rgb8"), image_type)
            put(c_info, stamp, m.camera_info(stamp, CAMERA_FRAME, K, cfg.width, cfg.height), "sensor_msgs/msg/CameraInfo")
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
    p.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap", help="bag storage (default: %(default)s)")
    a = p.parse_args(argv)
    if a.frames < 1 or a.width < 8 or a.height < 8 or a.fps <= 0:
        p.error("--frames must be >= 1, --width/--height >= 8 and --fps > 0")
    if any(b >= a.frames for _, b in a.still):
        p.error(f"--still ranges must end before frame {a.frames}")
    return SynthConfig(Path(a.out), a.frames, a.width, a.height, a.fps, a.seed, a.speed, a.moving_object,
                       tuple(a.still), a.stereo_baseline, a.compressed, a.storage)


def main(argv: Optional[Sequence[str]] = None) -> int:
    import time

    cfg = parse_args(argv)
    t0 = time.perf_counter()
    out = write_synthetic_bag(cfg, progress=sys.stderr.isatty())
    print(f"wrote {cfg.frames} frames at {cfg.width}x{cfg.height} to {out} in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

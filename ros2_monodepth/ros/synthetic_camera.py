"""``synthetic_camera``: a camera driver stand-in that publishes a rendered street scene.

Publishes ``image`` (sensor_msgs/Image rgb8, or ``image/compressed`` jpeg) and ``camera_info`` at a fixed
rate from ``core.synthetic``, so the node can be tried without a camera. Frames are rendered once up
front (``num_frames``) and then looped with advancing stamps; on each loop the trajectory is replayed, which
the odometry sees as a jump (by design: it shows the chain restart).
"""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional, Sequence

import cv2
import numpy as np
import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header

from ..cli_help import HelpFormatter
from ..core.synthetic import SceneConfig, SyntheticSequence, TrajectoryConfig
from .image_messages import fill_image_msg
from .messages import camera_info_msg


def render_frames(width: int, height: int, count: int, seed: int, moving_object: bool = False) -> SyntheticSequence:
    return SyntheticSequence(SceneConfig(seed=seed, moving_object=moving_object),
                             TrajectoryConfig(num_frames=count, fps=10.0), width, height)


class SyntheticCamera(Node):
    def __init__(self, width: int, height: int, num_frames: int, rate: float, seed: int, encoding: str,
                 compressed: bool, frame_id: str = "camera_optical_frame", loops: int = 0):
        super().__init__("synthetic_camera")
        self.seq = render_frames(width, height, num_frames, seed)
        self.get_logger().info(f"rendering {num_frames} frames at {width}x{height}")
        self.images: List[np.ndarray] = [self.seq.frame(i)[1] for i in range(num_frames)]
        self.encoding, self.compressed, self.frame_id, self.loops = encoding, compressed, frame_id, loops
        self.pub_image = (self.create_publisher(CompressedImage, "image/compressed", qos_profile_sensor_data) if compressed
                          else self.create_publisher(Image, "image", qos_profile_sensor_data))
        self.pub_info = self.create_publisher(CameraInfo, "camera_info", qos_profile_sensor_data)
        self.index = 0
        self.sent = 0
        self.start = self.get_clock().now()
        self.timer = self.create_timer(1.0 / rate, self._tick)

    def _tick(self) -> None:
        i = self.index % len(self.images)
        if self.loops and self.index >= self.loops * len(self.images):
            self.timer.cancel()
            self.get_logger().info(f"sent {self.sent} frames, done")
            raise SystemExit(0)
        header = Header(stamp=self.get_clock().now().to_msg(), frame_id=self.frame_id)
        rgb = self.images[i]
        if self.compressed:
            ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
            msg = CompressedImage(header=header, format="jpeg")
            msg.data = buf.tobytes()
        else:
            img = rgb if self.encoding == "rgb8" else cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
            msg = fill_image_msg(Image(header=header), img, self.encoding)
        self.pub_info.publish(camera_info_msg(header, self.seq.K, self.seq.width, self.seq.height))
        self.pub_image.publish(msg)
        self.index += 1
        self.sent += 1


def main(argv: Optional[Sequence[str]] = None) -> int:
    args_in = list(sys.argv[1:] if argv is None else argv)
    ros_args = []
    if "--ros-args" in args_in:
        k = args_in.index("--ros-args")
        args_in, ros_args = args_in[:k], args_in[k:]
    p = argparse.ArgumentParser(prog="synthetic_camera", description=__doc__.split("\n\n")[0],
                                formatter_class=HelpFormatter)
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--frames", type=int, default=60, help="distinct frames rendered (then looped)")
    p.add_argument("--rate", type=float, default=10.0, help="publish rate, Hz")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--encoding", choices=["rgb8", "bgr8"], default="rgb8")
    p.add_argument("--compressed", action="store_true", help="publish image/compressed (jpeg) instead of image")
    p.add_argument("--loops", type=int, default=0, help="stop after this many passes (0 = forever)")
    p.add_argument("--frame-id", default="camera_optical_frame")
    args = p.parse_args(args_in)
    rclpy.init(args=["synthetic_camera"] + ros_args)
    node = SyntheticCamera(args.width, args.height, args.frames, args.rate, args.seed, args.encoding,
                           args.compressed, args.frame_id, args.loops)
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, SystemExit, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())

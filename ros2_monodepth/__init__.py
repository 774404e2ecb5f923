"""ros2_monodepth: self-supervised monocular depth, point clouds and visual odometry for ROS 2.

Layers:
  * ``ros2_monodepth.core``  networks, geometry, scale, odometry, inference backends (no ROS imports);
  * ``ros2_monodepth.ros``   the thin ROS 2 adapter: message conversions, parameters, the node;
  * ``ros2_monodepth_training`` (folder ``training/``) offline self-supervised training from bags.
"""

__version__ = "0.1.0"

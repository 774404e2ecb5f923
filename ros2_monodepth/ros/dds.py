"""The Fast DDS profile for large messages: which file, for the launch file and the package's commands.

Fast DDS moves messages between processes on one machine through a shared-memory segment per process, 512 KB by
default: smaller than one frame of this node's output. ``config/fastdds_large_messages.xml`` gives it 16 MB;
its ``_localhost`` twin keeps UDP on 127.0.0.1 for ``ROS_LOCALHOST_ONLY=1`` (Humble), where an unrestricted UDP
transport would undo what that variable asks of rmw_fastrtps. No rclpy import: the launch file uses this.
"""

from __future__ import annotations

import os
from pathlib import Path

FASTDDS_PROFILE_ENV = "FASTRTPS_DEFAULT_PROFILES_FILE"   # the name Fast DDS 2.x (Humble, Jazzy) reads


def config_file(name: str) -> str:
    """config/<name> of this checkout, else the installed package's share/ros2_monodepth/config/<name>."""
    here = Path(__file__).resolve().parents[2] / "config" / name
    if here.is_file():
        return str(here)
    from ament_index_python.packages import get_package_share_directory

    return os.path.join(get_package_share_directory("ros2_monodepth"), "config", name)


def large_message_dds_profile() -> str:
    """config/fastdds_large_messages.xml, or its loopback-only twin when ROS_LOCALHOST_ONLY=1."""
    if os.environ.get("ROS_LOCALHOST_ONLY") == "1":
        return config_file("fastdds_large_messages_localhost.xml")
    return config_file("fastdds_large_messages.xml")

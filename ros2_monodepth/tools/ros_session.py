"""What every command of this package that starts ROS processes shares: loopback-only discovery with a
ROS_DOMAIN_ID of its own, and the node's parameter file."""

from __future__ import annotations

import os
from pathlib import Path


def force_loopback_env() -> None:
    """Keep DDS discovery on this machine (also for child processes) and pick a domain unless one is set."""
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    if os.environ.get("ROS_DISTRO") == "humble":
        os.environ["ROS_LOCALHOST_ONLY"] = "1"
    os.environ.setdefault("ROS_DOMAIN_ID", str(5 + os.getpid() % 90))


def params_file() -> str:
    """config/monodepth.yaml of this checkout, else the installed package's."""
    here = Path(__file__).resolve().parents[2] / "config" / "monodepth.yaml"
    if here.is_file():
        return str(here)
    from ament_index_python.packages import get_package_share_directory

    return os.path.join(get_package_share_directory("ros2_monodepth"), "config", "monodepth.yaml")

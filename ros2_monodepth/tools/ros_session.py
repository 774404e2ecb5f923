"""What every command of this package that starts ROS processes shares: loopback-only discovery with a
ROS_DOMAIN_ID of its own, the Fast DDS profile for large messages, and the node's parameter file."""

from __future__ import annotations

import os
from pathlib import Path


def force_loopback_env() -> None:
    """Keep DDS discovery on this machine (also for child processes) and pick a domain unless one is set."""
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    if os.environ.get("ROS_DISTRO") == "humble":
        os.environ["ROS_LOCALHOST_ONLY"] = "1"
    os.environ.setdefault("ROS_DOMAIN_ID", str(5 + os.getpid() % 90))


FASTDDS_PROFILE_ENV = "FASTRTPS_DEFAULT_PROFILES_FILE"   # the name Fast DDS 2.x (Humble, Jazzy) reads


def large_message_dds_profile() -> str:
    """config/fastdds_large_messages.xml, or its loopback-only twin when ROS_LOCALHOST_ONLY=1 (a profile with
    an unrestricted UDP transport would undo what that variable asks of rmw_fastrtps)."""
    if os.environ.get("ROS_LOCALHOST_ONLY") == "1":
        return config_file("fastdds_large_messages_localhost.xml")
    return config_file("fastdds_large_messages.xml")


def use_large_message_dds_profile() -> str:
    """Point Fast DDS at the large-message profile (a 16 MB shared-memory segment; the default 512 KB is
    smaller than one frame of the node's output) for this process and its children, unless the user has a
    profile of their own. Call after ``force_loopback_env``. Returns the profile in effect."""
    if not os.environ.get(FASTDDS_PROFILE_ENV):
        os.environ[FASTDDS_PROFILE_ENV] = large_message_dds_profile()
    return os.environ[FASTDDS_PROFILE_ENV]


def config_file(name: str) -> str:
    """config/<name> of this checkout, else the installed package's."""
    here = Path(__file__).resolve().parents[2] / "config" / name
    if here.is_file():
        return str(here)
    from ament_index_python.packages import get_package_share_directory

    return os.path.join(get_package_share_directory("ros2_monodepth"), "config", name)


def params_file() -> str:
    """The node's parameter file, config/monodepth.yaml."""
    return config_file("monodepth.yaml")

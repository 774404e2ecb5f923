"""Test set-up: DDS discovery on loopback only and a ROS domain per test session, enforced here (before any
test imports rclpy) rather than left to whoever runs pytest."""

import os

os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
if os.environ.get("ROS_DISTRO") == "humble":
    os.environ["ROS_LOCALHOST_ONLY"] = "1"  # Humble's spelling; Jazzy warns that it is deprecated
if not os.environ.get("ROS_DOMAIN_ID"):
    os.environ["ROS_DOMAIN_ID"] = str(5 + os.getpid() % 90)

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def ros_context():
    """rclpy initialised once for the session; yields a helper node for publishers and subscriptions."""
    rclpy = pytest.importorskip("rclpy")
    rclpy.init()
    node = rclpy.create_node("ros2_monodepth_test_probe")
    yield node
    node.destroy_node()
    rclpy.try_shutdown()

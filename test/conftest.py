"""Test set-up: DDS discovery on loopback only and a ROS domain per test session, applied here (before any test
imports rclpy) by the project's one rule (``ros2_monodepth.tools.ros_session.loopback_env``) rather than left to
whoever runs pytest."""

from ros2_monodepth.tools.ros_session import loopback_env

loopback_env()

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

"""The launch file through the real launch / launch_ros API: with a namespace, sim time, a log level and the robot's
own /tf_static, the node publishes depth/image + depth/camera_info of the same size in the namespace, takes its
clock from /clock, puts no second parent on the camera frame, and the Fast DDS profile variable reaches the node's
process only.

launch and launch_ros come with a ROS install (they are not on PyPI): where they are not importable, or the package
is not installed in an ament index (``colcon build`` and ``source install/setup.bash``), these tests are skipped with
that reason. In CI they are; they were run against the Jazzy sources of ros2/launch and ros2/launch_ros (README)."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

launch = pytest.importorskip("launch", reason="launch is not importable (it comes with a ROS install, not from PyPI)")
pytest.importorskip("launch_ros", reason="launch_ros is not importable (it comes with a ROS install, not from PyPI)")
rclpy = pytest.importorskip("rclpy")


def _installed() -> bool:
    try:
        from ament_index_python.packages import get_package_prefix

        prefix = get_package_prefix("ros2_monodepth")
    except Exception:
        return False
    return os.path.isfile(os.path.join(prefix, "lib", "ros2_monodepth", "monodepth_node"))


pytestmark = [pytest.mark.ros, pytest.mark.skipif(not _installed(), reason="ros2_monodepth is not installed in an ament "
                                                 "index: colcon build, then source install/setup.bash")]

RUN_LAUNCH = textwrap.dedent("""
    import os, sys
    from ament_index_python.packages import get_package_share_directory
    from launch import LaunchDescription, LaunchService
    from launch.actions import ExecuteProcess, IncludeLaunchDescription, RegisterEventHandler
    from launch.event_handlers import OnProcessExit
    from launch.launch_description_sources import PythonLaunchDescriptionSource

    share = get_package_share_directory("ros2_monodepth")
    include = IncludeLaunchDescription(PythonLaunchDescriptionSource(os.path.join(share, "launch", "monodepth.launch.py")),
                                       launch_arguments=dict(a.split(":=", 1) for a in sys.argv[1:]).items())
    # a process started after the include: its environment must not carry the node's DDS profile
    probe = ExecuteProcess(cmd=[sys.executable, "-c", "import os; print('PROBE_PROFILE=' + os.environ.get('FASTRTPS_DEFAULT_PROFILES_FILE', '<unset>'))"],
                           output="screen")
    service = LaunchService()
    service.include_launch_description(LaunchDescription([include, probe]))
    sys.exit(service.run())
""")


def test_launch_file_runs_the_node_with_namespace_sim_time_log_level_and_the_robots_tf(tmp_path, ros_context):
    from builtin_interfaces.msg import Time
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import CameraInfo, Image
    from std_msgs.msg import Header
    from tf2_msgs.msg import TFMessage

    from ros2_monodepth.core.synthetic import SyntheticSequence
    from ros2_monodepth.ros.image_messages import fill_image_msg
    from ros2_monodepth.ros.messages import camera_info_msg
    from ros_harness import Collector
    from test_node import _static_transform

    reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    static_qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    tf_static = ros_context.create_publisher(TFMessage, "/tf_static", static_qos)
    tf_static.publish(TFMessage(transforms=[
        _static_transform("base_link", "launch_cam_link", (0.2, 0.0, 1.0), (0.0, 0.0, 0.0)),
        _static_transform("launch_cam_link", "launch_cam_optical", (0.0, 0.0, 0.0), (-math.pi / 2, 0.0, -math.pi / 2))]))
    clock = ros_context.create_publisher(Clock, "/clock", 10)
    pub_img = ros_context.create_publisher(Image, "/cam/image_raw", reliable)
    pub_info = ros_context.create_publisher(CameraInfo, "/cam/camera_info", reliable)
    ns = "/robot1"
    col = Collector(ros_context, {f"{ns}/depth/image": Image, f"{ns}/depth/camera_info": CameraInfo,
                                  "/diagnostics": DiagnosticArray, "/tf_static": TFMessage}, transient=("/tf_static",))
    params = tmp_path / "params.yaml"
    params.write_text("/**:\n  ros__parameters:\n    backend: torch\n    precision: fp32\n    network_size: 128x64\n"
                      "    input_qos: reliable\n    camera_mount_wait: 1.0\n    max_stamp_lead: 0.0\n")
    log = open(tmp_path / "launch.log", "w")
    env = {k: v for k, v in os.environ.items() if k != "FASTRTPS_DEFAULT_PROFILES_FILE"}
    proc = subprocess.Popen([sys.executable, "-c", RUN_LAUNCH, "namespace:=robot1", "use_sim_time:=true", "log_level:=debug",
                             f"params_file:={params}", "image:=/cam/image_raw", "camera_info:=/cam/camera_info"],
                            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    text = lambda: (tmp_path / "launch.log").read_text()  # noqa: E731
    try:
        seq = SyntheticSequence(width=160, height=120)
        image, sim_t = seq.frame(1)[1], 1000.0

        def publish_frame_at(t: float) -> None:
            """Simulated time first (use_sim_time), then the frame stamped with it; half a second passes."""
            clock.publish(Clock(clock=Time(sec=int(t))))
            header = Header(stamp=Time(sec=int(t)), frame_id="launch_cam_optical")
            pub_info.publish(camera_info_msg(header, seq.K, 160, 120))
            pub_img.publish(fill_image_msg(Image(header=header), image, "rgb8"))
            col.spin_until(lambda: False, 0.5)

        deadline = time.time() + 120
        while time.time() < deadline and not any(s.name.endswith(": outputs") for a in col.messages["/diagnostics"] for s in a.status):
            publish_frame_at(sim_t)
            sim_t += 0.5
            assert proc.poll() is None, text()
        for i in range(6):
            publish_frame_at(sim_t)
            sim_t += 0.5
        depth, info = col.messages[f"{ns}/depth/image"], col.messages[f"{ns}/depth/camera_info"]
        assert depth and info, text()
        assert (depth[-1].width, depth[-1].height) == (info[-1].width, info[-1].height) == (128, 64)
        # sim time: the node's clock is /clock (its diagnostics are stamped with it, not with wall time)
        stamps = [a.header.stamp.sec for a in col.messages["/diagnostics"] if any(s.name.endswith(": outputs") for s in a.status)]
        assert stamps and 900 < stamps[-1] < sim_t + 1, stamps
        # log_level:=debug reached the node; the namespace too
        assert "[DEBUG]" in text() or "DEBUG" in text(), text()[-3000:]
        assert "/robot1/" in text()
        # no second parent on the camera frame: the robot's tf_static places it
        parents = {t.header.frame_id for m in col.messages["/tf_static"] for t in m.transforms
                   if t.child_frame_id == "launch_cam_optical"}
        assert parents == {"launch_cam_link"}, parents
        assert "PROBE_PROFILE=<unset>" in text(), text()[-2000:]      # the DDS profile did not leak
        assert "camera pose from the robot's TF tree" in text()
    finally:
        proc.send_signal(signal.SIGINT)           # as Ctrl-C on `ros2 launch`: launch stops the node with SIGINT
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)   # nothing of the launch may outlive the test
        except ProcessLookupError:
            pass
        log.close()
        col.close()
        for pub in (tf_static, clock, pub_img, pub_info):
            ros_context.destroy_publisher(pub)


def test_rviz_config_follows_the_namespace(tmp_path):
    import importlib.util

    from ament_index_python.packages import get_package_share_directory

    share = get_package_share_directory("ros2_monodepth")
    spec = importlib.util.spec_from_file_location("monodepth_launch", os.path.join(share, "launch", "monodepth.launch.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    path = module.rviz_config_for("robot1", os.path.join(share, "config", "monodepth.rviz"))
    text = open(path).read()
    assert "Value: /robot1/points" in text and "Value: /robot1/depth/colorized" in text and "Value: /points\n" not in text
    description = module.generate_launch_description()
    names = {a.name for a in description.entities if hasattr(a, "name") and type(a).__name__ == "DeclareLaunchArgument"}
    assert {"namespace", "params_file", "use_sim_time", "log_level", "use_rviz", "image", "camera_info"} <= names

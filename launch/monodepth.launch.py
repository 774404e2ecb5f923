"""Start monodepth_node (and, when asked, RViz) in a robot's launch tree.

    ros2 launch ros2_monodepth monodepth.launch.py image:=/camera/image_raw camera_info:=/camera/camera_info
    ros2 launch ros2_monodepth monodepth.launch.py namespace:=front use_sim_time:=true log_level:=debug use_rviz:=true

Arguments (``ros2 launch ros2_monodepth monodepth.launch.py --show-args`` lists them with their defaults):
namespace, node_name, params_file, image, camera_info, use_sim_time, log_level, use_rviz, dds_profile.

The node runs with config/fastdds_large_messages.xml as its Fast DDS profile (a shared-memory segment big enough
for a frame of its output; the _localhost twin under ROS_LOCALHOST_ONLY=1) unless FASTRTPS_DEFAULT_PROFILES_FILE is
set or dds_profile:= names another. The variable is given to the node's process only: processes started after an
include of this file keep their own environment. RViz shows the node's topics under the namespace given.
"""

import os
import tempfile

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.conditions import IfCondition
from launch.substitutions import EnvironmentVariable, LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

from ros2_monodepth.ros.dds import FASTDDS_PROFILE_ENV, large_message_dds_profile

# Topics in config/monodepth.rviz, written there relative to the node's namespace (as the node publishes them)
RVIZ_TOPICS = ("/depth/image", "/depth/colorized", "/depth/camera_info", "/points", "/odom", "/rgb/image")


def rviz_config_for(namespace: str, source: str) -> str:
    """config/monodepth.rviz with the node's topics under ``namespace``; the path of the file written."""
    prefix = "/" + namespace.strip("/") if namespace.strip("/") else ""
    text = open(source).read()
    for topic in RVIZ_TOPICS:
        text = text.replace(f"Value: {topic}\n", f"Value: {prefix}{topic}\n")
    fd, path = tempfile.mkstemp(prefix="monodepth_", suffix=".rviz")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return path


def _rviz(context, *args, **kwargs):
    share = get_package_share_directory("ros2_monodepth")
    namespace = LaunchConfiguration("namespace").perform(context)
    config = rviz_config_for(namespace, os.path.join(share, "config", "monodepth.rviz"))
    return [Node(package="rviz2", executable="rviz2", name="rviz2", namespace=namespace, arguments=["-d", config],
                 parameters=[{"use_sim_time": ParameterValue(LaunchConfiguration("use_sim_time"), value_type=bool)}],
                 output="screen")]


def generate_launch_description():
    share = get_package_share_directory("ros2_monodepth")
    image = LaunchConfiguration("image")
    return LaunchDescription([
        DeclareLaunchArgument("namespace", default_value="", description="Namespace of the node and its outputs"),
        DeclareLaunchArgument("node_name", default_value="monodepth", description="Name of the node"),
        DeclareLaunchArgument("params_file", default_value=os.path.join(share, "config", "monodepth.yaml"),
                              description="Parameter YAML for monodepth_node"),
        DeclareLaunchArgument("image", default_value="/camera/image_raw",
                              description="Input image topic (with image_transport:=compressed, its /compressed sibling)"),
        DeclareLaunchArgument("camera_info", default_value="/camera/camera_info", description="Input camera_info topic"),
        DeclareLaunchArgument("use_sim_time", default_value="false", description="Use /clock (bag playback, simulation)"),
        DeclareLaunchArgument("log_level", default_value="info", description="Log level: debug, info, warn, error, fatal"),
        DeclareLaunchArgument("use_rviz", default_value="false", description="Also start RViz with config/monodepth.rviz"),
        DeclareLaunchArgument("dds_profile", description="Fast DDS XML profile of the node's process (default: "
                              f"${FASTDDS_PROFILE_ENV} when set, else config/fastdds_large_messages.xml)",
                              default_value=EnvironmentVariable(FASTDDS_PROFILE_ENV,
                                                                default_value=large_message_dds_profile())),
        Node(
            package="ros2_monodepth",
            executable="monodepth_node",
            name=LaunchConfiguration("node_name"),
            namespace=LaunchConfiguration("namespace"),
            parameters=[LaunchConfiguration("params_file"),
                        {"use_sim_time": ParameterValue(LaunchConfiguration("use_sim_time"), value_type=bool)}],
            remappings=[
                ("image", image),
                ("image/compressed", [image, "/compressed"]),
                ("camera_info", LaunchConfiguration("camera_info")),
            ],
            arguments=["--ros-args", "--log-level", LaunchConfiguration("log_level")],
            additional_env={FASTDDS_PROFILE_ENV: LaunchConfiguration("dds_profile")},
            output="screen",
            emulate_tty=True,
        ),
        OpaqueFunction(function=_rviz, condition=IfCondition(LaunchConfiguration("use_rviz"))),
    ])

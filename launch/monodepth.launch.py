"""Start monodepth_node (and optionally RViz).

    ros2 launch ros2_monodepth monodepth.launch.py image:=/camera/image_raw camera_info:=/camera/camera_info

The node runs with config/fastdds_large_messages.xml as its Fast DDS profile (a shared-memory segment big
enough for a frame of its output; the _localhost twin under ROS_LOCALHOST_ONLY=1) unless
FASTRTPS_DEFAULT_PROFILES_FILE is set or dds_profile:= names another.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, SetEnvironmentVariable
from launch.conditions import IfCondition
from launch.substitutions import EnvironmentVariable, LaunchConfiguration
from launch_ros.actions import Node

from ros2_monodepth.ros.dds import large_message_dds_profile


def generate_launch_description():
    share = get_package_share_directory("ros2_monodepth")
    params_file = LaunchConfiguration("params_file")
    namespace = LaunchConfiguration("namespace")
    return LaunchDescription([
        DeclareLaunchArgument("params_file", default_value=os.path.join(share, "config", "monodepth.yaml"),
                              description="Parameter YAML for monodepth_node"),
        DeclareLaunchArgument("image", default_value="/camera/image_raw", description="Input image topic"),
        DeclareLaunchArgument("camera_info", default_value="/camera/camera_info", description="Input camera_info topic"),
        DeclareLaunchArgument("namespace", default_value="", description="Namespace of the node and its outputs"),
        DeclareLaunchArgument("use_rviz", default_value="false", description="Also start RViz with config/monodepth.rviz"),
        DeclareLaunchArgument("dds_profile", description="Fast DDS XML profile for the started processes (default: "
                              "$FASTRTPS_DEFAULT_PROFILES_FILE when set, else config/fastdds_large_messages.xml)",
                              default_value=EnvironmentVariable("FASTRTPS_DEFAULT_PROFILES_FILE",
                                                                default_value=large_message_dds_profile())),
        SetEnvironmentVariable("FASTRTPS_DEFAULT_PROFILES_FILE", LaunchConfiguration("dds_profile")),
        Node(
            package="ros2_monodepth",
            executable="monodepth_node",
            name="monodepth",
            namespace=namespace,
            parameters=[params_file],
            remappings=[
                ("image", LaunchConfiguration("image")),
                ("image/compressed", [LaunchConfiguration("image"), "/compressed"]),
                ("camera_info", LaunchConfiguration("camera_info")),
            ],
            output="screen",
            emulate_tty=True,
        ),
        Node(
            package="rviz2",
            executable="rviz2",
            name="rviz2",
            arguments=["-d", os.path.join(share, "config", "monodepth.rviz")],
            condition=IfCondition(LaunchConfiguration("use_rviz")),
            output="screen",
        ),
    ])

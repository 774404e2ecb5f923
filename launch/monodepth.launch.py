"""Start monodepth_node (and optionally RViz).

    ros2 launch ros2_monodepth monodepth.launch.py image:=/camera/image_raw camera_info:=/camera/camera_info
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


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

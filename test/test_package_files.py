"""package.xml, setup.py, launch/, config/: what a real ROS 2 install needs, checked without launch_ros/RViz."""

from __future__ import annotations

import ast
import py_compile
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import yaml

from ros2_monodepth.ros.params import PARAMS, check_value

REPO = Path(__file__).resolve().parents[1]


def _setup_py():
    return ast.parse((REPO / "setup.py").read_text())


def _console_scripts():
    text = (REPO / "setup.py").read_text()
    return dict(re.findall(r'"([\w\-]+) = ([\w\.]+:\w+)"', text))


def test_package_xml_format3_with_runtime_dependencies():
    root = ET.parse(REPO / "package.xml").getroot()
    assert root.get("format") == "3"
    assert root.findtext("name") == "ros2_monodepth"
    assert root.findtext("license") == "Apache-2.0"
    exec_deps = {e.text for e in root.findall("exec_depend")} | {e.text for e in root.findall("depend")}
    for dep in ("rclpy", "sensor_msgs", "nav_msgs", "geometry_msgs", "tf2_msgs", "std_msgs", "diagnostic_msgs",
                "launch", "launch_ros", "rviz2", "rcl_interfaces", "builtin_interfaces"):
        assert dep in exec_deps, dep
    assert root.find("export/build_type").text == "ament_python"


def test_console_scripts_resolve():
    scripts = _console_scripts()
    assert "monodepth_node" in scripts
    for name, target in scripts.items():
        module, func = target.split(":")
        mod = __import__(module, fromlist=[func])
        assert callable(getattr(mod, func)), name


def test_setup_installs_launch_config_and_marker():
    text = (REPO / "setup.py").read_text()
    assert (REPO / "resource" / "ros2_monodepth").is_file()
    assert '"launch/*.launch.py"' in text and '"config/*.yaml"' in text and '"config/*.rviz"' in text and '"config/*.xml"' in text
    assert "share/ament_index/resource_index/packages" in text
    cfg = (REPO / "setup.cfg").read_text()
    assert "install_scripts=$base/lib/ros2_monodepth" in cfg  # where `ros2 run` looks


def test_launch_file_compiles_and_names_what_exists():
    launch = REPO / "launch" / "monodepth.launch.py"
    py_compile.compile(str(launch), doraise=True)
    text = launch.read_text()
    assert 'executable="monodepth_node"' in text and "monodepth_node" in _console_scripts()
    assert '"config", "monodepth.yaml"' in text and (REPO / "config" / "monodepth.yaml").is_file()
    assert '"config", "monodepth.rviz"' in text and (REPO / "config" / "monodepth.rviz").is_file()
    for arg in ("params_file", "image", "camera_info", "namespace", "use_rviz", "dds_profile"):
        assert f'DeclareLaunchArgument("{arg}"' in text, arg
    assert "def generate_launch_description" in text
    # the started processes get the large-message Fast DDS profile unless the user has one
    assert 'SetEnvironmentVariable("FASTRTPS_DEFAULT_PROFILES_FILE", LaunchConfiguration("dds_profile"))' in text
    # (its default is ros_session's choice: the loopback-only twin under ROS_LOCALHOST_ONLY=1, tested there)
    assert 'EnvironmentVariable("FASTRTPS_DEFAULT_PROFILES_FILE"' in text
    assert "default_value=large_message_dds_profile()" in text
    assert "from ros2_monodepth.ros.dds import large_message_dds_profile" in text and "ros2_monodepth.tools" not in text


def _flatten(d, prefix=""):
    for k, v in d.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            yield from _flatten(v, name + ".")
        else:
            yield name, v


def test_params_yaml_matches_the_declared_parameters():
    data = yaml.safe_load((REPO / "config" / "monodepth.yaml").read_text())
    params = dict(_flatten(data["/**"]["ros__parameters"]))
    declared = {p.name for p in PARAMS}
    assert set(params) == declared, (set(params) ^ declared)
    for name, value in params.items():
        assert check_value(name, value) is None, name
    for p in PARAMS:
        assert p.description, p.name


def test_rviz_config_shows_the_outputs():
    rviz = yaml.safe_load((REPO / "config" / "monodepth.rviz").read_text())
    vm = rviz["Visualization Manager"]
    assert vm["Global Options"]["Fixed Frame"] == "odom"
    classes = {d["Class"]: d for d in vm["Displays"]}
    for cls in ("rviz_default_plugins/PointCloud2", "rviz_default_plugins/Odometry", "rviz_default_plugins/TF",
                "rviz_default_plugins/Image"):
        assert cls in classes, cls
    topics = {d["Topic"]["Value"] for d in vm["Displays"] if "Topic" in d}
    assert {"/points", "/odom", "/depth/colorized", "/depth"} <= topics


def test_node_help_lists_parameters():
    out = subprocess.run([sys.executable, "-m", "ros2_monodepth.ros.node", "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0
    for p in PARAMS:
        assert p.name in out.stdout


def test_colcon_ignores_the_generated_tf2_msgs_helper():
    assert (REPO / "tools" / "tf2_msgs" / "COLCON_IGNORE").is_file()

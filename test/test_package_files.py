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


def test_package_xml_declares_what_rosdep_resolves_and_no_gui():
    """Every key resolves for Jazzy/noble and Humble/jammy (the facts in test/data/rosdep_keys.yaml, read from
    ros/rosdistro); ament_python packages declare no buildtool_depend (rosdep has no key for ament_python); RViz is
    opt-in, not a dependency of a headless robot."""
    root = ET.parse(REPO / "package.xml").getroot()
    assert root.get("format") == "3"
    assert root.findtext("name") == "ros2_monodepth"
    assert root.findtext("license") == "Apache-2.0"
    assert root.find("export/build_type").text == "ament_python"
    facts = yaml.safe_load((REPO / "test" / "data" / "rosdep_keys.yaml").read_text())
    declared = [e.text for tag in ("buildtool_depend", "build_depend", "exec_depend", "depend", "test_depend")
                for e in root.findall(tag)]
    known = set(facts["ros_packages"]) | set(facts["system_keys"])
    assert not [k for k in declared if k not in known], [k for k in declared if k not in known]
    assert "ament_python" not in declared and "rviz2" not in declared
    exec_deps = {e.text for e in root.findall("exec_depend")}
    # every import of the package with a key is declared
    for key in ("rclpy", "sensor_msgs", "nav_msgs", "geometry_msgs", "tf2_msgs", "diagnostic_msgs", "ament_index_python",
                "launch", "launch_ros", "python3-torch", "python3-onnxruntime-pip", "python3-rosbags-pip", "python3-tqdm",
                "python3-psutil", "python3-matplotlib", "python3-tensorboard-pip", "python3-scipy", "python3-opencv"):
        assert key in exec_deps, key
    assert {e.text for e in root.findall("test_depend")} == {"python3-pytest"}


def test_setup_declares_pytest_so_colcon_test_runs_the_suite():
    """colcon runs pytest for an ament_python package only when setup.py names it as a test dependency (otherwise
    `colcon test` reports 0 tests)."""
    text = (REPO / "setup.py").read_text()
    assert 'extras_require={"test": ["pytest"]}' in text and 'tests_require=["pytest"]' in text
    assert (REPO / "pytest.ini").is_file() and "testpaths = test" in (REPO / "pytest.ini").read_text()


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
    for arg in ("namespace", "node_name", "params_file", "image", "camera_info", "use_sim_time", "log_level", "use_rviz",
                "dds_profile"):
        assert f'DeclareLaunchArgument("{arg}"' in text, arg
    assert "def generate_launch_description" in text
    # the DDS profile goes to the node's process only (SetEnvironmentVariable would leak into every later process)
    assert "SetEnvironmentVariable" not in text and "additional_env={FASTDDS_PROFILE_ENV:" in text
    assert "from ros2_monodepth.ros.dds import" in text and "ros2_monodepth.tools" not in text
    assert '"--log-level", LaunchConfiguration("log_level")' in text and "use_sim_time" in text
    assert 'condition=IfCondition(LaunchConfiguration("use_rviz"))' in text
    # every topic of the RViz config is one the launch file moves under the namespace
    rviz = yaml.safe_load((REPO / "config" / "monodepth.rviz").read_text())
    topics = {d["Topic"]["Value"] for d in rviz["Visualization Manager"]["Displays"] if "Topic" in d}
    rewritten = re.search(r"RVIZ_TOPICS = \((.*?)\)", text).group(1)
    assert topics <= set(re.findall(r'"([^"]+)"', rewritten)), topics


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
    assert {"/points", "/odom", "/depth/colorized", "/depth/image", "/rgb/image"} <= topics


def test_node_help_lists_parameters():
    out = subprocess.run([sys.executable, "-m", "ros2_monodepth.ros.node", "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0
    for p in PARAMS:
        assert p.name in out.stdout


def test_colcon_ignores_the_generated_tf2_msgs_helper():
    assert (REPO / "tools" / "tf2_msgs" / "COLCON_IGNORE").is_file()


def test_the_parameter_reference_is_in_step_with_the_parameter_table():
    from ros2_monodepth.ros.params import parameter_reference

    text = (REPO / "docs" / "parameters.md").read_text()
    assert text == parameter_reference(), \
        "docs/parameters.md is out of date: python -m ros2_monodepth.ros.params > docs/parameters.md"
    assert all(f"| `{spec.name}` |" in text for spec in PARAMS)

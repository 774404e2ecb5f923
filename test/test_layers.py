"""The layers stay visible: a core with no ROS imports, a thin ROS adapter, offline training; backends that never
import one another; a node with no numeric work of its own; a launch file free of the tools. Read from the source
(imports anywhere in a module, top level or inside functions), so a test here fails as soon as a rule is broken."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Iterator, Set

import pytest

REPO = Path(__file__).resolve().parents[1]
ROS_MODULES = {"rclpy", "rcl_interfaces", "builtin_interfaces", "std_msgs", "sensor_msgs", "nav_msgs", "geometry_msgs",
               "tf2_msgs", "diagnostic_msgs", "launch", "launch_ros", "tf2_ros", "cv_bridge", "message_filters"}


def _imports(path: Path) -> Set[str]:
    """Absolute module names a file imports (relative imports resolved against its package)."""
    package = ".".join(path.relative_to(REPO).with_suffix("").parts[:-1]).replace("training", "ros2_monodepth_training", 1)
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
                names.add(module)
                names.update(f"{module}.{a.name}" for a in node.names)
            elif node.module:
                names.add(node.module)
    return names


def _files(folder: str) -> Iterator[Path]:
    yield from sorted((REPO / folder).rglob("*.py"))


def _top(name: str) -> str:
    return name.split(".")[0]


@pytest.mark.parametrize("path", list(_files("ros2_monodepth/core")), ids=lambda p: p.name)
def test_core_imports_nothing_from_ros_nor_the_layers_above(path):
    imported = _imports(path)
    assert not {_top(n) for n in imported} & ROS_MODULES, path
    assert not [n for n in imported if n.startswith(("ros2_monodepth.ros", "ros2_monodepth.tools", "ros2_monodepth_training"))], path


@pytest.mark.parametrize("path", list(_files("ros2_monodepth/ros")), ids=lambda p: p.name)
def test_ros_adapter_does_not_import_tools_or_training(path):
    assert not [n for n in _imports(path) if n.startswith(("ros2_monodepth.tools", "ros2_monodepth_training"))], path


@pytest.mark.parametrize("path", list(_files("training")), ids=lambda p: p.name)
def test_training_needs_no_ros_runtime(path):
    imported = _imports(path)
    assert not {_top(n) for n in imported} & ROS_MODULES, path
    assert not [n for n in imported if n.startswith(("ros2_monodepth.ros", "ros2_monodepth.tools"))], path


def test_backends_never_import_one_another():
    backends = {"torch_backend", "onnxruntime_backend", "tensorrt_backend"}
    for path in _files("ros2_monodepth/core/backends"):
        others = backends - {path.stem}
        imported = {n.split(".")[-1] for n in _imports(path)} | {n.split(".")[-2] for n in _imports(path) if "." in n}
        assert not imported & others, f"{path.name} imports {imported & others}"


def test_node_does_no_numeric_work_of_its_own():
    imported = _imports(REPO / "ros2_monodepth" / "ros" / "node.py")
    assert "cv2" not in imported and "torch" not in imported
    source = (REPO / "ros2_monodepth" / "ros" / "node.py").read_text()
    calls = {n.func.attr for n in ast.walk(ast.parse(source))
             if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and isinstance(n.func.value, ast.Name)
             and n.func.value.id == "np"}
    assert not calls, f"node.py calls numpy: {calls}"


def test_launch_file_is_free_of_the_tools():
    imported = _imports(REPO / "launch" / "monodepth.launch.py")
    assert not [n for n in imported if n.startswith(("ros2_monodepth.tools", "ros2_monodepth_training"))]


def test_the_loopback_rule_is_written_once():
    """ROS_AUTOMATIC_DISCOVERY_RANGE is set in ros_session.py only; the shell wrapper, CI and the tests call it."""
    setters = []
    for path in list(REPO.glob("scripts/*.sh")) + [REPO / ".ci" / "run"] + list(_files("ros2_monodepth")) + list(_files("test")):
        if path.name == "test_layers.py":
            continue
        code = [line for line in path.read_text().splitlines() if not line.strip().startswith("#")]
        if any("ROS_AUTOMATIC_DISCOVERY_RANGE" in line and "LOCALHOST" in line for line in code):
            setters.append(path.relative_to(REPO).as_posix())
    assert setters == ["ros2_monodepth/tools/ros_session.py"], setters


def test_the_model_contract_imports_no_torch():
    """What the networks expect is read by everything that runs them, the ROS adapter included: torch-free."""
    import subprocess
    import sys

    code = ("import sys, ros2_monodepth.core.model_contract as m; "
            "assert 'torch' not in sys.modules, sorted(k for k in sys.modules if k.startswith('torch'))[:3]")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=str(REPO))
    assert run.returncode == 0, run.stderr

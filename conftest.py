"""Collection rules for ``make test`` (pytest.ini runs the tests under test/ and the docstring examples of the
packages): a module that imports the GPU stack (TensorRT, CUDA bindings) at import time is left out of the
docstring collection wherever that stack is not installed, by rule rather than by name."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

from ros2_monodepth.tools.ros_session import loopback_env

loopback_env()   # before anything imports rclpy: discovery on loopback, a ROS domain of this run's own

GPU_ONLY_MODULES = ("tensorrt", "cuda", "pycuda")
PACKAGES = ("ros2_monodepth", "training")
ROOT = Path(__file__).resolve().parent


def _module_level_imports(path: Path) -> set:
    """Top-level module names imported at module level when ``path`` is imported (in try blocks too; not in if or def)."""
    try:
        tree = ast.parse(path.read_text(), str(path))
    except (OSError, SyntaxError, UnicodeDecodeError):
        return set()
    names = set()
    nodes = list(tree.body)
    for node in tree.body:   # a module-level try whose every branch imports the GPU stack still needs it
        if isinstance(node, ast.Try):
            nodes += node.body + [n for handler in node.handlers for n in handler.body]
    for node in nodes:
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def pytest_ignore_collect(collection_path: Path, config) -> bool | None:
    path = Path(collection_path)
    if path.suffix != ".py" or not any(part in PACKAGES for part in path.relative_to(ROOT).parts[:1]):
        return None
    missing = [name for name in _module_level_imports(path) & set(GPU_ONLY_MODULES) if not _importable(name)]
    return True if missing else None

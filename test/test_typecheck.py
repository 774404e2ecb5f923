"""mypy over the core (and, with tensorrt-stubs installed, the TensorRT backend), as CI runs it."""

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_mypy_core_is_clean():
    pytest.importorskip("mypy")
    run = subprocess.run([sys.executable, "-m", "mypy", "--config-file", str(REPO / "mypy.ini")], cwd=REPO,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Success" in run.stdout

"""mypy over every package (core, ros, tools, training), with the TensorRT backend checked against tensorrt-stubs
(TensorRT itself cannot be installed here), as CI runs it."""

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CONFIG = str(REPO / "mypy.ini")


def _mypy(*args: str) -> subprocess.CompletedProcess:
    pytest.importorskip("mypy")
    return subprocess.run([sys.executable, "-m", "mypy", "--config-file", CONFIG, *args], cwd=REPO,
                          capture_output=True, text=True, timeout=900)


def test_tensorrt_stubs_are_what_mypy_sees(tmp_path):
    if not (REPO / ".venv" / "trt-stubs" / "tensorrt").is_dir():
        pytest.skip("the TensorRT type stubs are prepared by `make setup` (scripts/trt_stubs.sh), not here")
    probe = tmp_path / "probe.py"
    probe.write_text("import tensorrt as trt\nreveal_type(trt.Builder)\nreveal_type(trt.IExecutionContext.execute_async_v3)\n")
    run = _mypy(str(probe))
    assert "tensorrt_bindings.tensorrt.Builder" in run.stdout, run.stdout + run.stderr
    assert "stream_handle: int" in run.stdout, run.stdout


def test_mypy_checks_every_package_and_they_are_clean():
    import configparser

    config = configparser.ConfigParser()
    config.read(CONFIG)
    checked = {f.strip() for f in config["mypy"]["files"].split(",")}
    assert checked == {"ros2_monodepth", "training"}, checked   # core, ros and tools are below ros2_monodepth
    run = _mypy()
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Success" in run.stdout

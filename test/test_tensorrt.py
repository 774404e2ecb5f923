"""TensorRT backend: the engine cache (key, corrupt-file rebuild) runs everywhere; the end-to-end engine
test runs only where TensorRT is importable (never in this project's CI: it cannot be installed here)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from ros2_monodepth.core.backends.engine_cache import EngineKey, load_or_build

BASE = EngineKey("a" * 64, "10.13.0", "NVIDIA H100 80GB HBM3", "9.0", "fp16", 1 << 30)


@pytest.mark.parametrize("field,value", [("onnx_sha256", "b" * 64), ("tensorrt_version", "10.14.1"),
                                         ("gpu_name", "Orin"), ("compute_capability", "8.7"), ("precision", "int8"),
                                         ("workspace_bytes", 1 << 28)])
def test_cache_key_changes_with_each_input(field, value):
    changed = replace(BASE, **{field: value})
    assert changed.digest() != BASE.digest()
    assert changed.filename("depth") != BASE.filename("depth")


def test_cache_key_is_stable():
    assert EngineKey(*[getattr(BASE, f) for f in BASE.__dataclass_fields__]).digest() == BASE.digest()
    assert BASE.filename("depth").startswith("depth-fp16-sm90-") and BASE.filename("depth").endswith(".engine")


class FakeRuntime:
    """Stands in for trt.Runtime.deserialize_cuda_engine: accepts only blobs that start with b'ENGINE'."""

    def __init__(self, raise_on_bad: bool):
        self.raise_on_bad = raise_on_bad

    def deserialize(self, blob: bytes):
        if blob.startswith(b"ENGINE"):
            return ("engine", blob)
        if self.raise_on_bad:
            raise RuntimeError("Serialization assertion failed: magic tag mismatch")
        return None


@pytest.mark.parametrize("raise_on_bad", [False, True])
def test_corrupt_cache_file_is_rebuilt_not_a_crash(tmp_path, raise_on_bad):
    path = tmp_path / BASE.filename("depth")
    path.write_bytes(b"\x00garbage from an interrupted write")
    builds, warnings = [], []
    runtime = FakeRuntime(raise_on_bad)
    engine = load_or_build(path, runtime.deserialize, lambda: builds.append(1) or b"ENGINE-1", warnings.append)
    assert engine == ("engine", b"ENGINE-1")
    assert builds == [1] and len(warnings) == 1 and "rebuilding" in warnings[0]
    assert path.read_bytes() == b"ENGINE-1"
    # a good cache file is used as it is: no second build
    engine = load_or_build(path, runtime.deserialize, lambda: builds.append(2) or b"ENGINE-2", warnings.append)
    assert engine == ("engine", b"ENGINE-1") and builds == [1]


def test_missing_cache_builds_and_writes(tmp_path):
    path = tmp_path / "sub" / BASE.filename("pose")
    engine = load_or_build(path, FakeRuntime(False).deserialize, lambda: b"ENGINE-x")
    assert engine[1] == b"ENGINE-x" and path.is_file()


def _have_tensorrt() -> bool:
    from ros2_monodepth.core.backends.tensorrt_backend import tensorrt_available

    return tensorrt_available()


def test_backend_refuses_cleanly_without_tensorrt():
    if _have_tensorrt():
        pytest.skip("tensorrt is importable here")
    from ros2_monodepth.core.backends.base import BackendError, ModelSpec
    from ros2_monodepth.core.artifacts import create_backend

    with pytest.raises(BackendError, match="tensorrt"):
        create_backend("tensorrt", ModelSpec(network_size=(64, 128)))


@pytest.mark.skipif(not _have_tensorrt(),
                    reason="TensorRT is not installed (it cannot be installed in this project's CI or dev machines)")
def test_tensorrt_engine_matches_onnxruntime(tmp_path, monkeypatch):  # pragma: no cover - needs TensorRT + GPU
    monkeypatch.setenv("ROS2_MONODEPTH_CACHE", str(tmp_path))
    from ros2_monodepth.core.backends.base import ModelSpec
    from ros2_monodepth.core.backends.onnxruntime_backend import OnnxRuntimeBackend
    from ros2_monodepth.core.backends.tensorrt_backend import TensorRTBackend

    spec = ModelSpec(network_size=(64, 128), device="cuda", precision="fp32")
    trt_backend, ort_backend = TensorRTBackend(spec), OnnxRuntimeBackend(spec)
    image = np.random.default_rng(0).integers(0, 256, (64, 128, 3), dtype=np.uint8)
    d_trt, d_ort = trt_backend.depth(image), ort_backend.depth(image)
    assert np.abs(d_trt - d_ort).max() / d_ort.min() < 1e-3
    trt_backend.close()

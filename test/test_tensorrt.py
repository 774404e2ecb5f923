"""TensorRT: the graphs TensorRT is given pass TensorRT's own ONNX parser (TensorRT for RTX's library, which parses
and configures without a GPU), the build recipe of each precision on TensorRT 10 and 11, the fallback when the
installed TensorRT is unusable (a fake module shaped like TensorRT 11), the engine cache (key, hash check, rebuild),
and, only where TensorRT and a GPU are, the engines end to end."""

from __future__ import annotations

import json
import subprocess
import sys
import types
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from ros2_monodepth.core.backends.engine_cache import EngineKey, engine_problem, ensure_engine, sidecar
from ros2_monodepth.core.backends.tensorrt_engines import build_recipe
from ros2_monodepth.core.backends.trt_compat import TensorRTApi, load_tensorrt

BASE = EngineKey("a" * 64, "10.13.0", "Orin", "8.7", 16, 62841, "fp16", "fp32 graph, weakly typed, +FP16")


# ---------------------------------------------------------------------------------------------------- engine cache
@pytest.mark.parametrize("field,value", [("graph_sha256", "b" * 64), ("tensorrt_version", "11.0.0"), ("gpu_name", "H100"),
                                         ("compute_capability", "9.0"), ("sm_count", 8), ("memory_mb", 7620),
                                         ("precision", "int8"), ("recipe", "int8 graph, strongly typed"),
                                         ("calibration", "drive1 /camera/image_raw (200 frames)"), ("channel_order", "bgr")])
def test_cache_key_changes_with_each_input(field, value):
    changed = replace(BASE, **{field: value})
    assert changed.digest() != BASE.digest()
    assert changed.filename("depth") != BASE.filename("depth")


def test_cache_key_tells_jetson_modules_apart_and_ignores_the_workspace():
    orin_nx_8gb = replace(BASE, sm_count=8, memory_mb=7620)       # both report "Orin", capability 8.7
    assert orin_nx_8gb.digest() != BASE.digest()
    assert "workspace" not in EngineKey.__dataclass_fields__
    assert BASE.filename("depth").startswith("depth-fp16-sm87-") and BASE.filename("depth").endswith(".engine")
    assert EngineKey(**{f: getattr(BASE, f) for f in BASE.__dataclass_fields__}).digest() == BASE.digest()


def test_engine_is_built_once_and_reused_while_its_hash_matches(tmp_path):
    path = tmp_path / "engines" / BASE.filename("depth")
    builds = []
    ensure_engine(path, lambda: builds.append(1) or b"ENGINE-1", BASE)
    assert path.read_bytes() == b"ENGINE-1" and engine_problem(path) is None
    assert json.loads(sidecar(path).read_text())["key"]["gpu_name"] == "Orin"
    ensure_engine(path, lambda: builds.append(2) or b"ENGINE-2", BASE)
    assert builds == [1] and path.read_bytes() == b"ENGINE-1"


@pytest.mark.parametrize("damage", ["truncate", "replace", "no_sidecar"])
def test_a_damaged_engine_is_rebuilt_with_a_warning_never_loaded(tmp_path, damage):
    path = tmp_path / BASE.filename("pose")
    ensure_engine(path, lambda: b"ENGINE-good" * 100, BASE)
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:50])
    elif damage == "replace":
        path.write_bytes(b"E" * 1100)
    else:
        sidecar(path).unlink()
    warnings = []
    ensure_engine(path, lambda: b"ENGINE-rebuilt", BASE, warnings.append)
    assert path.read_bytes() == b"ENGINE-rebuilt" and engine_problem(path) is None
    assert len(warnings) == 1 and "rebuilding" in warnings[0]


# ---------------------------------------------------------------------------------------------------- API versions
def _fake_tensorrt(version: str, flags=("FP16", "INT8", "TF32"), drop=()) -> types.ModuleType:
    """A module shaped like TensorRT's Python API (names only): 10.x has FP16/INT8 builder flags, 11.x does not."""
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    for name in ("Builder", "Logger", "OnnxParser", "Runtime", "MemoryPoolType", "TensorIOMode", "nptype"):
        if name not in drop:
            setattr(trt, name, type(name, (), {}))
    trt.BuilderFlag = types.SimpleNamespace(**{f: i for i, f in enumerate(flags)})
    trt.NetworkDefinitionCreationFlag = types.SimpleNamespace(STRONGLY_TYPED=1)
    return trt


def _api(module) -> TensorRTApi:
    return TensorRTApi(module, "tensorrt", tuple(int(v) for v in module.__version__.split(".")))


def test_build_recipes_on_tensorrt_10_use_precision_flags_and_no_tf32_for_fp32():
    api = _api(_fake_tensorrt("10.13.0"))
    assert api.has_precision_flags
    fp32, fp16, int8 = (build_recipe(api, p) for p in ("fp32", "fp16", "int8"))
    assert (fp32.graph, fp32.strongly_typed, fp32.clear_flags) == ("fp32", False, ("TF32",))
    assert (fp16.graph, fp16.set_flags) == ("fp32", ("FP16",))
    assert (int8.graph, set(int8.set_flags)) == ("int8", {"INT8", "FP16"})   # explicit Q/DQ graph, never a calibrator


def test_build_recipes_on_tensorrt_11_take_precision_from_the_graph():
    api = _api(_fake_tensorrt("11.0.0", flags=("TF32",)))
    assert not api.has_precision_flags
    fp32, fp16, int8 = (build_recipe(api, p) for p in ("fp32", "fp16", "int8"))
    assert fp32.strongly_typed and fp32.clear_flags == ("TF32",) and fp32.graph == "fp32"
    assert fp16.strongly_typed and fp16.graph == "fp16" and not fp16.set_flags
    assert int8.strongly_typed and int8.graph == "int8" and not int8.set_flags


@pytest.mark.parametrize("module,expected", [
    (types.ModuleType("tensorrt"), "only the type stubs"),
    (_fake_tensorrt("8.6.1"), "older than 10"),
    (_fake_tensorrt("10.13.0", drop=("OnnxParser",)), "lacks OnnxParser"),
])
def test_an_unusable_tensorrt_is_reported_not_raised(monkeypatch, module, expected):
    monkeypatch.setitem(sys.modules, "tensorrt", module)
    api, why = load_tensorrt()
    assert api is None and expected in why


def test_a_tensorrt_whose_import_fails_is_reported_not_raised(monkeypatch, tmp_path):
    (tmp_path / "tensorrt_broken.py").write_text("raise AttributeError(\"module 'tensorrt' has no attribute 'BuilderFlag'\")\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    api, why = load_tensorrt("tensorrt_broken")
    assert api is None and "AttributeError" in why


def test_auto_falls_back_cleanly_under_a_tensorrt_11_like_api(monkeypatch, tmp_path):
    """The removed names (BuilderFlag.FP16/INT8, the int8 calibrator) are not needed at import, and any failure
    to build makes auto take the next backend with the reason in its explanation."""
    monkeypatch.setenv("ROS2_MONODEPTH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setitem(sys.modules, "tensorrt", _fake_tensorrt("11.0.0", flags=("TF32",)))
    import ros2_monodepth.core.artifacts as artifacts
    from ros2_monodepth.core.backends.base import ModelSpec

    monkeypatch.setattr(artifacts, "cuda_available", lambda: True)
    assert "tensorrt" in artifacts.available_backends()
    backend, why = artifacts.create_backend("auto", ModelSpec(network_size=(64, 128), device="auto", precision="auto"))
    assert backend.name in ("torch", "onnxruntime")
    assert "tensorrt: TensorRT (tensorrt 11.0.0 (strongly typed)) failed" in why, why
    assert np.isfinite(backend.depth(np.zeros((64, 128, 3), np.uint8))).all()
    with pytest.raises(artifacts.BackendError, match="TensorRT"):
        artifacts.create_backend("tensorrt", ModelSpec(network_size=(64, 128), device="cuda", precision="fp16"))


# ---------------------------------------------------------------------------------------------------- the real parser
PARSE_SCRIPT = r"""
import json, sys
from pathlib import Path
from ros2_monodepth.core.backends.trt_compat import load_tensorrt
from ros2_monodepth.core.backends.tensorrt_engines import BackendError, build_recipe, builder_config, parse_onnx
api, why = load_tensorrt("tensorrt_rtx")
if api is None:
    print(json.dumps({"unavailable": why})); sys.exit(0)
out = {}
for path, precision in json.loads(sys.argv[1]):
    recipe = build_recipe(api, precision)
    try:
        builder, network, parser = parse_onnx(api, Path(path), recipe)
        builder_config(api, builder, recipe)
        out[path] = {"ok": True, "layers": network.num_layers,
                     "inputs": [str(network.get_input(i).dtype) for i in range(network.num_inputs)]}
    except BackendError as exc:
        out[path] = {"ok": False, "error": str(exc)}
print(json.dumps(out))
"""


def _parse_with_tensorrt(graphs):
    """Parse and configure each (path, precision) with TensorRT for RTX's parser, in a child process (the library
    reports its missing GPU on stderr)."""
    run = subprocess.run([sys.executable, "-c", PARSE_SCRIPT, json.dumps([[str(p), prec] for p, prec in graphs])],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    if "unavailable" in result:
        pytest.skip(f"TensorRT for RTX's parser is not installed here ({result['unavailable']}): pip install "
                    "-r requirements-dev.txt")
    return result


@pytest.fixture(scope="module")
def tensorrt_graphs(tmp_path_factory):
    """Every graph the project gives TensorRT: fp32, fp16 and int8 Q/DQ, depth and pose, exported at the network's
    resolution and at a camera's (with depth at camera resolution, bgr), with a half-size or shared pose network, and
    with the half-resolution depth head."""
    from ros2_monodepth.core.artifacts import generated_calibration_frames
    from ros2_monodepth.core.export import (DEPTH_FP16_ONNX, DEPTH_ONNX, POSE_FP16_ONNX, POSE_ONNX, export_fp16_graphs,
                                            export_onnx)
    from ros2_monodepth.core.networks import DepthNet, PoseNet
    from ros2_monodepth.core.quantize import DEPTH_QDQ_ONNX, POSE_QDQ_ONNX, quantize_export

    torch.manual_seed(0)
    nets = DepthNet(18).eval(), PoseNet(18).eval()
    half_pose = nets[0], PoseNet(18, input_downscale=2).eval()     # pose_downscale 2: an AveragePool before the encoder
    # the shared pose model: depth also outputs the encoder's features, the pose graph takes two frames' features
    shared_pose = nets[0], PoseNet(18, shared_encoder=nets[0].encoder).eval()
    graphs = []
    for name, camera, extra, networks in (
            ("network", (64, 128), {}, nets),
            ("camera", (120, 160), dict(channel_order="bgr", depth_at_camera_resolution=True), nets),
            ("half_pose", (64, 128), {}, half_pose),
            ("shared_pose", (120, 160), {}, shared_pose),
            # depth_output_scale 1: the depth graph ends at the half-resolution disparity head, upsampled
            ("half_depth", (64, 128), dict(depth_output_scale=1), nets)):
        out = tmp_path_factory.mktemp(name)
        export_onnx(*networks, out, camera, (64, 128), 0.1, 100.0, **extra)
        export_fp16_graphs(*networks, out)
        quantize_export(out, generated_calibration_frames(camera, count=4), "test frames", flavours=("tensorrt",))
        graphs += [(out / DEPTH_ONNX, "fp32"), (out / POSE_ONNX, "fp32"), (out / DEPTH_FP16_ONNX, "fp16"),
                   (out / POSE_FP16_ONNX, "fp16"), (out / DEPTH_QDQ_ONNX, "int8"), (out / POSE_QDQ_ONNX, "int8")]
    return graphs


def test_tensorrts_parser_accepts_every_graph_the_project_gives_it(tensorrt_graphs):
    result = _parse_with_tensorrt(tensorrt_graphs)
    failures = {p: r["error"] for p, r in result.items() if not r["ok"]}
    assert not failures, json.dumps(failures, indent=1)
    assert sum("shared_pose" in p for p in result) == 6 and sum("half_depth" in p for p in result) == 6
    for path, r in result.items():
        if "shared_pose" in path and "pose" in path.rsplit("/", 1)[1]:
            # the shared model's pose decoder: two frames' float features in, a few layers
            assert len(r["inputs"]) == 2 and all("FLOAT" in t for t in r["inputs"]), (path, r)
            assert r["layers"] > 5, (path, r)
            continue
        assert r["inputs"] and all("UINT8" in t for t in r["inputs"]), (path, r)   # camera bytes go in as they are
        assert r["layers"] > 50, (path, r)


def test_the_parser_check_fails_on_a_uint8_intermediate_tensor_and_names_the_node(tmp_path):
    """The graph form before this change (uint8 stacked, then cast) is what TensorRT refuses: the check above
    would have failed on it."""
    class Uint8First(torch.nn.Module):
        def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return torch.cat([a, b], dim=-1).float().mean(dim=-1)

    example = torch.zeros(8, 8, 3, dtype=torch.uint8)
    path = tmp_path / "uint8_first.onnx"
    torch.onnx.export(Uint8First(), (example, example), str(path), opset_version=17, dynamo=False)
    result = _parse_with_tensorrt([(path, "fp32")])[str(path)]
    assert not result["ok"] and "Concat" in result["error"] and "UINT8" in result["error"].upper()


def test_onnxruntime_cpu_int8_graphs_are_kept_away_from_tensorrt(tensorrt_graphs):
    """The CPU int8 graphs use uint8 activations (TensorRT cannot): TensorRT gets the *.qdq.onnx flavour."""
    from ros2_monodepth.core.quantize import int8_files

    assert int8_files("tensorrt") == ("depth.qdq.onnx", "pose.qdq.onnx")
    assert int8_files("onnxruntime") == ("depth.int8.onnx", "pose.int8.onnx")
    import onnx

    qdq = onnx.load(str([p for p, prec in tensorrt_graphs if prec == "int8"][0]))
    zero_points = [i for i in qdq.graph.initializer if i.name.endswith("zero_point")]
    assert zero_points and all(z.data_type == onnx.TensorProto.INT8 for z in zero_points)   # signed, symmetric


# ---------------------------------------------------------------------------------------------------- on a GPU
def _have_tensorrt_and_gpu() -> bool:
    return load_tensorrt()[0] is not None and torch.cuda.is_available()


@pytest.mark.skipif(not _have_tensorrt_and_gpu(),
                    reason="TensorRT and a CUDA GPU are needed (TensorRT cannot be installed in this project's CI or dev "
                           "machines; scripts/gpu_check.sh runs this path where one is lent)")
@pytest.mark.parametrize("precision,tolerance", [("fp32", 1e-3), ("fp16", 5e-2), ("int8", 5e-1)])
def test_tensorrt_engines_match_the_cpu_fp32_networks(tmp_path, monkeypatch, precision, tolerance):  # pragma: no cover
    monkeypatch.setenv("ROS2_MONODEPTH_CACHE", str(tmp_path))
    from ros2_monodepth.core.artifacts import create_backend
    from ros2_monodepth.core.backends.base import ModelSpec

    spec = ModelSpec(network_size=(64, 128), device="cuda", precision=precision)
    trt_backend, _ = create_backend("tensorrt", spec)
    cpu, _ = create_backend("torch", replace(spec, device="cpu", precision="fp32", trace=False))
    image = np.random.default_rng(0).integers(0, 256, (64, 128, 3), dtype=np.uint8)
    d_trt, d_cpu = trt_backend.depth(image), cpu.depth(image)
    assert float((np.abs(d_trt - d_cpu) / d_cpu).max()) < tolerance
    trt_backend.close()
    assert Path(tmp_path / "engines").is_dir()

"""ONNX export and the ONNX Runtime backend: parity with PyTorch, caching, the export command."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")

from ros2_monodepth.core.backends.base import ModelSpec  # noqa: E402
from ros2_monodepth.core.artifacts import create_backend, graph_set  # noqa: E402
from ros2_monodepth.core.checkpoint import CheckpointMetadata, save_checkpoint  # noqa: E402
from ros2_monodepth.core.export import ExportInfo, export_onnx, onnxruntime_parity  # noqa: E402
from ros2_monodepth.core.networks import DepthNet, PoseNet  # noqa: E402

# Stated tolerances (fp32 graph vs fp32 eager; differences are operator-order rounding).
DEPTH_REL_TOL = 1e-4
POSE_ABS_TOL = 1e-5


@pytest.fixture(scope="module")
def nets():
    torch.manual_seed(0)
    return DepthNet(18).eval(), PoseNet(18).eval()


@pytest.mark.parametrize("order,camera_res", [("rgb", False), ("bgr", True)])
def test_onnxruntime_matches_pytorch(tmp_path, nets, order, camera_res):
    depth_net, pose_net = nets
    info = export_onnx(depth_net, pose_net, tmp_path, (120, 160), (64, 128), 0.1, 100.0, order, camera_res)
    assert info.output_size == ((120, 160) if camera_res else (64, 128))
    err = onnxruntime_parity(depth_net, pose_net, tmp_path)
    assert err["depth_max_rel_error"] < DEPTH_REL_TOL
    assert err["pose_max_abs_error"] < POSE_ABS_TOL


def test_graph_inputs_and_outputs_are_static_uint8(tmp_path, nets):
    import onnx

    export_onnx(*nets, tmp_path, (120, 160), (64, 128), 0.1, 100.0)
    model = onnx.load(str(tmp_path / "depth.onnx"))
    inp = model.graph.input[0]
    assert inp.name == "image" and inp.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert [d.dim_value for d in inp.type.tensor_type.shape.dim] == [120, 160, 3]
    out = model.graph.output[0]
    assert out.name == "depth" and [d.dim_value for d in out.type.tensor_type.shape.dim] == [64, 128]
    assert model.opset_import[0].version == 17
    pose = onnx.load(str(tmp_path / "pose.onnx"))
    assert [i.name for i in pose.graph.input] == ["earlier", "later"]
    assert [d.dim_value for d in pose.graph.output[0].type.tensor_type.shape.dim] == [4, 4]


def test_backend_uses_the_checkpoint_export_and_matches_torch_backend(tmp_path, nets):
    save_checkpoint(tmp_path / "ck", *nets, CheckpointMetadata(network_size=(64, 128)))
    export_onnx(*nets, tmp_path / "ck" / "onnx", (120, 160), (64, 128), 0.1, 100.0)
    spec = ModelSpec(checkpoint_dir=str(tmp_path / "ck"), network_size=(64, 128))
    ort_backend, _ = create_backend("onnxruntime", spec)
    assert ort_backend.input_size == (120, 160)
    torch_backend, _ = create_backend("torch", spec)
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    b = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    d_ort, d_torch = ort_backend.depth(a), torch_backend.depth(a)
    assert np.abs(d_ort - d_torch).max() / d_torch.min() < DEPTH_REL_TOL
    assert np.abs(ort_backend.relative_pose(a, b) - torch_backend.relative_pose(a, b)).max() < POSE_ABS_TOL
    with pytest.raises(Exception, match="expected uint8"):
        ort_backend.depth(a[:10])


def test_a_pose_network_at_half_resolution_runs_the_same_in_every_backend(tmp_path, monkeypatch, nets):
    """pose_downscale 2 in the model contract: the loaded pose network, the cached ONNX graph (fp32 and int8) and the
    torch backend all shrink the pair before the encoder, and give the same motion; the same weights at full size
    give another motion and another cached graph."""
    import onnx

    from ros2_monodepth.core.checkpoint import load_checkpoint
    from ros2_monodepth.core.export import weights_fingerprint

    monkeypatch.setenv("ROS2_MONODEPTH_CACHE", str(tmp_path / "cache"))
    depth_net, pose_net = nets
    save_checkpoint(tmp_path / "half", depth_net, pose_net, CheckpointMetadata(network_size=(64, 128), pose_downscale=2))
    save_checkpoint(tmp_path / "full", depth_net, pose_net, CheckpointMetadata(network_size=(64, 128)))
    assert weights_fingerprint(tmp_path / "half") != weights_fingerprint(tmp_path / "full")
    _, loaded, meta = load_checkpoint(tmp_path / "half")
    assert meta.pose_downscale == 2 and loaded is not None and loaded.input_downscale == 2
    rng = np.random.default_rng(2)
    a = rng.integers(0, 256, (64, 128, 3), dtype=np.uint8)
    b = np.roll(a, 3, axis=1)
    poses = {}
    for name in ("half", "full"):
        spec = ModelSpec(checkpoint_dir=str(tmp_path / name), network_size=(64, 128))
        ort_backend, _ = create_backend("onnxruntime", spec)
        torch_backend, _ = create_backend("torch", spec)
        poses[name] = torch_backend.relative_pose(a, b)
        assert np.abs(ort_backend.relative_pose(a, b) - poses[name]).max() < POSE_ABS_TOL
    assert np.abs(poses["half"] - poses["full"]).max() > 10 * POSE_ABS_TOL    # untrained: motions near 1e-3
    half_graph = graph_set(ModelSpec(checkpoint_dir=str(tmp_path / "half"), network_size=(64, 128)))
    full_graph = graph_set(ModelSpec(checkpoint_dir=str(tmp_path / "full"), network_size=(64, 128)))
    assert half_graph.pose != full_graph.pose
    ops = {n.op_type for n in onnx.load(str(half_graph.pose)).graph.node}
    assert "AveragePool" in ops and "AveragePool" not in {n.op_type for n in onnx.load(str(full_graph.pose)).graph.node}


def test_the_half_resolution_depth_head_runs_the_same_in_every_backend_and_skips_the_last_stage(tmp_path, monkeypatch, nets):
    """depth_output_scale 1: the depth graph ends at the decoder's scale-1 disparity, upsampled bilinearly to the
    network size. The torch backend, the cached ONNX graph and its int8 form give that depth (not scale 0's), the
    graph does fewer multiply-accumulates, and the export is cached apart from scale 0's."""
    import torch.nn.functional as F

    from ros2_monodepth.core.geometry import disp_to_depth
    from ros2_monodepth.core.quantize import int8_files
    from ros2_monodepth.tools.bench.int8_peak import graph_macs

    monkeypatch.setenv("ROS2_MONODEPTH_CACHE", str(tmp_path / "cache"))
    depth_net, pose_net = nets
    save_checkpoint(tmp_path / "ck", depth_net, pose_net, CheckpointMetadata(network_size=(64, 128)))
    rng = np.random.default_rng(3)
    frame = rng.integers(0, 256, (64, 128, 3), dtype=np.uint8)
    with torch.no_grad():
        x = torch.from_numpy(frame).permute(2, 0, 1)[None].float() / 255.0
        disp = F.interpolate(depth_net(x, (1,))[1], size=(64, 128), mode="bilinear", align_corners=False)
        expected = disp_to_depth(disp, 0.1, 100.0)[1][0, 0].numpy()
        full = disp_to_depth(depth_net(x, (0,))[0], 0.1, 100.0)[1][0, 0].numpy()
    assert np.abs(full - expected).max() / expected.min() > 100 * DEPTH_REL_TOL     # the two heads differ
    specs = {s: ModelSpec(checkpoint_dir=str(tmp_path / "ck"), network_size=(64, 128), depth_output_scale=s)
             for s in (0, 1)}
    torch_backend, _ = create_backend("torch", specs[1])
    ort_backend, _ = create_backend("onnxruntime", specs[1])
    for got in (torch_backend.depth(frame), ort_backend.depth(frame)):
        assert got.shape == (64, 128) and np.abs(got - expected).max() / expected.min() < DEPTH_REL_TOL
    fp32 = {s: graph_set(specs[s]) for s in (0, 1)}
    assert fp32[0].depth.parent != fp32[1].depth.parent
    assert ExportInfo.read(fp32[1].depth.parent).depth_output_scale == 1
    assert graph_macs(fp32[1].depth) < 0.95 * graph_macs(fp32[0].depth)      # the last stage: 8 % of the MACs
    int8_spec = ModelSpec(checkpoint_dir=str(tmp_path / "ck"), network_size=(64, 128), depth_output_scale=1, precision="int8")
    int8 = graph_set(int8_spec)
    assert int8.depth.name == int8_files("onnxruntime")[0]
    int8_backend, _ = create_backend("onnxruntime", int8_spec)
    assert np.mean(np.abs(int8_backend.depth(frame) - expected) / expected) < 0.05
    info = json.loads((fp32[1].depth.parent / "export.json").read_text())
    info["depth_output_scale"] = 2
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "export.json").write_text(json.dumps(info))
    with pytest.raises(Exception, match="depth_output_scale must be 0 .* got 2"):
        ExportInfo.read(tmp_path / "bad")


def test_the_shared_pose_model_runs_the_same_in_every_backend_from_the_depth_passes_features(tmp_path, monkeypatch):
    """pose_model 'shared': the checkpoint holds no pose encoder, the depth graph also outputs the encoder's features,
    the pose graph takes two frames' features; ONNX Runtime (fp32, int8) and torch give the pose of a pair from the
    features their depth calls left (no encoder pass of their own), and the same pose when they have to compute them."""
    import onnx

    from ros2_monodepth.core.checkpoint import load_checkpoint

    monkeypatch.setenv("ROS2_MONODEPTH_CACHE", str(tmp_path / "cache"))
    torch.manual_seed(3)
    depth_net = DepthNet(18).eval()
    pose_net = PoseNet(18, shared_encoder=depth_net.encoder).eval()
    save_checkpoint(tmp_path / "ck", depth_net, pose_net, CheckpointMetadata(network_size=(64, 128)))
    assert not (tmp_path / "ck" / "pose_encoder.pth").exists()
    d2, p2, meta = load_checkpoint(tmp_path / "ck")
    assert meta.pose_model == "shared" and p2 is not None and p2.shared and p2.encoder is d2.encoder
    info = export_onnx(d2, p2, tmp_path / "onnx", (120, 160), (64, 128), 0.1, 100.0)
    assert info.pose_model == "shared"
    err = onnxruntime_parity(d2, p2, tmp_path / "onnx")
    assert err["depth_max_rel_error"] < DEPTH_REL_TOL and err["pose_max_abs_error"] < POSE_ABS_TOL
    assert err["features_max_abs_error"] < 1e-3
    assert [o.name for o in onnx.load(str(tmp_path / "onnx" / "depth.onnx")).graph.output] == ["depth", "features"]
    assert [i.name for i in onnx.load(str(tmp_path / "onnx" / "pose.onnx")).graph.input] == \
        ["earlier_features", "later_features"]
    rng = np.random.default_rng(4)
    a = rng.integers(0, 256, (64, 128, 3), dtype=np.uint8)
    b = np.roll(a, 3, axis=1)
    poses = {}
    for name, precision in (("torch", "fp32"), ("onnxruntime", "fp32"), ("onnxruntime", "int8")):
        backend, _ = create_backend(name, ModelSpec(checkpoint_dir=str(tmp_path / "ck"), network_size=(64, 128),
                                                    precision=precision))
        backend.depth(a)
        backend.depth(b)
        cached = backend.relative_pose(a, b)
        assert backend.features.misses == 0, name          # the pose decoder alone: both frames' features cached
        fresh = backend.relative_pose(a.copy(), b.copy())   # frames depth has not seen: computed, same pose
        assert backend.features.misses == 2 and np.abs(fresh - cached).max() < 1e-6
        poses[(name, precision)] = cached
    reference = poses[("torch", "fp32")]
    assert float(np.linalg.norm(reference[:3, 3])) > 10 * POSE_ABS_TOL
    assert np.abs(poses[("onnxruntime", "fp32")] - reference).max() < POSE_ABS_TOL
    # int8 end to end (features from the int8 depth graph): the translation within a quarter of its length
    t_ref, t_int8 = reference[:3, 3], poses[("onnxruntime", "int8")][:3, 3]
    assert np.linalg.norm(t_int8 - t_ref) < 0.25 * np.linalg.norm(t_ref)


def test_the_shared_pose_model_refuses_a_pose_downscale_and_a_separate_models_weights(tmp_path):
    from ros2_monodepth.core.model_contract import ContractError, check_metadata

    with pytest.raises(ContractError, match="pose_downscale"):
        check_metadata(CheckpointMetadata(pose_model="shared", pose_downscale=2), "m.json")
    with pytest.raises(ContractError, match="pose_model"):
        check_metadata(CheckpointMetadata(pose_model="tied"), "m.json")
    depth_net = DepthNet(18)
    with pytest.raises(ValueError, match="separate.*shared|decoders differ"):
        PoseNet(18, shared_encoder=depth_net.encoder).load_weights_of(PoseNet(18))


def test_backend_exports_once_into_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ROS2_MONODEPTH_CACHE", str(tmp_path / "cache"))
    spec = ModelSpec(network_size=(64, 128), seed=3)
    first = graph_set(spec)
    stamp = first.depth.stat().st_mtime_ns
    second = graph_set(spec)
    assert second.depth == first.depth and first.depth.stat().st_mtime_ns == stamp
    assert first.camera_size == (64, 128) and first.depth.parent.parent == tmp_path / "cache" / "onnx"
    other = graph_set(ModelSpec(network_size=(64, 128), seed=4))
    assert other.depth != first.depth


def test_auto_backend_choice_is_explained(tmp_path, monkeypatch):
    monkeypatch.setenv("ROS2_MONODEPTH_CACHE", str(tmp_path / "cache"))
    backend, why = create_backend("auto", ModelSpec(network_size=(64, 128), device="cpu", precision="fp32"))
    assert backend.name == "onnxruntime" and "auto chose onnxruntime" in why
    backend, why = create_backend("auto", ModelSpec(network_size=(64, 128), device="cpu", precision="bf16"))
    assert backend.name == "torch"


def test_export_command(tmp_path, nets):
    # trained on whole frames (crop none, as Monodepth2's KITTI weights): a graph at another camera size may squash
    save_checkpoint(tmp_path / "ck", *nets, CheckpointMetadata(network_size=(64, 128), crop="none"))
    help_run = subprocess.run([sys.executable, "-m", "ros2_monodepth.tools.export_cli", "--help"], capture_output=True, text=True)
    assert help_run.returncode == 0 and "--camera-size" in help_run.stdout
    # trained on a centre crop: a camera-size graph of another aspect would squash what training cropped
    save_checkpoint(tmp_path / "cropped", *nets, CheckpointMetadata(network_size=(64, 128), crop="center"))
    refused = subprocess.run([sys.executable, "-m", "ros2_monodepth.tools.export_cli", str(tmp_path / "cropped"),
                              "--camera-size", "160x120"], capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2 and "field 'crop'" in refused.stderr and "Traceback" not in refused.stderr
    assert not (tmp_path / "cropped" / "onnx" / "depth.onnx").exists()
    run = subprocess.run([sys.executable, "-m", "ros2_monodepth.tools.export_cli", str(tmp_path / "ck"),
                          "--camera-size", "160x120", "--channel-order", "bgr"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    errors = json.loads(run.stdout.split("onnxruntime vs PyTorch: ", 1)[1].splitlines()[0])
    assert errors["depth_max_rel_error"] < DEPTH_REL_TOL and errors["pose_max_abs_error"] < POSE_ABS_TOL
    info = ExportInfo.read(tmp_path / "ck" / "onnx")
    assert info.camera_size == (120, 160) and info.channel_order == "bgr"
    bad = subprocess.run([sys.executable, "-m", "ros2_monodepth.tools.export_cli", str(tmp_path / "missing")],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "not found" in bad.stderr


def _published_layout(folder, with_pose: bool, use_stereo: bool):
    """A folder shaped like the published Monodepth2 downloads (no metadata.json; pose files optional)."""
    torch.manual_seed(5)
    save_checkpoint(folder, DepthNet(18), PoseNet(18) if with_pose else None,
                    CheckpointMetadata(network_size=(192, 640), use_stereo=use_stereo))
    (folder / "metadata.json").unlink()


@pytest.mark.parametrize("with_pose,use_stereo", [(True, False), (False, True)])
def test_import_command(tmp_path, with_pose, use_stereo):
    from ros2_monodepth.core.checkpoint import load_checkpoint, read_metadata

    src = tmp_path / "mono2"
    _published_layout(src, with_pose, use_stereo)
    run = subprocess.run([sys.executable, "-m", "ros2_monodepth.tools.import_cli", str(src), "--out", str(tmp_path / "ck")],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "NON-COMMERCIAL" in run.stdout
    meta = read_metadata(tmp_path / "ck")
    assert (meta.network_size, meta.use_stereo, meta.has_pose) == ((192, 640), use_stereo, with_pose)
    assert meta.stereo_scale == 5.4 and "monodepth2 import" in meta.source
    d1, _, _ = load_checkpoint(src)
    d2, _, _ = load_checkpoint(tmp_path / "ck")
    x = torch.rand(1, 3, 64, 128)
    with torch.no_grad():
        assert torch.equal(d1(x)[0], d2(x)[0])


def test_import_refuses_a_wrong_file(tmp_path):
    src = tmp_path / "mono2"
    _published_layout(src, True, False)
    state = torch.load(src / "encoder.pth", weights_only=True)
    state["encoder.conv1.weight"] = torch.zeros(64, 3, 3, 3)
    torch.save(state, src / "encoder.pth")
    run = subprocess.run([sys.executable, "-m", "ros2_monodepth.tools.import_cli", str(src), "--out", str(tmp_path / "ck")],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 2 and "encoder.conv1.weight: shape [64, 3, 3, 3]" in run.stderr
    assert not (tmp_path / "ck").exists()


def test_export_command_tensorrt_without_tensorrt_says_where_to_build(tmp_path, nets):
    from ros2_monodepth.core.backends.tensorrt_backend import tensorrt_available

    if tensorrt_available():
        pytest.skip("TensorRT is importable here")
    save_checkpoint(tmp_path / "ck", *nets, CheckpointMetadata(network_size=(64, 128)))
    run = subprocess.run([sys.executable, "-m", "ros2_monodepth.tools.export_cli", str(tmp_path / "ck"), "--tensorrt", "fp16"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 3 and "cannot build TensorRT engines here" in run.stderr and "only the type stubs" in run.stderr
    assert (tmp_path / "ck" / "onnx" / "depth.onnx").is_file()
    needs_bag = subprocess.run([sys.executable, "-m", "ros2_monodepth.tools.export_cli", str(tmp_path / "ck"),
                                "--tensorrt", "int8"], capture_output=True, text=True, timeout=300)
    assert needs_bag.returncode == 2 and "--calibration-bag" in needs_bag.stderr


def test_one_feature_cache_miss_costs_one_encoder_pass_not_one_on_every_pair_after_it():
    """The shared pose model's cache, called as ``bench model`` calls a backend (depth of frame i + 1, then the pose
    of frames i, i + 1, the first frame never given to depth): one miss, then every pair finds both frames."""
    from ros2_monodepth.core.backends.base import FeatureCache

    cache = FeatureCache()
    frames = [np.full((8, 8, 3), i, np.uint8) for i in range(5)]
    computed = []

    def compute(image):
        computed.append(int(image[0, 0, 0]))
        return np.array([float(image[0, 0, 0])])

    for i in range(20):
        a, b = frames[i % 5], frames[(i + 1) % 5]
        cache.put(b, np.array([float(b[0, 0, 0])]))          # depth(b)
        assert cache.fetch(a, compute)[0] == a[0, 0, 0] and cache.fetch(b, compute)[0] == b[0, 0, 0]
    assert computed == [0] and cache.misses == 1

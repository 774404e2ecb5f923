"""Networks: shapes, the published Monodepth2 checkpoint layout, strict and safe loading."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from ros2_monodepth.core.checkpoint import (CheckpointError, CheckpointMetadata, load_checkpoint, read_metadata,
                                            save_checkpoint)
from ros2_monodepth.core.networks import DepthNet, PoseNet


@pytest.mark.parametrize("h,w", [(64, 128), (96, 320), (192, 640), (128, 96)])
def test_depth_net_scales_and_ranges(h, w):
    net = DepthNet(18).eval()
    with torch.no_grad():
        out = net(torch.rand(2, 3, h, w))
    assert sorted(out) == [0, 1, 2, 3]
    for s, disp in out.items():
        assert disp.shape == (2, 1, h // 2 ** s, w // 2 ** s)
        assert float(disp.min()) >= 0.0 and float(disp.max()) <= 1.0


def test_resnet50_channels_and_shapes():
    net = DepthNet(50).eval()
    assert net.encoder.num_ch_enc == [64, 256, 512, 1024, 2048]
    with torch.no_grad():
        feats = net.encoder(torch.rand(1, 3, 64, 96))
        out = net(torch.rand(1, 3, 64, 96))
    assert [f.shape[1] for f in feats] == [64, 256, 512, 1024, 2048]
    assert [tuple(f.shape[-2:]) for f in feats] == [(32, 48), (16, 24), (8, 12), (4, 6), (2, 3)]
    assert out[0].shape == (1, 1, 64, 96)


def test_pose_net_output_is_a_rigid_transform():
    net = PoseNet(18).eval()
    with torch.no_grad():
        aa, t = net(torch.rand(3, 3, 64, 128), torch.rand(3, 3, 64, 128))
        T = net.transform(torch.rand(3, 3, 64, 128), torch.rand(3, 3, 64, 128))
    assert aa.shape == (3, 3) and t.shape == (3, 3)
    assert T.shape == (3, 4, 4)
    R = T[:, :3, :3]
    np.testing.assert_allclose((R @ R.transpose(1, 2)).numpy(), np.broadcast_to(np.eye(3), (3, 3, 3)), atol=1e-5)
    np.testing.assert_allclose(T[:, 3].numpy(), np.broadcast_to([0, 0, 0, 1.0], (3, 4)))


def test_state_dict_keys_match_published_layout():
    depth, pose = DepthNet(18), PoseNet(18)
    enc = depth.encoder.state_dict()
    assert "encoder.conv1.weight" in enc and "encoder.fc.weight" in enc and "encoder.fc.bias" in enc
    assert "encoder.bn1.num_batches_tracked" in enc
    for layer in (1, 2, 3, 4):
        for block in (0, 1):
            for part in ("conv1", "bn1", "conv2", "bn2"):
                assert any(k.startswith(f"encoder.layer{layer}.{block}.{part}.") for k in enc)
    for layer in (2, 3, 4):
        assert f"encoder.layer{layer}.0.downsample.0.weight" in enc
        assert f"encoder.layer{layer}.0.downsample.1.running_mean" in enc
    assert "encoder.layer1.0.downsample.0.weight" not in enc
    dec = depth.decoder.state_dict()
    expected = {f"decoder.{i}.conv.conv.{p}" for i in range(10) for p in ("weight", "bias")}
    expected |= {f"decoder.{i}.conv.{p}" for i in range(10, 14) for p in ("weight", "bias")}
    assert set(dec) == expected
    # up-convolutions in the order (4,0), (4,1), (3,0), ... ; heads for scales 0..3
    assert dec["decoder.0.conv.conv.weight"].shape == (256, 512, 3, 3)
    assert dec["decoder.1.conv.conv.weight"].shape == (256, 256 + 256, 3, 3)
    assert dec["decoder.9.conv.conv.weight"].shape == (16, 16, 3, 3)
    assert dec["decoder.10.conv.weight"].shape == (1, 16, 3, 3)
    assert dec["decoder.13.conv.weight"].shape == (1, 128, 3, 3)
    assert pose.encoder.state_dict()["encoder.conv1.weight"].shape == (64, 6, 7, 7)
    p = pose.decoder.state_dict()
    assert {k: tuple(v.shape) for k, v in p.items() if k.endswith("weight")} == {
        "net.0.weight": (256, 512, 1, 1), "net.1.weight": (256, 256, 3, 3),
        "net.2.weight": (256, 256, 3, 3), "net.3.weight": (12, 256, 1, 1)}


def _randomise_bn(module: torch.nn.Module) -> None:
    g = torch.Generator().manual_seed(1)
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)


def test_checkpoint_round_trip_gives_identical_outputs(tmp_path):
    torch.manual_seed(0)
    depth, pose = DepthNet(18).eval(), PoseNet(18).eval()
    _randomise_bn(depth)
    _randomise_bn(pose)
    save_checkpoint(tmp_path, depth, pose, CheckpointMetadata(network_size=(64, 128), use_stereo=True))
    for name in ("encoder.pth", "depth.pth", "pose_encoder.pth", "pose.pth"):
        assert (tmp_path / name).is_file()
    enc = torch.load(tmp_path / "encoder.pth", weights_only=True)
    assert enc["height"] == 64 and enc["width"] == 128 and enc["use_stereo"] is True
    depth2, pose2, meta = load_checkpoint(tmp_path)
    x, y = torch.rand(1, 3, 64, 128), torch.rand(1, 3, 64, 128)
    with torch.no_grad():
        for s in range(4):
            assert torch.equal(depth(x)[s], depth2(x)[s])
        assert torch.equal(pose.transform(x, y), pose2.transform(x, y))
    assert meta.use_stereo and meta.num_layers == 18


def test_a_training_translation_gain_is_folded_into_the_saved_file_and_taken_back_on_resume(tmp_path):
    """A pose network trained with translation gain 8 saves as a plain published-layout file with the same function,
    and a gain-8 network resumed from it has exactly the weights it had (Adam's moments still fit them)."""
    from training.state import init_from_checkpoint

    torch.manual_seed(0)
    depth, pose = DepthNet(18).eval(), PoseNet(18, translation_gain=8.0).eval()
    _randomise_bn(pose)
    save_checkpoint(tmp_path, depth, pose, CheckpointMetadata(network_size=(64, 128)))
    saved = torch.load(tmp_path / "pose.pth", weights_only=True)
    assert set(saved) == set(PoseNet(18).decoder.state_dict())          # nothing but the published keys
    assert torch.equal(saved["net.3.weight"][3:6], pose.decoder.net[3].weight[3:6] * 8)
    assert torch.equal(saved["net.3.weight"][:3], pose.decoder.net[3].weight[:3])   # rotation rows untouched
    _, plain, _ = load_checkpoint(tmp_path)
    assert plain is not None and plain.decoder.translation_gain == 1.0
    x, y = torch.rand(1, 3, 64, 128), torch.rand(1, 3, 64, 128)
    with torch.no_grad():
        assert torch.equal(pose.transform(x, y), plain.transform(x, y))
        assert float(pose(x, y)[1].norm()) > 0
    resumed = PoseNet(18, translation_gain=8.0)
    init_from_checkpoint(tmp_path, DepthNet(18), resumed)
    for key, value in pose.state_dict().items():
        assert torch.equal(resumed.state_dict()[key], value), key
    with pytest.raises(ValueError, match="power of two"):
        PoseNet(18, translation_gain=10.0)


def test_plain_monodepth2_folder_without_metadata(tmp_path):
    depth, pose = DepthNet(18), PoseNet(18)
    save_checkpoint(tmp_path, depth, pose, CheckpointMetadata(network_size=(192, 640)))
    (tmp_path / "metadata.json").unlink()
    meta = read_metadata(tmp_path)
    assert (meta.network_size, meta.source, meta.has_pose) == ((192, 640), "monodepth2", True)


def test_wrong_key_is_named(tmp_path):
    save_checkpoint(tmp_path, DepthNet(18), PoseNet(18), CheckpointMetadata())
    state = torch.load(tmp_path / "depth.pth", weights_only=True)
    state["decoder.99.conv.weight"] = state.pop("decoder.13.conv.weight")
    torch.save(state, tmp_path / "depth.pth")
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(tmp_path)
    assert "depth.pth" in str(err.value)
    assert "missing keys: decoder.13.conv.weight" in str(err.value)
    assert "unexpected keys: decoder.99.conv.weight" in str(err.value)


def test_wrong_shape_is_named(tmp_path):
    save_checkpoint(tmp_path, DepthNet(18), PoseNet(18), CheckpointMetadata())
    state = torch.load(tmp_path / "pose.pth", weights_only=True)
    state["net.3.weight"] = torch.zeros(6, 256, 1, 1)
    torch.save(state, tmp_path / "pose.pth")
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(tmp_path)
    assert "pose.pth" in str(err.value) and "net.3.weight: shape [6, 256, 1, 1]" in str(err.value)


class _Evil:
    def __reduce__(self):
        return (print, ("unpickled!",))


def test_arbitrary_pickles_are_refused(tmp_path):
    save_checkpoint(tmp_path, DepthNet(18), None, CheckpointMetadata())
    with open(tmp_path / "depth.pth", "wb") as f:
        pickle.dump({"decoder.0.conv.conv.weight": _Evil()}, f)
    with pytest.raises(CheckpointError, match="weights-only"):
        load_checkpoint(tmp_path)


def _reflect_conv(x, w, b):
    return torch.nn.functional.conv2d(torch.nn.functional.pad(x, (1, 1, 1, 1), mode="reflect"), w, b)


def _edge_conv(x, w, b):
    return torch.nn.functional.conv2d(torch.nn.functional.pad(x, (1, 1, 1, 1), mode="replicate"), w, b)


def test_subpixel_identities_hold_at_every_pixel_and_border():
    from ros2_monodepth.core.subpixel import shuffled_conv_weights, upsampled_conv_weights

    F = torch.nn.functional
    g = torch.Generator().manual_seed(3)
    w, b = torch.randn(3, 5, 3, 3, generator=g), torch.randn(3, generator=g)
    x = torch.randn(2, 5, 6, 7, generator=g)
    reference = _reflect_conv(F.interpolate(x, scale_factor=2.0, mode="nearest"), w, b)
    torch.testing.assert_close(F.pixel_shuffle(_edge_conv(x, *upsampled_conv_weights(w, b)), 2), reference,
                               atol=1e-5, rtol=1e-5)
    z = torch.randn(2, 20, 6, 7, generator=g)
    reference = _reflect_conv(F.pixel_shuffle(z, 2), w, b)
    torch.testing.assert_close(F.pixel_shuffle(_edge_conv(z, *shuffled_conv_weights(w, b)), 2), reference,
                               atol=1e-5, rtol=1e-5)


def test_subpixel_head_gives_the_reference_depth():
    from ros2_monodepth.core.inference_model import DepthInference

    torch.manual_seed(0)
    net = DepthNet(18).eval()
    with torch.no_grad():
        for p in net.decoder.parameters():  # weights that make the disparity vary across the image
            p.normal_(0.0, 0.04)
        image = torch.randint(0, 256, (64, 96, 3), dtype=torch.uint8)
        reference = DepthInference(net, (64, 96), 0.1, 100.0)(image)
        subpixel = DepthInference(net, (64, 96), 0.1, 100.0, subpixel_head=True)(image)
    assert float(reference.std() / reference.mean()) > 1e-3
    torch.testing.assert_close(subpixel, reference, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("bgr", [False, True])
def test_pose_inference_stacks_uint8_frames_in_the_order_posenet_does(bgr):
    """The deployed pose wrapper stacks the two uint8 frames before converting them; the result must be the
    network's own forward on each frame converted alone (with a resize and a channel swap on the way)."""
    from ros2_monodepth.core.geometry import pose_params_to_matrix
    from ros2_monodepth.core.inference_model import PoseInference, image_u8_to_network_input

    torch.manual_seed(0)
    net = PoseNet(18).eval()
    earlier = torch.randint(0, 256, (72, 100, 3), dtype=torch.uint8)
    later = torch.roll(earlier, 3, dims=1)
    with torch.no_grad():
        for p in net.decoder.parameters():   # a pose far from the untrained near-zero one
            p.normal_(0.0, 0.05)
        a = image_u8_to_network_input(earlier, (64, 96), bgr)
        b = image_u8_to_network_input(later, (64, 96), bgr)
        axis_angle, translation = net(a, b)
        expected = pose_params_to_matrix(axis_angle, translation, invert=True)[0]
        got = PoseInference(net, (64, 96), bgr)(earlier, later)
        swapped = PoseInference(net, (64, 96), bgr)(later, earlier)
    assert float(expected[:3, 3].norm()) > 1e-4
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(swapped, expected, atol=1e-6)   # the order of the frames matters
    if bgr:   # each frame's channels are swapped, not the six as one block
        torch.testing.assert_close(a, image_u8_to_network_input(earlier.flip(-1), (64, 96), False), rtol=0, atol=0)

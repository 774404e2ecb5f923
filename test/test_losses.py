"""Loss pieces against values worked out by hand, and view synthesis with the true depth and pose."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ros2_monodepth.core.geometry import se3_inverse
from ros2_monodepth.core.synthetic import SceneConfig, SyntheticSequence, TrajectoryConfig
from ros2_monodepth_training.losses import (combine_reprojection, photometric_error, smoothness_loss, smoothness_weight,
                                            ssim_loss)
from ros2_monodepth_training.warp import warp_source_to_target


def test_ssim_of_equal_images_is_zero_loss():
    x = torch.rand(2, 3, 8, 9)
    assert float(ssim_loss(x, x).abs().max()) < 1e-6
    assert float(photometric_error(x, x).abs().max()) < 1e-6


def test_photometric_error_of_constant_images_by_hand():
    # constant a = 0.2, b = 0.6: sigmas are 0, so SSIM = (2*0.12 + C1) / (0.04 + 0.36 + C1)
    a, b = torch.full((1, 3, 5, 5), 0.2, dtype=torch.float64), torch.full((1, 3, 5, 5), 0.6, dtype=torch.float64)
    c1 = 0.01 ** 2
    ssim = (2 * 0.2 * 0.6 + c1) / (0.2 ** 2 + 0.6 ** 2 + c1)
    expected = 0.85 * (1 - ssim) / 2 + 0.15 * 0.4
    np.testing.assert_allclose(photometric_error(a, b).numpy(), expected, rtol=1e-5)


def test_shifted_box_filter_equals_the_convolution_with_its_gradient():
    from ros2_monodepth_training.losses import ShiftedBoxMean, box_mean_3x3

    x = torch.rand(2, 3, 7, 9, dtype=torch.float64, requires_grad=True)
    torch.testing.assert_close(ShiftedBoxMean.apply(x), box_mean_3x3(x))
    assert torch.autograd.gradcheck(ShiftedBoxMean.apply, (x,))   # the hand-written backward is the transpose
    a, b = torch.rand(2, 3, 12, 20), torch.rand(2, 3, 12, 20)
    torch.testing.assert_close(photometric_error(a, b, box="shifted"), photometric_error(a, b), atol=1e-6, rtol=1e-5)


def test_per_pixel_minimum_and_average():
    reproj = torch.tensor([[[[0.3, 0.1]], [[0.2, 0.5]]]])  # (B=1, S=2, H=1, W=2)
    loss, mask = combine_reprojection(reproj, None, per_pixel_min=True)
    np.testing.assert_allclose(loss.numpy(), [[[0.2, 0.1]]])
    assert mask.all()
    loss, _ = combine_reprojection(reproj, None, per_pixel_min=False)
    np.testing.assert_allclose(loss.numpy(), [[[0.25, 0.3]]], rtol=1e-6)


def test_identity_automask_by_hand():
    reproj = torch.tensor([[[[0.3, 0.1, 0.2]], [[0.2, 0.5, 0.2]]]])
    identity = torch.tensor([[[[0.1, 0.4, 0.2]], [[0.9, 0.9, 0.2]]]])
    loss, mask = combine_reprojection(reproj, identity)
    # pixel 0: identity 0.1 beats reprojection 0.2 -> masked (static / moving-with-camera pixel)
    # pixel 1: reprojection 0.1 beats identity 0.4 -> kept
    # pixel 2: a tie (0.2 vs 0.2): the tiny bias keeps the reprojection
    assert mask.tolist() == [[[False, True, True]]]
    np.testing.assert_allclose(loss.numpy(), [[[0.1 + 1e-5, 0.1, 0.2]]], rtol=1e-5)


def test_smoothness_of_constant_disparity_is_zero_and_weights_halve():
    disp = torch.full((1, 1, 6, 7), 0.3)
    assert float(smoothness_loss(disp, torch.rand(1, 3, 6, 7))) == 0.0
    ramp = torch.arange(7.0).repeat(1, 1, 6, 1) + 1
    flat_image = torch.zeros(1, 3, 6, 7)
    # mean-normalised ramp 1..7 has mean 4: steps of 1/4 in x, none in y; image edges absent -> exp(0) = 1
    assert float(smoothness_loss(ramp, flat_image)) == pytest.approx(0.25, rel=1e-5)
    assert [smoothness_weight(s) for s in range(4)] == [1e-3, 5e-4, 2.5e-4, 1.25e-4]


def test_warping_with_true_depth_and_pose_reconstructs_the_target():
    seq = SyntheticSequence(SceneConfig(seed=2, num_boxes=30), TrajectoryConfig(num_frames=4, fps=10.0, speed=3.0), 160, 96)
    _, target, depth_t, T_w_t, _ = seq.frame(2)
    _, source, _, T_w_s, _ = seq.frame(3)
    valid = np.isfinite(depth_t) & (depth_t < 60)
    depth = torch.from_numpy(np.where(valid, depth_t, 60.0)).float()[None, None]
    K = torch.from_numpy(seq.K).float()[None]
    T_s_t = torch.from_numpy(se3_inverse(T_w_s) @ T_w_t).float()[None]
    to_t = lambda im: torch.from_numpy(im).permute(2, 0, 1).float()[None] / 255.0  # noqa: E731
    warped = warp_source_to_target(to_t(source), depth, K, T_s_t)
    err_warp = (warped - to_t(target)).abs().mean(1)[0].numpy()
    err_identity = (to_t(source) - to_t(target)).abs().mean(1)[0].numpy()
    inner = valid.copy()
    inner[:, :12] = inner[:, -12:] = False  # pixels that leave the source frame's view
    inner[:8] = inner[-8:] = False
    assert np.median(err_warp[inner]) < 0.02
    assert np.mean(err_warp[inner]) < 0.5 * np.mean(err_identity[inner])
    # and the true depth explains the pair better than a wrong one
    wrong = warp_source_to_target(to_t(source), depth * 1.5, K, T_s_t)
    err_wrong = (wrong - to_t(target)).abs().mean(1)[0].numpy()
    assert np.mean(err_warp[inner]) < 0.8 * np.mean(err_wrong[inner])


def test_batched_objective_equals_the_plain_per_scale_loss_in_fp32():
    """The training objective batches scales and sources into one warp and one SSIM; in fp32 it must give the
    loss of the plain implementation (one warp / SSIM per source and scale) on the same batch and weights."""
    from ros2_monodepth.tools.bench.train import _plain_loss, _plain_photometric_error
    from ros2_monodepth_training.losses import photometric_error
    from ros2_monodepth_training.objective import LossConfig, TripletBatch
    from ros2_monodepth_training.train import TrainingModel

    torch.manual_seed(0)
    a, b = torch.rand(2, 3, 32, 48), torch.rand(2, 3, 32, 48)
    assert torch.allclose(photometric_error(a, b), _plain_photometric_error(a, b), atol=1e-5)
    model = TrainingModel(18, LossConfig()).eval()
    images = torch.rand(2, 3, 3, 64, 96)
    K = torch.tensor([[60.0, 0, 47.5], [0, 60.0, 31.5], [0, 0, 1]]).repeat(2, 1, 1)
    batch = {"images": images, "aug": images, "K": K}
    with torch.no_grad():
        ours = float(model(TripletBatch.of(batch)).total)
        plain = float(_plain_loss(model.depth, model.pose, batch))
    assert abs(ours - plain) / plain < 1e-5


def test_compiled_photometric_error_matches_eager_and_falls_back_when_compilation_fails(capsys):
    from ros2_monodepth_training.train import CompiledPhotometric, want_compiled_loss

    torch.manual_seed(1)
    a, b = torch.rand(2, 3, 24, 40, requires_grad=True), torch.rand(2, 3, 24, 40)
    compiled = CompiledPhotometric()
    got = compiled(a, b)
    assert not compiled.failed
    assert torch.allclose(got, photometric_error(a, b), atol=1e-5)
    got.sum().backward()   # the compiled backward (shifted box filter) gives the eager gradient
    compiled_grad, a.grad = a.grad, None
    photometric_error(a, b).sum().backward()
    torch.testing.assert_close(compiled_grad, a.grad, atol=1e-6, rtol=1e-4)

    def broken(*args):
        raise RuntimeError("no C++ compiler")

    compiled.compiled = broken
    again = compiled(a, b)
    assert compiled.failed and torch.allclose(again, photometric_error(a, b))
    assert "torch.compile of the loss failed" in capsys.readouterr().err
    assert want_compiled_loss("off", torch.device("cpu")) is False
    assert want_compiled_loss("on", torch.device("cuda")) is True
    assert want_compiled_loss("auto", torch.device("cuda")) is False

"""Two-view geometry (training/two_view.py) against the synthetic bags' ground-truth poses."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from ros2_monodepth_training.evaluate import read_ground_truth
from ros2_monodepth_training.synth_bag import IMAGE_TOPIC, POSE_TOPIC, SynthConfig, write_synthetic_bag
from ros2_monodepth_training.two_view import direction_angle, motion_from_points, relative_motion, rotation_angle


@pytest.mark.parametrize("width, height", [(320, 96), (640, 480)])
def test_large_motion_gives_the_travel_direction_and_rotation_of_the_ground_truth(tmp_path, width, height):
    """1 m a frame with turns and weaving (the pose bench's motion), a wide and a 4:3 camera: the estimate is
    there for nearly every pair, points forward, and agrees with the ground truth within a few degrees."""
    bag = write_synthetic_bag(SynthConfig(tmp_path / "fast", frames=24, width=width, height=height, seed=10, speed=10.0,
                                          yaw_amplitude=0.15, lateral_amplitude=1.5), progress=False)
    frames, K = read_ground_truth([bag], IMAGE_TOPIC, None, POSE_TOPIC)
    rotation_errors, direction_errors, missing = [], [], 0
    for first, second in zip(frames[:-1], frames[1:]):
        motion = relative_motion(first.rgb, second.rgb, K)
        if motion is None:
            missing += 1
            continue
        T_first_second = np.linalg.inv(first.pose) @ second.pose
        rotation_errors.append(np.degrees(rotation_angle(motion.rotation.T @ T_first_second[:3, :3])))
        direction_errors.append(np.degrees(direction_angle(motion.direction, T_first_second[:3, 3])))
        assert motion.direction[2] > 0.5, f"the camera drives forward, the estimate says {motion.direction}"
    assert missing <= 2, f"{missing} of {len(frames) - 1} pairs without an estimate"
    assert np.median(rotation_errors) < 1.0, rotation_errors
    assert np.median(direction_errors) < 10.0, direction_errors


def test_no_parallax_gives_no_estimate_rather_than_a_guess():
    """A camera that only turns (or stands still) fixes no translation direction: None, not a random one."""
    rng = np.random.default_rng(1)
    K = np.array([[200.0, 0, 160], [0, 200.0, 48], [0, 0, 1]])
    points = np.c_[rng.uniform(-4, 4, 300), rng.uniform(-1, 1, 300), rng.uniform(2, 12, 300)]
    project = lambda X: (X @ K.T)[:, :2] / X[:, 2:]  # noqa: E731
    import cv2

    R_12 = cv2.Rodrigues(np.array([0.0, 0.08, 0.0]))[0]
    noise = rng.normal(0, 0.2, (300, 2))
    assert motion_from_points(project(points), project(points @ R_12) + noise, K) is None  # turning on the spot
    assert motion_from_points(project(points), project(points) + noise, K) is None         # standing still
    # exactly still (a camera that never moves, a repeated frame): OpenCV's five-point solver fails on such points
    assert motion_from_points(project(points), project(points), K) is None
    frame = (rng.uniform(0, 255, (96, 320, 3))).astype(np.uint8)
    assert relative_motion(frame, frame.copy(), K) is None
    moved = motion_from_points(project(points), project((points - [0.0, 0.0, 1.0]) @ R_12) + noise, K)
    assert moved is not None and direction_angle(moved.direction, np.array([0.0, 0.0, 1.0])) < np.radians(5)


def test_shapes_are_checked_at_the_door():
    K = np.eye(3)
    with pytest.raises(ValueError, match="same number of points"):
        motion_from_points(np.zeros((10, 2)), np.zeros((9, 2)), K)
    with pytest.raises(ValueError, match=r"K must be \(3, 3\)"):
        motion_from_points(np.zeros((10, 2)), np.zeros((10, 2)), np.eye(4))
    with pytest.raises(ValueError, match="uint8"):
        relative_motion(np.zeros((8, 8), np.float32), np.zeros((8, 8), np.float32), K)
    with pytest.raises(ValueError, match="differ in size"):
        relative_motion(np.zeros((8, 8), np.uint8), np.zeros((8, 9), np.uint8), K)


@pytest.fixture(scope="module")
def fast_bag(tmp_path_factory):
    return write_synthetic_bag(SynthConfig(tmp_path_factory.mktemp("fast") / "bag", frames=16, width=320, height=96,
                                           seed=10, speed=10.0, yaw_amplitude=0.15, lateral_amplitude=1.5),
                               progress=False)


def test_the_dataset_gives_each_triplet_its_two_view_prior_in_the_pose_networks_convention(fast_bag):
    """T_prev_cur (where the current camera is, seen from the previous one) points forward; T_next_cur points back;
    a mirrored sample gets the mirrored prior; without the option there is none."""
    from ros2_monodepth_training.dataset import (Augmentation, IndexOptions, TripletDataset, index_frames,
                                                 make_triplets)

    index = index_frames([fast_bag], IndexOptions(static_threshold=0.0), progress=False)
    triplets = make_triplets(index)
    plain = TripletDataset(index, triplets, (64, 192))
    assert "prior" not in plain[0]
    data = TripletDataset(index, triplets, (64, 192), augmentation=Augmentation(enabled=True), pose_prior=True)
    frames, _ = read_ground_truth([fast_bag], IMAGE_TOPIC, None, POSE_TOPIC)
    checked = mirrored = 0
    for i in range(len(data)):
        unflipped = data[i]["prior"].double().numpy()
        if not np.isfinite(unflipped).all():
            continue
        _, c = (int(v) for v in triplets[i])
        truth = np.linalg.inv(frames[c - 1].pose) @ frames[c].pose   # T_prev_cur
        assert direction_angle(unflipped[0, :3, 3], truth[:3, 3]) < np.radians(20)
        assert unflipped[0, 2, 3] > 0.5 and unflipped[1, 2, 3] < -0.5
        checked += 1
        for seed in range(8):  # some of these augmentation seeds mirror the sample (p = 0.5 each)
            sample = data[(i, seed)]
            if torch.equal(sample["images"], data[i]["images"].flip(-1)):
                flip = np.diag([-1.0, 1.0, 1.0, 1.0])
                np.testing.assert_allclose(sample["prior"].double().numpy(), flip @ unflipped @ flip, atol=1e-6)
                mirrored += 1
            else:
                np.testing.assert_allclose(sample["prior"].double().numpy(), unflipped, atol=1e-6)
    assert checked >= len(data) - 2 and mirrored >= 1


def test_the_prior_pulls_the_pose_network_and_is_off_by_default(fast_bag):
    """With a weight, the loss holds the prior term (weighted, faded) and its gradient reaches the pose network;
    the default loss has no such term."""
    from ros2_monodepth.core.networks import DepthNet, PoseNet
    from ros2_monodepth_training.dataset import IndexOptions, TripletDataset, index_frames, make_triplets
    from ros2_monodepth_training.objective import LossConfig, TripletBatch, self_supervised_loss

    index = index_frames([fast_bag], IndexOptions(static_threshold=0.0), progress=False)
    data = TripletDataset(index, make_triplets(index)[:4], (64, 192), pose_prior=True)
    batch = TripletBatch.of(torch.utils.data.default_collate([data[i] for i in range(4)]))
    torch.manual_seed(0)
    depth_net, pose_net = DepthNet(18), PoseNet(18)
    base = self_supervised_loss(depth_net, pose_net, batch, LossConfig())
    assert "pose_prior" not in base.terms
    guided = self_supervised_loss(depth_net, pose_net, batch, LossConfig(pose_prior=2.0, pose_prior_share=0.5))
    assert guided.terms["pose_prior_pairs"] >= 6
    assert guided.terms["pose_prior"] > 0
    assert float(guided.total.detach()) == pytest.approx(float(base.total) + 1.0 * guided.terms["pose_prior"], rel=1e-4)
    pose_net.zero_grad()
    guided.total.backward()
    assert any(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in pose_net.parameters())


def test_a_run_with_the_prior_says_how_many_pairs_it_guides(fast_bag, tmp_path, capsys):
    """ros2-monodepth-train on large motion: the start report names the prior's coverage (auto, the default), the
    prior's figures are logged, summary.json says it was used; bad options are refused."""
    from ros2_monodepth_training.config import parse_train_args
    from ros2_monodepth_training.train import train

    summary = train(parse_train_args([str(fast_bag), "--network-size", "192x64", "--batch-size", "2", "--workers", "0",
                                      "--no-progress", "--precision", "fp32", "--num-layers", "18", "--log-every", "1",
                                      "--static-threshold", "0", "--max-steps", "3", "--stuck-check-steps", "0",
                                      "--pose-prior-steps", "2", "--out", str(tmp_path / "run")]))
    printed = capsys.readouterr().out
    assert "two-view pose prior (weight 1, fading out over 2 steps)" in printed, printed
    assert "--pose-prior auto" in printed and (tmp_path / "run" / "two_view_prior.npz").is_file()
    assert summary["data"]["pose_prior"]["used"] and summary["data"]["pose_prior"]["mode"] == "auto"
    known, used = (int(v) for v in re.search(r"over 2 steps\): (\d+) of (\d+) training frame pairs", printed).groups())
    assert used >= 8 and known >= used - 1, printed
    assert "WARNING: the pose prior" not in printed
    assert summary["steps"] == 3 and summary["last"]["pose_prior_pairs"] >= 2
    for bad in (["--pose-prior-weight", "-1"], ["--pose-prior", "sometimes"], ["--pose-prior-floor", "1.5"],
                ["--pose-prior", "on", "--no-monocular", "--stereo", "--right-topic", "/r", "--right-camera-info-topic", "/ri"]):
        with pytest.raises(SystemExit):
            parse_train_args([str(fast_bag), *bad])


def _count_estimates(monkeypatch):
    """Counts the two-view estimates that training computes (the cache and the probe are judged by it)."""
    import ros2_monodepth_training.two_view as two_view

    calls = []
    real = two_view.relative_motion

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(two_view, "relative_motion", counted)
    return calls


def test_auto_uses_the_prior_on_large_motion_and_keeps_the_estimates_for_the_next_run(fast_bag, tmp_path, monkeypatch):
    """--pose-prior auto on 1 m a frame: every pair computed and used; a second dataset on the same cache (a resume,
    a stuck-run restart) computes none and gives the same priors, as does computing them again; an unreadable cache is computed again."""
    from ros2_monodepth_training.dataset import IndexOptions, TripletDataset, index_frames, make_triplets

    index = index_frames([fast_bag], IndexOptions(static_threshold=0.0), progress=False)
    triplets = make_triplets(index)
    cache = tmp_path / "two_view_prior.npz"
    calls = _count_estimates(monkeypatch)
    first = TripletDataset(index, triplets, (64, 192), pose_prior="auto", prior_cache=cache)
    pairs = len(triplets) + 1   # consecutive triplets of one sequence share their pairs
    assert first.prior_decision.used and first.prior_decision.looked_at == pairs == len(calls)
    assert cache.is_file()
    calls.clear()
    again = TripletDataset(index, triplets, (64, 192), pose_prior="auto", prior_cache=cache)
    assert calls == [] and again.prior_decision == first.prior_decision
    np.testing.assert_array_equal(again.pair_motion[0], first.pair_motion[0])
    # computed again, on threads (OpenCV seeds its RANSAC per call): the same estimates whatever ran where
    fresh = TripletDataset(index, triplets, (64, 192), pose_prior="auto", prior_cache=tmp_path / "other.npz")
    np.testing.assert_array_equal(fresh.pair_motion[0], first.pair_motion[0])
    calls.clear()
    cache.write_bytes(b"not a zip file")
    third = TripletDataset(index, triplets, (64, 192), pose_prior="auto", prior_cache=cache)
    assert len(calls) == pairs and third.prior_decision == first.prior_decision
    off = TripletDataset(index, triplets, (64, 192), pose_prior="off", prior_cache=cache)
    assert not off.prior_decision.used and off.pair_motion == {} and "prior" not in off[0]


def test_auto_leaves_the_prior_out_on_small_motion_after_a_sample_of_the_pairs(tmp_path, monkeypatch):
    """The demo street's 0.1 m a frame: auto looks at AUTO_PROBE_PAIRS pairs spread over the recording, finds under
    half with an estimate and uses no prior (the few it accepts there are wrong: docs/research.md)."""
    from ros2_monodepth_training.dataset import IndexOptions, TripletDataset, index_frames, make_triplets
    from ros2_monodepth_training.pose_prior import AUTO_PROBE_PAIRS

    bag = write_synthetic_bag(SynthConfig(tmp_path / "street", frames=70, seed=3), progress=False)
    index = index_frames([bag], IndexOptions(static_threshold=0.0), progress=False)
    triplets = make_triplets(index)
    assert len(triplets) + 1 > AUTO_PROBE_PAIRS
    calls = _count_estimates(monkeypatch)
    data = TripletDataset(index, triplets, (64, 192), pose_prior="auto", prior_cache=tmp_path / "cache.npz")
    decision = data.prior_decision
    assert len(calls) == decision.looked_at == AUTO_PROBE_PAIRS
    assert not decision.used and decision.known < AUTO_PROBE_PAIRS / 2, decision
    assert "too little motion" in decision.reason and data.pair_motion == {} and "prior" not in data[0]

"""Training from bags: the synthetic bag writer, the dataset rules, the loop (steps lower the loss, resume is
exact, DDP with two gloo processes), and the evaluation metrics."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from ros2_monodepth.core.checkpoint import load_checkpoint
from ros2_monodepth.core.bags import BagError, list_topics
from ros2_monodepth_training.dataset import (IndexOptions, ResizePlan, SampleOrder, TripletDataset, index_frames, make_triplets,
                                             split_by_time)
from ros2_monodepth_training.evaluate import chain_trajectory, depth_errors, evaluate_odometry, read_ground_truth
from ros2_monodepth_training.objective import LossConfig, TripletBatch
from ros2_monodepth_training.synth_bag import (DEPTH_TOPIC, IMAGE_TOPIC, MASK_TOPIC, POSE_TOPIC, SynthConfig,
                                               write_synthetic_bag)
from ros2_monodepth_training.config import parse_train_args as parse_args
from ros2_monodepth_training.train import TrainingModel, train

TINY = ["--network-size", "64x64", "--batch-size", "2", "--workers", "0", "--no-progress", "--precision", "fp32",
        "--num-layers", "18", "--log-every", "1", "--image-every", "2"]


@pytest.fixture(scope="module")
def street_bag(tmp_path_factory) -> Path:
    """40 frames at 128x64 with a box moving with the camera and a still stretch (frames 20..24)."""
    out = tmp_path_factory.mktemp("bags") / "street"
    return write_synthetic_bag(SynthConfig(out, frames=40, width=128, height=64, moving_object=True, still=((20, 24),)),
                               progress=False)


def test_synthetic_bag_has_ground_truth_and_is_deterministic(street_bag, tmp_path):
    topics = list_topics([street_bag])
    assert topics[IMAGE_TOPIC] == ("sensor_msgs/msg/Image", 40)
    assert topics[DEPTH_TOPIC] == ("sensor_msgs/msg/Image", 40)
    assert topics[POSE_TOPIC] == ("geometry_msgs/msg/PoseStamped", 40)
    assert topics[MASK_TOPIC][1] == 40
    frames, K = read_ground_truth([street_bag], IMAGE_TOPIC, DEPTH_TOPIC, POSE_TOPIC, MASK_TOPIC)
    assert K[0, 0] > 0 and K[0, 2] == pytest.approx(63.5)
    f = frames[5]
    assert f.depth.dtype == np.float32 and f.depth.shape == (64, 128) and np.isinf(f.depth).any() and (f.depth[np.isfinite(f.depth)] > 0).all()
    assert f.mask.any()
    # the camera moves 0.1 m per frame except in the still stretch, where frames are identical
    step = np.linalg.norm(frames[6].pose[:3, 3] - frames[5].pose[:3, 3])
    assert step == pytest.approx(0.1, rel=0.2)
    np.testing.assert_array_equal(frames[21].rgb, frames[22].rgb)
    again = write_synthetic_bag(SynthConfig(tmp_path / "again", frames=40, width=128, height=64, moving_object=True,
                                            still=((20, 24),)), progress=False)
    np.testing.assert_array_equal(read_ground_truth([again], IMAGE_TOPIC, None, None)[0][7].rgb, frames[7].rgb)


def test_index_skips_static_frames_and_triplets_never_cross_a_gap(street_bag, tmp_path):
    index = index_frames([street_bag], IndexOptions())
    (seq,) = index.sequences
    assert seq.considered == 40 and seq.static_skipped == 5 and len(seq.raw) == 35
    assert set(seq.segments.tolist()) == {0}   # skipping still frames does not split the recording
    triplets = make_triplets(index)
    assert len(triplets) == len(seq.raw) - 2 and set(triplets[:, 0]) == {0}
    train_t, val_t = split_by_time(index, triplets, val_fraction=0.2)
    t = (seq.stamps - seq.stamps[0]) / 1e9
    assert len(val_t) > 0 and t[train_t[:, 1] + 1].max() < t[val_t[:, 1] - 1].min()
    everything = index_frames([street_bag], IndexOptions(static_threshold=0.0, stride=2))
    assert len(everything.sequences[0].raw) == 20


def test_many_recordings_and_cameras_are_each_their_own_sequence(tmp_path):
    """A car camera and a drone camera of different sizes and intrinsics, recorded over the same time span (their
    stamps overlap), and a third bag with two cameras: every sequence is used, cropped and resized with its own K,
    and no triplet mixes recordings or cameras."""
    car = write_synthetic_bag(SynthConfig(tmp_path / "car", frames=20, width=192, height=64, seed=1), progress=False)
    drone = write_synthetic_bag(SynthConfig(tmp_path / "drone", frames=16, width=96, height=72, seed=2, speed=2.0),
                                progress=False)
    index = index_frames([car, drone], IndexOptions(static_threshold=0.0))
    assert [s.name for s in index.sequences] == ["car:/camera/image_raw", "drone:/camera/image_raw"]
    assert [s.size for s in index.sequences] == [(64, 192), (72, 96)]
    assert index.sequences[0].stamps[0] == index.sequences[1].stamps[0]          # overlapping time lines
    triplets = make_triplets(index)
    assert {int(k) for k in triplets[:, 0]} == {0, 1} and len(triplets) == 18 + 14
    train_t, val_t = split_by_time(index, triplets, 0.2)
    ds = TripletDataset(index, train_t, (64, 64))
    Ks = {int(ds[i]["sequence"]): ds[i]["K"] for i in range(len(ds))}
    assert set(Ks) == {0, 1} and not torch.allclose(Ks[0], Ks[1])               # each camera's own intrinsics
    for k, seq in enumerate(index.sequences):
        assert ds.plans[k].K[0, 0] == pytest.approx(ResizePlan.make(seq.size, (64, 64), seq.K).K[0, 0])
    rows = index.summary((train_t, val_t))
    assert [r["train triplets"] > 0 and r["val triplets"] > 0 for r in rows] == [True, True]
    # the order of the bags does not matter, and a bag without the topic is reported, not fatal
    other = write_synthetic_bag(SynthConfig(tmp_path / "other", frames=6, width=64, height=64, compressed=True),
                                progress=False)
    index = index_frames([drone, other, car], IndexOptions(static_threshold=0.0))
    assert [bool(s.unusable) for s in index.sequences] == [False, True, False]
    assert "is not in this bag" in index.sequences[1].unusable and "/camera/image_raw/compressed" in index.sequences[1].unusable
    # two cameras of one bag: two sequences, each with the camera_info beside it
    both = index_frames([other], IndexOptions(topics=("/camera/image_raw/compressed",), static_threshold=0.0))
    assert both.sequences[0].size == (64, 64) and not both.sequences[0].unusable


def test_training_on_two_cameras_uses_both_and_reports_each(tmp_path):
    car = write_synthetic_bag(SynthConfig(tmp_path / "car", frames=14, width=128, height=64, seed=1), progress=False)
    drone = write_synthetic_bag(SynthConfig(tmp_path / "drone", frames=14, width=96, height=96, seed=2), progress=False)
    summary = train(parse_args([str(car), str(drone), *TINY, "--out", str(tmp_path / "run"), "--max-steps", "2",
                                "--static-threshold", "0"]))
    rows = {r["sequence"]: r for r in summary["data"]["sequences"]}
    assert set(rows) == {"car:/camera/image_raw", "drone:/camera/image_raw"}
    assert all(r["train triplets"] > 0 for r in rows.values())


def test_velocity_supervision_measures_the_cameras_travel_from_the_robots_odometry(tmp_path):
    from ros2_monodepth.core.checkpoint import read_metadata
    from ros2_monodepth_training.odometry_source import OdometrySource, attach_travel

    # 1 m/s at 10 Hz: 0.1 m per frame, the odometry 3 % long (drift) and a little noisy
    bag = write_synthetic_bag(SynthConfig(tmp_path / "odo", frames=16, width=96, height=64, odometry=True,
                                          odom_drift=0.03, odom_noise=0.001, depth=False), progress=False)
    index = index_frames([bag], IndexOptions(static_threshold=0.0))
    notes = attach_travel(index, OdometrySource(topic="/odom"))
    travel = index.sequences[0].travel
    assert travel is not None and len(travel) == 15 and np.isfinite(travel).all()
    assert float(np.median(travel)) == pytest.approx(0.103, rel=0.03)
    assert "base_link -> camera_optical_frame" in notes["odo:/camera/image_raw"]   # the mount from /tf_static
    # the same from the TF chain odom -> base_link
    by_tf = index_frames([bag], IndexOptions(static_threshold=0.0))
    attach_travel(by_tf, OdometrySource(tf_chain="odom:base_link"))
    np.testing.assert_allclose(by_tf.sequences[0].travel, travel, rtol=0.02)
    # a bag without odometry trains photometrically, and says so
    plain = write_synthetic_bag(SynthConfig(tmp_path / "plain", frames=16, width=96, height=64, seed=1), progress=False)
    mixed = index_frames([bag, plain], IndexOptions(static_threshold=0.0))
    notes = attach_travel(mixed, OdometrySource(topic="/odom"))
    assert "no odometry" in notes["plain:/camera/image_raw"] and np.isnan(mixed.sequences[1].travel).all()
    item = TripletDataset(mixed, make_triplets(mixed), (64, 96))[0]
    assert item["travel"].shape == (2,) and float(item["dt"][0]) == pytest.approx(0.1, abs=1e-6)
    # two steps from random networks: supervised, but the translation is nowhere near the odometry yet, so the
    # checkpoint must not claim metres (the node would publish a wrong scale as metric)
    summary = train(parse_args([str(bag), str(plain), *TINY, "--out", str(tmp_path / "run"), "--max-steps", "2",
                                "--static-threshold", "0", "--odometry-topic", "/odom", "--velocity-warmup", "0"]))
    assert 0.4 < summary["data"]["velocity_coverage"] < 0.6
    # 0.1 m a frame: Monodepth2's own translation scale (gain 1); the gain rule itself is translation_gain_for's
    assert summary["data"]["median_travel"] == pytest.approx(0.103, rel=0.05)
    assert summary["data"]["translation_gain"] == 1.0
    assert summary["last"]["velocity_pairs"] > 0 and summary["last"]["translation_scale_ratio"] < 0.5
    meta = read_metadata(tmp_path / "run" / "checkpoint")
    assert not meta.metric and not summary["scale"]["metric"]
    assert "NOT metric: velocity supervision from /odom" in meta.scale_source and "has not converged" in meta.scale_source
    with pytest.raises(SystemExit):
        parse_args([str(bag), "--out", "x", "--odometry-topic", "/odom", "--odometry-tf", "odom:base_link"])
    with pytest.raises(SystemExit):   # folding the gain into weights is exact only for powers of two
        parse_args([str(bag), "--out", "x", "--pose-translation-gain", "10"])
    assert parse_args([str(bag), "--out", "x", "--pose-translation-gain", "16"]).pose_translation_gain == 16.0
    assert parse_args([str(bag), "--out", "x"]).pose_translation_gain is None     # auto


def test_a_velocity_supervised_checkpoint_is_metric_only_once_translation_meets_the_odometry():
    from ros2_monodepth.core.checkpoint import CheckpointMetadata
    from ros2_monodepth_training.objective import ScaleConvergence, velocity_ramp
    from ros2_monodepth_training.train import checked_metadata

    meta = CheckpointMetadata(metric=True, scale_source="velocity supervision from /odom")
    check = ScaleConvergence(window=4)
    assert not checked_metadata(meta, check, stereo=False).metric               # warm-up: nothing measured yet
    for ratio in (0.02, 0.03, 0.5, 0.9):
        check.add(ratio)
    held = checked_metadata(meta, check, stereo=False)
    assert not held.metric and "0.265" in held.scale_source                       # median of the last four
    for ratio in (1.02, 0.98, 1.01, float("nan")):                                # a NaN batch is not a measurement
        check.add(ratio)
    done = checked_metadata(meta, check, stereo=False)
    assert done.metric and "translation / odometry 0.995" in done.scale_source   # 0.9, 1.02, 0.98, 1.01
    for ratio in (3.0, 3.1, 2.9, 3.0):                                            # diverged again: relative once more
        check.add(ratio)
    assert not checked_metadata(meta, check, stereo=False).metric
    assert checked_metadata(CheckpointMetadata(metric=True, scale_source="stereo"), ScaleConvergence(), stereo=True).metric
    # translation metric, but the full-resolution depth (what the node publishes) has not followed: not metric, and
    # the verdict says to train longer instead of calling the pose network stuck (a 1 m/frame run at step 240)
    from ros2_monodepth_training.verdict import LearningMonitor

    converged = ScaleConvergence(window=4)
    for ratio in (1.0, 0.99, 1.01, 1.0):
        converged.add(ratio)
    monitor = LearningMonitor(window=4)
    lagging = {"photometric": 0.087, "identity_photometric": 0.13, "automask_fraction": 0.5, "brightness_change": 0.002,
               "translation_share_x": 0.04, "translation_share_y": 0.02, "translation_share_z": 0.94,
               "translation_norm": 1.0, "translation_scale_ratio": 0.995,
               "loss/scale0": 0.087, "loss/scale1": 0.035, "loss/scale2": 0.035, "loss/scale3": 0.035}
    for step in range(1, 5):
        monitor.add(step, lagging)
    lag = checked_metadata(meta, converged, stereo=False, monitor=monitor)
    assert not lag.metric and "full-resolution depth has not followed" in lag.scale_source
    verdict = monitor.verdict(0.0, True, lag.metric, lag.scale_source)
    assert "not caught up" in verdict["cause"] and "stuck" not in verdict["cause"]
    assert verdict["evidence"]["full_resolution_lag"] == pytest.approx(2.49, abs=0.01)
    settled = LearningMonitor(window=4)
    for step in range(1, 5):
        settled.add(step, {**lagging, "photometric": 0.036, "loss/scale0": 0.036})
    assert checked_metadata(meta, converged, stereo=False, monitor=settled).metric
    # the loss weight: none during the warm-up, then a linear ramp
    assert [velocity_ramp(s, 50) for s in (1, 50, 75, 100, 101)] == [0.0, 0.0, 0.5, 1.0, 1.0]


def test_velocity_loss_pulls_the_translation_length_to_the_distance_travelled():
    from ros2_monodepth_training.objective import velocity_loss

    norms = torch.tensor([[0.5, 0.02], [0.2, 0.3]], requires_grad=True)
    travel = torch.tensor([[0.1, 0.01], [float("nan"), 0.3]])
    loss, ratio, n = velocity_loss(norms, travel, torch.full((2, 2), 0.1), min_speed=0.5)
    assert n == 2                                   # 0.01 m in 0.1 s is too slow, NaN is unknown
    loss.backward()
    assert loss.item() == pytest.approx((0.4 + 0.0) / 2)
    assert norms.grad[0, 0] > 0 and norms.grad[0, 1] == 0 and norms.grad[1, 0] == 0
    assert sorted(ratio.tolist()) == pytest.approx([1.0, 5.0])


def test_nothing_usable_is_an_error_naming_each_sequence_and_why(street_bag, tmp_path):
    still = write_synthetic_bag(SynthConfig(tmp_path / "still", frames=6, width=64, height=64, still=((0, 5),)), progress=False)
    with pytest.raises(BagError) as err:
        index_frames([street_bag, still], IndexOptions(topics=("/nope",)))
    assert "street:/nope" in str(err.value) and "still:/nope" in str(err.value) and "is not in this bag" in str(err.value)
    index = index_frames([still], IndexOptions())      # frames, but all static: usable sequence, no triplets
    with pytest.raises(BagError, match="no training triplets"):
        train(parse_args([str(still), *TINY, "--out", str(tmp_path / "r")]))
    assert len(index.sequences[0].raw) == 1


def test_resize_plan_crops_to_aspect_and_adjusts_intrinsics():
    K = np.array([[500.0, 0, 319.5], [0, 500.0, 239.5], [0, 0, 1]])
    plan = ResizePlan.make((480, 640), (192, 640), K, "center")
    assert plan.crop == (144, 0, 192, 640)
    np.testing.assert_allclose(plan.K, [[500, 0, 319.5], [0, 500, 95.5], [0, 0, 1]])
    plan = ResizePlan.make((480, 640), (96, 320), K, "bottom")
    assert plan.crop == (288, 0, 192, 640)
    np.testing.assert_allclose(plan.K[:2], [[250, 0, 159.5], [0, 250, (239.5 - 288 + 0.5) * 0.5 - 0.5]])
    # a point projects to the same place before and after
    X = np.array([0.3, 0.2, 2.0])
    u, v = (K @ X)[:2] / X[2]
    u2, v2 = (plan.K @ X)[:2] / X[2]
    assert u2 == pytest.approx((u + 0.5) * 0.5 - 0.5) and v2 == pytest.approx((v - 288 + 0.5) * 0.5 - 0.5)


def test_intrinsics_from_the_command_line_override_camera_info(street_bag):
    index = index_frames([street_bag], IndexOptions(camera_info_topics=("/none",), intrinsics=(80.0, 81.0, 64.0, 32.0)))
    np.testing.assert_allclose(index.sequences[0].K, [[80, 0, 64], [0, 81, 32], [0, 0, 1]])
    with pytest.raises(BagError, match="no camera_info with a valid K on '/none'"):
        index_frames([street_bag], IndexOptions(camera_info_topics=("/none",)))


def test_sample_order_is_deterministic_resumable_and_sharded():
    full = list(SampleOrder(10, seed=3))
    s = SampleOrder(10, seed=3)
    s.set_position(0, 4)
    assert list(s) == full[4:]
    s.set_position(1)
    assert list(s) != full   # a new permutation each epoch
    r0, r1 = SampleOrder(10, 3, 0, 2), SampleOrder(10, 3, 1, 2)
    assert sorted(i for i, _ in list(r0) + list(r1)) == list(range(10))


def test_dataset_sample_layout_and_augmentation(street_bag):
    index = index_frames([street_bag], IndexOptions())
    ds = TripletDataset(index, make_triplets(index), (64, 64))
    s = ds[0]
    assert s["images"].shape == (3, 3, 64, 64) and s["images"].dtype == torch.float32
    assert torch.equal(s["images"], s["aug"])
    assert 0 <= float(s["images"].min()) and float(s["images"].max()) <= 1
    from ros2_monodepth_training.dataset import Augmentation
    ds_aug = TripletDataset(index, make_triplets(index), (64, 64), augmentation=Augmentation())
    seen_flip = seen_jitter = False
    for seed in range(12):
        a = ds_aug[(0, seed)]
        assert torch.equal(a, ds_aug[(0, seed)]) if isinstance(a, torch.Tensor) else torch.equal(a["aug"], ds_aug[(0, seed)]["aug"])
        if torch.allclose(a["images"], s["images"].flip(-1)):
            seen_flip = True
            assert float(a["K"][0, 2]) == pytest.approx(63 - float(s["K"][0, 2]))
        if not torch.equal(a["images"], a["aug"]):
            seen_jitter = True
    assert seen_flip and seen_jitter


def _batch(bag: Path, size=(64, 64), n=2):
    index = index_frames([bag], IndexOptions())
    ds = TripletDataset(index, make_triplets(index)[:n], size)
    return TripletBatch.of({k: torch.stack([ds[i][k] for i in range(n)]) for k in ("images", "aug", "K")})


@pytest.mark.parametrize("cfg", [LossConfig(), LossConfig(automask=False, min_reprojection=False, full_res_multiscale=False),
                                 LossConfig(explainability=0.2)], ids=["monodepth2", "all-off", "explainability"])
def test_a_few_optimiser_steps_on_one_batch_lower_the_loss(street_bag, cfg):
    torch.manual_seed(0)
    batch = _batch(street_bag)
    model = TrainingModel(18, cfg)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    losses = []
    for _ in range(8):
        out = model(batch)
        opt.zero_grad()
        out.total.backward()
        opt.step()
        losses.append(float(out.total.detach()))
    assert np.isfinite(losses).all()
    assert losses[-1] < 0.9 * losses[0], losses


def test_the_shared_pose_model_trains_the_depth_encoder_through_the_pose_loss_and_saves_its_decoder_only(street_bag, tmp_path):
    """--pose-model shared: one encoder pass over the three frames; the optimiser holds each weight once; the pose
    loss reaches the depth encoder; the checkpoint is pose.pth without pose_encoder.pth, pose_model 'shared' in
    its contract, and a resumed run takes it back."""
    torch.manual_seed(0)
    batch = _batch(street_bag)
    model = TrainingModel(18, LossConfig(), pose_model="shared")
    params = [p for p in model.parameters() if p.requires_grad]
    assert len(params) == len({id(p) for p in params})
    assert model.pose is not None and model.pose.shared and model.pose.encoder is model.depth.encoder
    opt = torch.optim.Adam(params, lr=1e-4)
    losses = []
    for _ in range(8):
        out = model(batch)
        opt.zero_grad()
        out.total.backward()
        assert model.pose.decoder.net[0].weight.grad is not None
        opt.step()
        losses.append(float(out.total.detach()))
    assert losses[-1] < 0.9 * losses[0], losses
    # the pose decoder's gradient flows into the encoder: a loss of the pose alone moves encoder weights
    model.zero_grad()
    aug = batch.aug
    model.pose(aug[:, 0], aug[:, 1])[1].sum().backward()
    assert float(model.depth.encoder.encoder.conv1.weight.grad.abs().sum()) > 0

    common = [str(street_bag), *TINY, "--pose-model", "shared", "--epochs", "3", "--checkpoint-every", "100",
              "--out", str(tmp_path / "run")]
    train(parse_args(common + ["--max-steps", "2"]))
    ck = tmp_path / "run" / "checkpoint"
    assert (ck / "pose.pth").is_file() and not (ck / "pose_encoder.pth").exists()
    depth_net, pose_net, meta = load_checkpoint(ck)
    assert meta.pose_model == "shared" and pose_net is not None and pose_net.encoder is depth_net.encoder
    assert train(parse_args(common + ["--max-steps", "3", "--resume"]))["steps"] == 3
    with pytest.raises(SystemExit):
        parse_args([str(street_bag), "--pose-model", "shared", "--pose-downscale", "2"])


def test_stereo_source_trains(tmp_path):
    bag = write_synthetic_bag(SynthConfig(tmp_path / "stereo", frames=8, width=128, height=64, stereo_baseline=0.3), progress=False)
    index = index_frames([bag], IndexOptions(right_topic="/camera/right/image_raw", right_camera_info_topic="/camera/right/camera_info"))
    assert index.sequences[0].baseline == pytest.approx(0.3)
    ds = TripletDataset(index, make_triplets(index), (64, 64))
    s = ds[0]
    assert s["stereo"].shape == (3, 64, 64) and float(s["T_stereo"][0, 3]) == pytest.approx(-0.3)
    batch = {k: torch.stack([ds[i][k] for i in range(2)]) for k in ("images", "aug", "K", "stereo", "T_stereo")}
    model = TrainingModel(18, LossConfig(stereo=True))
    out = model(TripletBatch.of(batch))
    out.total.backward()
    assert np.isfinite(float(out.total.detach())) and model.depth.encoder.encoder.conv1.weight.grad is not None


def _params(ckpt: Path) -> dict:
    d, p, _ = load_checkpoint(ckpt)
    return {**{"d." + k: v for k, v in d.state_dict().items()}, **{"p." + k: v for k, v in p.state_dict().items()}}


def test_resumed_run_ends_with_the_same_parameters_as_an_uninterrupted_one(street_bag, tmp_path):
    common = [str(street_bag), *TINY, "--epochs", "3", "--checkpoint-every", "100"]
    train(parse_args(common + ["--out", str(tmp_path / "straight"), "--max-steps", "7"]))
    # interrupted after 3 steps (mid-epoch), then resumed to the same 7 steps
    train(parse_args(common + ["--out", str(tmp_path / "parts"), "--max-steps", "3"]))
    state = torch.load(tmp_path / "parts" / "checkpoint" / "training_state.pt", weights_only=True)
    assert state["step"] == 3 and state["epoch"] == 0 and state["done_in_epoch"] == 6
    summary = train(parse_args(common + ["--out", str(tmp_path / "parts"), "--max-steps", "7", "--resume"]))
    assert summary["steps"] == 7
    a, b = _params(tmp_path / "straight" / "checkpoint"), _params(tmp_path / "parts" / "checkpoint")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6, msg=k)
    # and the run really moved away from its start
    fresh = TrainingModel(18, LossConfig())
    assert not torch.allclose(fresh.depth.decoder.state_dict()["decoder.13.conv.weight"], a["d.decoder.decoder.13.conv.weight"])
    assert (tmp_path / "straight" / "tensorboard").is_dir()
    assert json.loads((tmp_path / "straight" / "summary.json").read_text())["steps"] == 7


def test_torchrun_two_cpu_processes_gloo(street_bag, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(29500 + os.getpid() % 1000),
           "-m", "ros2_monodepth_training.train", str(street_bag), "--out", str(tmp_path / "ddp"), *TINY, "--epochs", "1",
           "--max-steps", "2", "--threads", "1"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "2 process(es)" in r.stdout
    summary = json.loads((tmp_path / "ddp" / "summary.json").read_text())
    assert summary["steps"] == 2
    load_checkpoint(tmp_path / "ddp" / "checkpoint")


def test_depth_errors_by_hand():
    gt = np.array([1.0, 2.0, 4.0])
    pred = np.array([1.0, 2.4, 2.0])       # ratios 1, 1.2, 2
    e = depth_errors(gt, pred)
    assert e["abs_rel"] == pytest.approx((0 + 0.2 + 0.5) / 3)
    assert e["sq_rel"] == pytest.approx((0 + 0.16 / 2 + 4 / 4) / 3)
    assert e["rmse"] == pytest.approx(np.sqrt((0 + 0.16 + 4) / 3))
    assert e["rmse_log"] == pytest.approx(np.sqrt((0 + np.log(1.2) ** 2 + np.log(2) ** 2) / 3))
    assert e["a1"] == pytest.approx(2 / 3) and e["a2"] == pytest.approx(2 / 3) and e["a3"] == pytest.approx(2 / 3)
    assert depth_errors(gt, np.array([1.0, 2.0, 2.2]))["a3"] == 1.0     # 4 / 2.2 = 1.82 < 1.25 ** 3
    assert depth_errors(gt, gt)["abs_rel"] == 0.0


def test_odometry_metrics_with_true_relative_poses_beat_the_constant_baseline(street_bag):
    frames, _ = read_ground_truth([street_bag], IMAGE_TOPIC, None, POSE_TOPIC)
    # relative transforms from the ground truth itself, at half scale (monocular: Sim(3) alignment fixes it)
    rel = []
    for a, b in zip(frames[:-1], frames[1:]):
        T_b_a = np.linalg.inv(b.pose) @ a.pose
        T_b_a[:3, 3] *= 0.5
        rel.append(T_b_a)
    m = evaluate_odometry(frames, chain_trajectory(rel))
    assert m["ate_rmse_m"] < 1e-6 and m["sim3_scale"] == pytest.approx(2.0, rel=1e-6)
    assert m["ate_constant_position_m"] > 0.5
    noisy = [r @ np.diag([1, 1, 1, 1.0]) for r in rel]
    noisy[10] = noisy[10].copy()
    noisy[10][:3, 3] += [0.0, 0.0, 0.3]
    assert evaluate_odometry(frames, chain_trajectory(noisy))["ate_rmse_m"] > 0.01


COMMANDS = ["ros2_monodepth_training.synth_bag", "ros2_monodepth_training.train", "ros2_monodepth_training.evaluate",
            "ros2_monodepth.tools.demo", "ros2_monodepth.tools.export_cli", "ros2_monodepth.tools.import_cli",
            "ros2_monodepth.tools.bench", "ros2_monodepth.tools.gpu_check"]


@pytest.mark.parametrize("module", COMMANDS, ids=lambda m: m.rsplit(".", 1)[1])
def test_every_command_shows_its_defaults_in_help(module):
    r = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "usage:" in r.stdout, r.stderr
    text = " ".join(r.stdout.split())
    # flags and computed defaults are not shown as argparse would ("default: False" on a flag reads backwards)
    assert not re.search(r"default: (None|True|False)\)", text), text
    assert text.count("default:") >= 3
    if module.endswith(".train"):
        for expected in ("passes over the training triplets (default: 20)", "(default: 15)", "(default: 0.1)"):
            assert expected in text


def test_compressed_frames_in_a_sqlite3_bag(tmp_path):
    bag = write_synthetic_bag(SynthConfig(tmp_path / "jpeg", frames=6, width=128, height=64, compressed=True, storage="sqlite3"),
                              progress=False)
    assert list((tmp_path / "jpeg").glob("*.db3"))
    index = index_frames([bag], IndexOptions(topics=(IMAGE_TOPIC + "/compressed",)))
    seq = index.sequences[0]
    assert seq.msgtype == "sensor_msgs/msg/CompressedImage" and len(seq.raw) == 6
    s = TripletDataset(index, make_triplets(index), (64, 64))[0]
    assert s["images"].shape == (3, 3, 64, 64) and float(s["images"].std()) > 0.02


def test_encoders_initialise_from_a_torchvision_format_resnet_file(tmp_path):
    from ros2_monodepth.core.resnet import ResNet
    from ros2_monodepth_training.state import init_from_resnet_file

    torch.manual_seed(1)
    imagenet_like = ResNet(18).state_dict()          # torchvision's key layout: conv1.weight, layer1.0..., fc.*
    torch.save(imagenet_like, tmp_path / "resnet18.pth")
    model = TrainingModel(18, LossConfig())
    init_from_resnet_file(tmp_path / "resnet18.pth", model.depth, model.pose)
    torch.testing.assert_close(model.depth.encoder.encoder.layer3[1].conv2.weight, imagenet_like["layer3.1.conv2.weight"])
    pose_conv1 = model.pose.encoder.encoder.conv1.weight
    torch.testing.assert_close(pose_conv1[:, :3], imagenet_like["conv1.weight"] / 2)
    torch.testing.assert_close(pose_conv1[:, 3:], imagenet_like["conv1.weight"] / 2)
    torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / "bad.pth")
    from ros2_monodepth.core.checkpoint import CheckpointError
    with pytest.raises(CheckpointError, match="not a torchvision ResNet-18"):
        init_from_resnet_file(tmp_path / "bad.pth", model.depth, model.pose)


def _schedule(**kw):
    from ros2_monodepth_training.config import TrainConfig
    from ros2_monodepth_training.train import LearningRateSchedule

    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1e-4)
    return opt, LearningRateSchedule(opt, TrainConfig(bags=[], out="", **kw), steps_per_epoch=100)


def test_the_step_schedule_follows_the_run_when_steps_or_minutes_end_it():
    # 20 epochs of 100 steps, drop at 15: at step 1500
    opt, s = _schedule(epochs=20, lr_step=15)
    s.step(1499)
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-4)
    s.step(1500)
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-5)
    # --max-steps 40 ends the run: the drop comes at 75 % of it, step 30, not at step 1500
    opt, s = _schedule(epochs=20, lr_step=15, max_steps=40)
    s.step(29)
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-4)
    s.step(30)
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-5)
    # --max-minutes 10: after 7.5 minutes of training (earlier parts of a resumed run included)
    opt, s = _schedule(epochs=20, lr_step=15, max_minutes=10)
    s.seconds_before = 7.4 * 60
    s.step(5)
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-4)
    s.load_state_dict({"seconds": 7.6 * 60})
    s.step(6)
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-5) and s.state_dict()["seconds"] >= 7.6 * 60
    opt, s = _schedule(lr_schedule="cosine", max_steps=10)
    s.step(5)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.5e-4)


def test_imagenet_start_uses_torch_hubs_cache_checks_the_hash_and_says_what_to_do_offline(tmp_path, monkeypatch):
    """The real ImageNet files cannot be downloaded here: a file made by the test stands in for one, under its own
    SHA-256 prefix, in torch.hub's cache."""
    import hashlib

    from ros2_monodepth.core.checkpoint import CheckpointError
    from ros2_monodepth.core.resnet import ResNet
    from ros2_monodepth_training import state

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    torch.manual_seed(7)
    weights = ResNet(18).state_dict()                 # torchvision's key layout, including fc.*
    blob = tmp_path / "made.pth"
    torch.save(weights, blob)
    prefix = hashlib.sha256(blob.read_bytes()).hexdigest()[:8]
    monkeypatch.setitem(state.IMAGENET_RESNET, 18, f"https://example.invalid/models/resnet18-{prefix}.pth")
    cached = Path(torch.hub.get_dir()) / "checkpoints" / f"resnet18-{prefix}.pth"

    def offline(url, dst, hash_prefix=None, progress=True):
        raise OSError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    model = TrainingModel(18, LossConfig())
    with pytest.raises(CheckpointError) as err:
        state.init_from_resnet("imagenet", model.depth, model.pose)
    assert str(cached) in str(err.value) and "example.invalid/models/resnet18" in str(err.value)
    # placed where the message says: used, keys mapped onto both encoders
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.write_bytes(blob.read_bytes())
    msg = state.init_from_resnet("imagenet", model.depth, model.pose)
    assert "ImageNet" in msg
    torch.testing.assert_close(model.depth.encoder.encoder.layer3[1].conv2.weight, weights["layer3.1.conv2.weight"])
    torch.testing.assert_close(model.pose.encoder.encoder.layer4[0].bn1.running_var, weights["layer4.0.bn1.running_var"])
    # the pose encoder takes two stacked frames: its first convolution is the RGB kernel repeated and halved (the paper)
    torch.testing.assert_close(model.pose.encoder.encoder.conv1.weight,
                               torch.cat([weights["conv1.weight"]] * 2, 1) / 2)
    # a file whose content does not match the hash in its name is refused
    cached.write_bytes(blob.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(CheckpointError, match="SHA-256"):
        state.init_from_resnet("imagenet", model.depth, model.pose)


def test_eval_scores_odometry_on_a_bag_with_poses_and_no_depth(tmp_path):
    """A real recording's ground truth: the robot's poses (nav_msgs/Odometry, or a /tf chain), no depth. Metres as they
    are (SE(3)) and with a fitted scale (Sim(3)), the camera mount from the bag's /tf_static."""
    bag = write_synthetic_bag(SynthConfig(tmp_path / "drive", frames=12, width=128, height=64, depth=False, odometry=True,
                                          yaw_amplitude=0.3), progress=False)
    out = tmp_path / "eval"
    cmd = [sys.executable, "-m", "ros2_monodepth_training.evaluate", str(bag), "--network-size", "128x64"]
    run = subprocess.run(cmd + ["--pose-topic", "/odom", "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    m = json.loads((out / "metrics.json").read_text())["untrained"]
    assert "abs_rel" not in m and "no /ground_truth/depth" in m["notes"]["depth"]
    assert m["ate_se3_m"] >= m["ate_sim3_m"] > 0 and m["rpe_se3_m"] > 0 and m["poses"] == 12
    assert "/tf_static base_link -> camera_optical_frame" in m["notes"]["camera mount"]
    assert (out / "trajectory.png").stat().st_size > 1000 and "ate_se3_m" in run.stdout
    tf = subprocess.run(cmd + ["--pose-tf", "odom:camera_optical_frame"], capture_output=True, text=True, timeout=300)
    assert tf.returncode == 0, tf.stderr
    # nothing to compare with: an error that names what the bag has
    none = subprocess.run(cmd + ["--pose-topic", ""], capture_output=True, text=True, timeout=300)
    assert none.returncode == 2 and "nothing to evaluate against" in none.stderr and "/odom" in none.stderr


def test_ground_truth_poses_are_interpolated_at_the_frames_and_moved_onto_the_camera(tmp_path):
    from ros2_monodepth_training.evaluate import read_ground_truth

    bag = write_synthetic_bag(SynthConfig(tmp_path / "b", frames=10, width=64, height=32, odometry=True, odom_rate=23.0,
                                          yaw_amplitude=0.3), progress=False)
    notes = {}
    from_odom, _ = read_ground_truth([bag], IMAGE_TOPIC, None, "/odom", notes=notes)   # 23 Hz: never on a frame's stamp
    truth, _ = read_ground_truth([bag], IMAGE_TOPIC, None, POSE_TOPIC)
    for a, b, c, d in zip(from_odom, from_odom[1:], truth, truth[1:]):
        np.testing.assert_allclose(np.linalg.inv(a.pose) @ b.pose, np.linalg.inv(c.pose) @ d.pose, atol=2e-3)
    assert "10 of 10 frames covered" in notes["poses"]


def test_evaluation_output_folders_never_collide(tmp_path):
    from ros2_monodepth_training.evaluate import output_names

    names = output_names([str(tmp_path / "runs" / "a" / "checkpoint"), str(tmp_path / "runs" / "b" / "checkpoint"),
                          "untrained"])
    assert names == ["a_checkpoint", "b_checkpoint", "untrained"]


def test_a_lost_data_loading_worker_stops_with_a_checkpoint_and_resume_continues(street_bag, tmp_path, monkeypatch):
    """A worker killed mid-run (the kernel's OOM killer does this): one clear message, the checkpoint of the last
    step on disk, and --resume goes on from there to the end."""
    import signal

    from ros2_monodepth_training import dataset as dataset_module
    from ros2_monodepth_training.train import TrainingStopped

    marker = tmp_path / "killed"
    original = dataset_module.TripletDataset.__getitem__
    parent = os.getpid()

    def dying_getitem(self, item):
        # in a worker (a forked child), once: the fifth sample it is asked for kills it
        if os.getpid() != parent and not marker.exists():
            count = getattr(self, "_test_count", 0) + 1
            self._test_count = count
            if count == 5:
                marker.write_text(str(os.getpid()))
                os.kill(os.getpid(), signal.SIGKILL)
        return original(self, item)

    monkeypatch.setattr(dataset_module.TripletDataset, "__getitem__", dying_getitem)
    args = [str(street_bag), *TINY, "--workers", "2", "--epochs", "2", "--max-steps", "12", "--checkpoint-every", "100", "--out", str(tmp_path / "run")]
    with pytest.raises(TrainingStopped, match="data-loading worker stopped.*--resume") as stopped:
        train(parse_args(args))
    assert marker.exists()
    # The lost worker's pid must not stay registered with torch's SIGCHLD handler: if it does, the next child that
    # exits in this process (a subprocess, the resumed run's workers) raises "DataLoader worker ... is killed" in
    # whatever code runs then. A child exiting here delivers that signal now, not at some later moment.
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    time.sleep(0.05)
    state = torch.load(tmp_path / "run" / "checkpoint" / "training_state.pt", weights_only=True)
    assert f"step {state['step']} is saved" in str(stopped.value)
    summary = train(parse_args(args + ["--resume"]))
    assert summary["steps"] == 12


class _Numbers(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 1000

    def __getitem__(self, item: int) -> torch.Tensor:
        return torch.full((4,), float(item))


def _kill_a_worker_and_wait(batches: Any) -> None:
    """SIGKILL to the loader's first worker (as the OOM killer sends it); back once it is dead (not yet reaped) and
    the SIGCHLD that its death sends this process has had time to run its handler."""
    import signal

    worker = batches._workers[0]
    os.kill(worker.pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while os.waitid(os.P_PID, worker.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    time.sleep(0.05)


def test_a_worker_death_is_reported_at_the_next_fetch_and_leaves_nothing_behind():
    """torch's SIGCHLD handler raises for a dead worker in whatever line runs when the death is signalled (in
    training: mid-step, mid-checkpoint, or while the loader's own error propagates, as on CI once). Inside the
    training loop's guard it is quiet; the death shows at the next fetch, and the cleanup stops the other worker."""
    from ros2_monodepth_training.train import _close_after_lost_worker, _is_lost_worker, _worker_deaths_seen_at_fetch

    unguarded = iter(torch.utils.data.DataLoader(_Numbers(), batch_size=2, num_workers=1))
    next(unguarded)
    with pytest.raises(RuntimeError, match="DataLoader worker"):  # what a death does to code without the guard
        _kill_a_worker_and_wait(unguarded)
    del unguarded

    batches = iter(torch.utils.data.DataLoader(_Numbers(), batch_size=2, num_workers=2))
    assert next(batches).shape == (2, 4)
    with _worker_deaths_seen_at_fetch():
        _kill_a_worker_and_wait(batches)  # the handler runs in here, and says nothing
        fetching = True
        with pytest.raises((RuntimeError, OSError, EOFError)) as lost:
            for _ in range(1000):
                next(batches)
        assert _is_lost_worker(lost.value, fetching)
        _close_after_lost_worker(batches)
    assert not any(worker.is_alive() for worker in batches._workers)
    # a worker killed while it hands a batch over breaks the shared-memory connection: also a lost worker, but only
    # while fetching (the same error from a checkpoint write is a disk problem, and is raised as it is)
    assert _is_lost_worker(ConnectionResetError(104, "Connection reset by peer"), fetching=True)
    assert not _is_lost_worker(ConnectionResetError(104, "Connection reset by peer"), fetching=False)
    assert not _is_lost_worker(RuntimeError("shapes do not match"), fetching=True)


def test_a_run_on_a_camera_that_never_moves_ends_with_a_verdict_naming_the_cause(tmp_path):
    """A stuck run on purpose: the camera stands still (no parallax). The verdict says NOT LEARNED and why, on the
    console, in summary.json and in the checkpoint (which the evaluation prints); no restart is tried, since a new
    initialisation cannot help."""
    bag = write_synthetic_bag(SynthConfig(tmp_path / "still", frames=14, width=64, height=64, speed=0.0, yaw_amplitude=0.0,
                                          lateral_amplitude=0.0), progress=False)
    out = tmp_path / "run"
    run = subprocess.run([sys.executable, "-m", "ros2_monodepth_training.train", str(bag), "--out", str(out), *TINY,
                          "--static-threshold", "0", "--max-steps", "6", "--stuck-check-steps", "3"],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "verdict: NOT LEARNED" in run.stdout and "barely moves" in run.stdout, run.stdout[-3000:]
    assert "Restarting" not in run.stdout
    verdict = json.loads((out / "summary.json").read_text())["verdict"]
    assert verdict["learned"] is False and "barely moves" in verdict["cause"]
    assert verdict["evidence"]["identity_photometric"] < 0.01
    assert verdict["evidence"]["pose_prior"].startswith("not used: auto") and "too little motion" in verdict["evidence"]["pose_prior"]
    assert "two-view pose prior not used" in run.stdout
    from ros2_monodepth.core.checkpoint import read_metadata

    assert read_metadata(out / "checkpoint").extra["verdict"]["cause"] == verdict["cause"]


def test_a_stuck_run_restarts_from_a_new_initialisation(street_bag, tmp_path, monkeypatch):
    """Whatever the run does, a stuck check that always fails: the run restarts with the next seed, at most
    --stuck-restarts times, then finishes; the verdict lists the restarts."""
    from ros2_monodepth_training import verdict as verdict_module

    monkeypatch.setattr(verdict_module, "STUCK_RATIO", 0.0)
    args = [str(street_bag), *TINY, "--max-steps", "4", "--stuck-check-steps", "2", "--stuck-restarts", "2",
            "--out", str(tmp_path / "run"), "--seed", "5"]
    summary = train(parse_args(args))
    restarts = summary["verdict"]["evidence"]["restarts"]
    assert len(restarts) == 2 and restarts[0].startswith("seed 5 stuck at step 2") and restarts[1].startswith("seed 1014")
    assert summary["steps"] == 4


def test_the_verdict_names_flicker_and_a_pose_network_that_explains_nothing():
    from ros2_monodepth_training.verdict import LearningMonitor, format_verdict

    def monitor(first_step=100, **terms):
        m = LearningMonitor(window=5)
        base = {"photometric": 0.07, "identity_photometric": 0.071, "automask_fraction": 0.05, "brightness_change": 0.001,
                "translation_share_x": 0.8, "translation_share_y": 0.1, "translation_share_z": 0.1, "translation_norm": 0.01}
        for step in range(5):
            m.add(first_step + step, {**base, **terms})
        return m

    info = 0.0   # static frame share
    stuck = monitor().verdict(info, False, False, "")
    assert not stuck["learned"] and "pose network is stuck" in stuck["cause"] and "sideways" in stuck["cause"]
    assert "--pose-prior" not in stuck["cause"]
    # a smoke test of a few steps is not called stuck: too short to tell
    short = monitor(first_step=1).verdict(info, False, False, "")
    assert not short["learned"] and "too short to tell: 5 step(s)" in short["cause"] and "stuck" not in short["cause"]
    off = {"mode": "off", "used": False, "known": 0, "looked_at": 0, "total": 50, "reason": "off (--pose-prior off)"}
    unguided = monitor().verdict(info, False, False, "", pose_prior=off)
    assert "leave --pose-prior at auto" in unguided["cause"] and unguided["evidence"]["pose_prior"].startswith("not used")
    used = {**off, "mode": "auto", "used": True, "known": 48, "looked_at": 50, "reason": "auto"}
    assert "used (48 of 50 pairs)" in format_verdict(monitor().verdict(info, False, False, "", pose_prior=used))
    flicker = monitor(brightness_change=0.08).verdict(info, False, False, "")
    assert "exposure" in flicker["cause"] and "pose network is stuck" not in flicker["cause"]
    learned = monitor(photometric=0.03, translation_share_z=0.8, translation_share_x=0.1).verdict(info, False, False, "")
    assert learned["learned"] and learned["cause"] == ""
    odometry = monitor(photometric=0.03).verdict(info, True, False, "NOT metric: velocity supervision has not converged")
    assert learned["learned"] and "odometry disagrees" in odometry["cause"]
